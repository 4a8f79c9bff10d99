"""``gpumarket keys new|import|list``: the encrypted keystores the daemons sign with.

    gpumarket keys new --out provider-key.json [--password-env VAR]
    gpumarket keys import --out lab-key.json [--from FILE]   # hex key on stdin, or in FILE
    gpumarket keys list [FOLDER ...] [--json]

A keystore is an eth-account (Web3 Secret Storage) JSON file, written 0600 and never overwritten.
Its password comes from the environment variable named by ``--password-env`` (default
``GPUMARKET_KEY_PASSWORD``, the daemons' ``[key] password_env`` default) or, when that is unset
and stdin is a terminal, from a prompt. A private key is never taken from the command line,
where other users' ``ps`` and the shell's history would see it.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import msgspec
from eth_account import Account

from nodes.daemon.keystore import keystore_address, write_keystore
from nodes.errors import KeystoreError

PASSWORD_ENV = "GPUMARKET_KEY_PASSWORD"


class KeyFile(msgspec.Struct, frozen=True):
    """One keystore found by ``keys list``."""

    address: str
    file: str


def read_password(
    env: str, *, confirm: bool, environ: Mapping[str, str] = os.environ, stdin: TextIO = sys.stdin
) -> str:
    """The password in ``$env``, else asked on the terminal (twice with ``confirm``)."""
    if password := environ.get(env):
        return password
    if not stdin.isatty():
        raise KeystoreError("(password)", f"set the password in the environment variable {env}")
    password = getpass.getpass("keystore password: ")
    if confirm and getpass.getpass("again: ") != password:
        raise KeystoreError("(password)", "the two passwords differ")
    return password


def parse_private_key(text: str, source: str) -> bytes:
    """A 32-byte private key from hex text (``0x`` optional, surrounding space ignored)."""
    hex_text = text.strip().removeprefix("0x")
    try:
        key = bytes.fromhex(hex_text)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise KeystoreError(source, "expected a private key: 64 hex digits, 0x optional")
    return key


def cmd_keys_new(args: argparse.Namespace) -> int:
    password = read_password(args.password_env, confirm=True)
    account = Account.create()
    address = write_keystore(args.out, bytes(account.key), password)
    print(f"address  {address}\nkeystore {args.out}")
    return 0


def cmd_keys_import(args: argparse.Namespace) -> int:
    source = "stdin" if args.source is None else str(args.source)
    if args.source is None:  # a terminal: asked without echo; else piped in
        text = getpass.getpass("private key (hex): ") if sys.stdin.isatty() else sys.stdin.read()
    else:
        try:
            text = args.source.read_text(encoding="utf-8")
        except OSError as exc:
            raise KeystoreError(source, f"cannot read: {exc.strerror}") from exc
    key = parse_private_key(text, source)
    password = read_password(args.password_env, confirm=True)
    address = write_keystore(args.out, key, password)
    print(f"address  {address}\nkeystore {args.out}")
    return 0


def find_keystores(folders: list[Path]) -> list[KeyFile]:
    """The keystores among the ``*.json`` files of ``folders`` (other JSON files skipped)."""
    found = []
    for folder in folders:
        for path in sorted(folder.glob("*.json")):
            try:
                found.append(KeyFile(keystore_address(path), str(path)))
            except KeystoreError:
                continue
    return found


def cmd_keys_list(args: argparse.Namespace) -> int:
    found = find_keystores(args.folders or [Path.cwd()])
    if args.json:
        print(msgspec.json.encode(found).decode())
    elif not found:
        print("no keystores here: create one with `gpumarket keys new --out FILE`")
    else:
        for k in found:
            print(f"{k.address}  {k.file}")
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``gpumarket keys`` on the CLI's subparsers."""
    keys: argparse.ArgumentParser = subparsers.add_parser(
        "keys", help="create, import and list encrypted keystores"
    )
    sub = keys.add_subparsers(dest="keys_command", required=True)
    password_help = (
        f"variable holding the keystore's password (default {PASSWORD_ENV}; unset: prompted)"
    )
    new = sub.add_parser("new", help="a new random key in a new keystore file")
    new.add_argument("--out", type=Path, required=True, help="keystore file to create (0600)")
    new.add_argument("--password-env", default=PASSWORD_ENV, metavar="VAR", help=password_help)
    new.set_defaults(func=cmd_keys_new)
    imp = sub.add_parser(
        "import", help="a hex private key, read from stdin or --from, into a new keystore file"
    )
    imp.add_argument("--out", type=Path, required=True, help="keystore file to create (0600)")
    imp.add_argument(
        "--from", dest="source", type=Path, default=None, metavar="FILE",
        help="file holding the hex private key (default: stdin; never the command line)",
    )  # fmt: skip
    imp.add_argument("--password-env", default=PASSWORD_ENV, metavar="VAR", help=password_help)
    imp.set_defaults(func=cmd_keys_import)
    ls = sub.add_parser("list", help="the keystores in folders (default: the current one)")
    ls.add_argument("folders", nargs="*", type=Path, metavar="FOLDER")
    ls.add_argument("--json", action="store_true", help="a JSON list of {address, file}")
    ls.set_defaults(func=cmd_keys_list)
    return keys


__all__ = [
    "KeyFile",
    "add_parser",
    "find_keystores",
    "parse_private_key",
    "read_password",
]
