"""The explorer's msgpack decoder (``nodes/relay/static/msgpack.js``, run by Node.js) reads what
the relay's stream sends exactly as msgspec does: the stream's own frames (BookChange, Fill) and a
frame of every msgpack form it may meet, bins as 0x-hex strings."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import msgspec
import pytest

from nodes.relay.explorer import STATIC
from nodes.wire import BookChange, Fill, FillStatus, Side, encode

pytestmark = pytest.mark.integration

SCRIPT = """
const { unpack } = require(process.argv[1]);
const hexes = JSON.parse(require("fs").readFileSync(0, "utf8"));
const out = hexes.map((hex) => {
  const bytes = Buffer.from(hex, "hex");
  return unpack(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
});
console.log(JSON.stringify(out));
"""


def hexed(value: Any) -> Any:
    """msgspec's reading with bins as the explorer shows them."""
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, dict):
        return {k: hexed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [hexed(v) for v in value]
    return value


def test_the_browser_decoder_reads_the_streams_frames_as_msgspec_does() -> None:
    node = shutil.which("node")
    assert node is not None, "Node.js is required (make setup checks for it)"
    every_form = msgspec.msgpack.encode(
        {
            "ints": [0, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**53 - 1],
            "negative": [-1, -32, -33, -128, -129, -32768, -32769, -(2**31), -(2**31) - 1],
            "floats": [0.5, -2.25],
            "flags": [True, False, None],
            "text": ["", "x" * 31, "y" * 32, "z" * 300, "λ" * 40_000],
            "bins": [b"", b"\x01" * 32, b"\x02" * 300, b"\x03" * 70_000],
            "long": list(range(20)),
            "wide": {f"k{i}": i for i in range(20)},
        }
    )
    frames = [
        encode(BookChange(b"\x0a" * 32, "H100-80GB", Side.BID, 3)),
        encode(Fill(b"\x0b" * 32, b"\x0c" * 32, 2, FillStatus.OPENED, b"\x0d" * 32)),
        every_form,
    ]
    done = subprocess.run(
        [node, "-e", SCRIPT, str(STATIC / "msgpack.js")],
        input=json.dumps([f.hex() for f in frames]),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    decoded = json.loads(done.stdout)
    assert decoded == [hexed(msgspec.msgpack.decode(f)) for f in frames]
    assert decoded[0]["type"] == "BookChange"
    assert decoded[0]["body"]["side"] == "bid"
    assert decoded[1]["body"]["leaseId"] == "0x" + "0d" * 32
