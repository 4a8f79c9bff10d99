"""A daemon's signing key: an eth-account keystore file, its password in an environment variable.

key = decrypt_key(config.key)        # bytes; KeystoreError naming the file and what to do
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from eth_account import Account

from nodes.daemon.config import KeyConfig
from nodes.errors import KeystoreError


def decrypt_key(key: KeyConfig, environ: Mapping[str, str] = os.environ) -> bytes:
    """The private key in ``key.keystore``, decrypted with the password in ``key.password_env``."""
    password = environ.get(key.password_env)
    if password is None:
        raise KeystoreError(
            str(key.keystore), f"set the password in the environment variable {key.password_env}"
        )
    try:
        keyfile = json.loads(key.keystore.read_text(encoding="utf-8"))
    except OSError as exc:
        raise KeystoreError(str(key.keystore), f"cannot read: {exc.strerror}") from exc
    except ValueError as exc:
        raise KeystoreError(str(key.keystore), f"not JSON: {exc}") from exc
    try:
        return bytes(Account.decrypt(keyfile, password))
    except ValueError as exc:
        raise KeystoreError(str(key.keystore), f"cannot decrypt ({exc}); wrong password?") from exc
    except (KeyError, TypeError) as exc:
        raise KeystoreError(str(key.keystore), f"not an eth-account keystore: {exc!r}") from exc


__all__ = ["decrypt_key"]
