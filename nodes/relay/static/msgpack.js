// A msgpack decoder for the relay's stream frames ({v, type, body}): maps, arrays, strings, ints,
// floats, booleans, nil; bins become 0x-hex strings, as in the relay's JSON. Loaded by index.html
// before app.js; tested against the relay's own encoder (tests/integration/test_explorer_stream.py).
"use strict";

function unpack(buffer) {
  const view = new DataView(buffer);
  let at = 0;
  const bytes = (n) => new Uint8Array(buffer, (at += n) - n, n);
  const text = (n) => new TextDecoder().decode(bytes(n));
  const hex = (n) => "0x" + Array.from(bytes(n), (b) => b.toString(16).padStart(2, "0")).join("");
  const many = (n, f) => Array.from({ length: n }, f);
  const map = (n) => Object.fromEntries(many(n, () => [read(), read()]));
  function read() {
    const b = view.getUint8(at++);
    if (b < 0x80) return b;
    if (b < 0x90) return map(b & 0x0f);
    if (b < 0xa0) return many(b & 0x0f, read);
    if (b < 0xc0) return text(b & 0x1f);
    if (b >= 0xe0) return b - 0x100;
    const u = (n) => { const v = n === 1 ? view.getUint8(at) : n === 2 ? view.getUint16(at) : view.getUint32(at); at += n; return v; };
    switch (b) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: return hex(u(1));
      case 0xc5: return hex(u(2));
      case 0xc6: return hex(u(4));
      case 0xca: at += 4; return view.getFloat32(at - 4);
      case 0xcb: at += 8; return view.getFloat64(at - 8);
      case 0xcc: return u(1);
      case 0xcd: return u(2);
      case 0xce: return u(4);
      case 0xcf: at += 8; return Number(view.getBigUint64(at - 8));
      case 0xd0: at += 1; return view.getInt8(at - 1);
      case 0xd1: at += 2; return view.getInt16(at - 2);
      case 0xd2: at += 4; return view.getInt32(at - 4);
      case 0xd3: at += 8; return Number(view.getBigInt64(at - 8));
      case 0xd9: return text(u(1));
      case 0xda: return text(u(2));
      case 0xdb: return text(u(4));
      case 0xdc: return many(u(2), read);
      case 0xdd: return many(u(4), read);
      case 0xde: return map(u(2));
      case 0xdf: return map(u(4));
      default: throw new Error(`msgpack type 0x${b.toString(16)} not read by the explorer`);
    }
  }
  return read();
}

if (typeof module !== "undefined") module.exports = { unpack };
