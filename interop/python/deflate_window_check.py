#!/usr/bin/env python3
"""Checks that a server honours ``server_max_window_bits=8`` (RFC 7692 §7.1.2.1).

    python deflate_window_check.py ws://127.0.0.1:PORT/

Negotiates ``permessage-deflate; server_max_window_bits=8`` by hand over a raw
socket (no WebSocket library: nothing between the server's bytes and zlib),
sends binary messages uncompressed, and inflates every compressed echo with
zlib's raw inflate and a 256-byte window (``zlib.decompressobj(-8)``), one byte
of output per call. Fed that way zlib refuses any back-reference further than
its window reaches ("invalid distance too far back"); given a large output
buffer it would not (it also looks back into the output of the same call). The
messages repeat random blocks of 260 to 1000 bytes, which a compressor with a
larger window would refer back to.

The server must echo binary messages (as echo_server.py and the interop server
of crates/wsworker/tests/interop.rs do). Prints ``PASS <name>`` or ``FAIL
<name>: <reason>`` per check and a final ``N passed, M failed``; exits 0 only
when every check passed. Every socket operation is bounded by 10 s.
"""

import base64
import hashlib
import os
import random
import socket
import struct
import sys
import zlib
from urllib.parse import urlsplit

TIMEOUT = 10.0
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OFFER = "permessage-deflate; server_max_window_bits=8"


class CheckFailed(Exception):
    pass


class Peer:
    """One WebSocket connection, client side, on a blocking socket."""

    def __init__(self, url):
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port or 80
        self.sock = socket.create_connection((host, port), timeout=TIMEOUT)
        self.buf = b""
        key = base64.b64encode(os.urandom(16))
        request = (
            f"GET {parts.path or '/'} HTTP/1.1\r\n"
            f"Host: {host}:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key.decode()}\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Extensions: {OFFER}\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        if not lines[0].startswith("HTTP/1.1 101 "):
            raise CheckFailed(f"status {lines[0]!r}")
        self.headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()
        if self.headers.get("sec-websocket-accept") != accept:
            raise CheckFailed("wrong Sec-WebSocket-Accept")

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise CheckFailed("the server closed the connection")
        self.buf += data

    def _take(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send(self, opcode, payload):
        """One masked frame with FIN set and RSV1 clear: sent uncompressed."""
        head = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 1 << 16:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def frame(self):
        b0, b1 = self._take(2)
        if b1 & 0x80:
            raise CheckFailed("masked frame from the server")
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self._take(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self._take(8))
        return bool(b0 & 0x80), bool(b0 & 0x40), b0 & 0x0F, self._take(n)

    def message(self):
        """The next data message: (compressed, payload as sent on the wire)."""
        parts, compressed = [], None
        while True:
            fin, rsv1, opcode, payload = self.frame()
            if opcode == 0x9:  # ping: answered, not part of the message
                self.send(0xA, payload)
                continue
            if opcode == 0xA:
                continue
            if opcode == 0x8:
                raise CheckFailed(f"the server closed: {payload!r}")
            if compressed is None:
                compressed = rsv1
            elif rsv1:
                raise CheckFailed("RSV1 on a continuation frame")
            parts.append(payload)
            if fin:
                return compressed, b"".join(parts)


def strict_inflate(decompressor, data):
    """Inflates one message (RFC 7692 §7.2.2), one byte of output per call, so that each
    back-reference must be found in zlib's own 256-byte window."""
    pending = data + b"\x00\x00\xff\xff"
    out = bytearray()
    while True:
        try:
            chunk = decompressor.decompress(pending, 1)
        except zlib.error as e:
            raise CheckFailed(f"inflate with a 256-byte window failed: {e}") from None
        out += chunk
        pending = decompressor.unconsumed_tail
        if not chunk and not pending:
            return bytes(out)


def messages():
    """(name, payload): repeats near and far, and random blocks repeated past 256 bytes."""
    rng = random.Random(0x5EED)

    def block(n):
        return bytes(rng.getrandbits(8) for _ in range(n))

    near = block(100)
    far = block(200)
    text = " ".join(f"the {i % 7} quick brown foxes jump over {i % 11} lazy dogs" for i in range(200))
    return [
        ("repeats-100", near * 40),
        ("repeats-260", block(260) * 8),
        ("repeats-300", block(300) * 10),
        ("repeats-1000", block(1000) * 4),
        ("near-and-far", far + far + block(600) + far + block(300) + far),
        ("text", text.encode()),
    ]


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    passed = failed = 0

    def report(name, error=None):
        nonlocal passed, failed
        if error is None:
            passed += 1
            print(f"PASS {name}", flush=True)
        else:
            failed += 1
            print(f"FAIL {name}: {error}", flush=True)

    try:
        peer = Peer(sys.argv[1])
    except (CheckFailed, OSError) as e:
        report("handshake", e)
        print(f"{passed} passed, {failed} failed", flush=True)
        sys.exit(1)
    answer = peer.headers.get("sec-websocket-extensions", "")
    params = [p.strip() for p in answer.split(";")]
    print(f"negotiated: {answer!r}", flush=True)
    if params[0] != "permessage-deflate" or "server_max_window_bits=8" not in params:
        report("negotiation", f"asked for {OFFER!r}, got {answer!r}")
    else:
        report("negotiation")
    takeover = "server_no_context_takeover" not in params
    decompressor = zlib.decompressobj(-8)
    compressed_any = False
    for name, payload in messages():
        try:
            peer.send(0x2, payload)
            compressed, wire = peer.message()
            if compressed:
                compressed_any = True
                if not takeover:
                    decompressor = zlib.decompressobj(-8)
                got = strict_inflate(decompressor, wire)
            else:
                got = wire
            if got != payload:
                raise CheckFailed(f"{len(got)} bytes back for {len(payload)}, not the same")
            how = f"compressed to {len(wire)}" if compressed else "not compressed"
            report(f"{name} ({len(payload)} bytes, {how})")
        except (CheckFailed, OSError) as e:
            report(name, e)
    if compressed_any:
        report("compressed")
    else:
        report("compressed", "the server compressed none of the messages: nothing checked")
    try:
        peer.send(0x8, struct.pack("!H", 1000))
        while True:
            _, _, opcode, _ = peer.frame()
            if opcode == 0x8:
                break
        report("close")
    except (CheckFailed, OSError) as e:
        report("close", e)
    print(f"{passed} passed, {failed} failed", flush=True)
    sys.exit(0 if failed == 0 else 1)


if __name__ == "__main__":
    main()
