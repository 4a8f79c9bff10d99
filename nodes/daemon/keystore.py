"""A daemon's signing key: an eth-account keystore file, its password in an environment variable.

key = decrypt_key(config.key)        # bytes; KeystoreError naming the file and what to do
write_keystore(path, key, password)  # a new file, 0600; an existing one is never overwritten
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from eth_account import Account

from market.protocol.types import checksum_address
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


def write_keystore(path: Path, key: bytes, password: str, *, iterations: int | None = None) -> str:
    """Encrypt ``key`` with ``password`` into a new keystore file at ``path``, readable by its
    owner only (0600); returns the key's address. KeystoreError if ``path`` exists: a keystore
    is never overwritten, since it may hold the only copy of a key."""
    if not password:
        raise KeystoreError(str(path), "give a non-empty password")
    keyfile = Account.encrypt(key, password, iterations=iterations)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise KeystoreError(
            str(path), "exists already: keystores are never overwritten; choose another --out"
        ) from exc
    except OSError as exc:
        raise KeystoreError(str(path), f"cannot create: {exc.strerror}") from exc
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(keyfile, f)
    return str(Account.from_key(key).address)


def keystore_address(path: Path) -> str:
    """The address a keystore file names (readable without its password)."""
    try:
        keyfile = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise KeystoreError(str(path), f"cannot read: {exc.strerror}") from exc
    except ValueError as exc:
        raise KeystoreError(str(path), f"not JSON: {exc}") from exc
    address = keyfile.get("address") if isinstance(keyfile, dict) else None
    if not isinstance(address, str) or "crypto" not in keyfile:
        raise KeystoreError(str(path), "not an eth-account keystore")
    try:
        return str(checksum_address("0x" + address.removeprefix("0x")))
    except ValueError as exc:
        raise KeystoreError(str(path), f"names no valid address: {address!r}") from exc


__all__ = ["decrypt_key", "keystore_address", "write_keystore"]
