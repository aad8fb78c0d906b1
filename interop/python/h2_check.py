#!/usr/bin/env python3
"""A WebSocket over HTTP/2 (RFC 8441) with the Python ``h2`` package (hyper-h2), frame by
frame on a plain socket, against a server that must announce
SETTINGS_ENABLE_CONNECT_PROTOCOL:

    python h2_check.py http://HOST:PORT/PATH [--answer TEXT]

Cleartext HTTP/2 with prior knowledge. Checks: the server's settings allow extended
CONNECT; CONNECT with :protocol=websocket gets 200; "tom" is answered with TEXT (default
"hello tom"); a :protocol other than websocket gets 501; a close handshake with 1000.
Prints "ok NAME" per check, "FAIL ..." and exits non-zero at the first failure; the whole
run is bounded by 20 s.
"""

import os
import signal
import socket
import struct
import sys
from urllib.parse import urlsplit

import h2.config
import h2.connection
import h2.events
import h2.settings

TIMEOUT = 20.0


def fail(message):
    print(f"FAIL {message}", flush=True)
    sys.exit(1)


def frame(opcode, payload):
    """A masked client frame (RFC 6455 §5.2), FIN set."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


def parse_frame(buf):
    """(opcode, payload, rest) for the first whole server frame of buf, or None."""
    if len(buf) < 2:
        return None
    if buf[1] & 0x80:
        fail("a masked server frame")
    n, at = buf[1] & 0x7F, 2
    if n == 126:
        if len(buf) < 4:
            return None
        (n,), at = struct.unpack("!H", buf[2:4]), 4
    elif n == 127:
        if len(buf) < 10:
            return None
        (n,), at = struct.unpack("!Q", buf[2:10]), 10
    if len(buf) < at + n:
        return None
    return buf[0] & 0x0F, buf[at : at + n], buf[at + n :]


class Client:
    """One HTTP/2 connection: events per stream, read as needed."""

    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=TIMEOUT)
        config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config=config)
        self.conn.initiate_connection()
        self.flush()
        self.settings = None
        self.responses = {}
        self.data = {}
        self.ended = set()

    def flush(self):
        out = self.conn.data_to_send()
        if out:
            self.sock.sendall(out)

    def pump(self):
        """Reads once and files the events."""
        chunk = self.sock.recv(65536)
        if not chunk:
            fail("the server closed the connection")
        for event in self.conn.receive_data(chunk):
            if isinstance(event, h2.events.RemoteSettingsChanged):
                self.settings = event.changed_settings
            elif isinstance(event, h2.events.ResponseReceived):
                self.responses[event.stream_id] = dict(event.headers)
            elif isinstance(event, h2.events.DataReceived):
                self.data[event.stream_id] = self.data.get(event.stream_id, b"") + event.data
                # What the server sent is taken: open the window again.
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                self.ended.add(event.stream_id)
            elif isinstance(event, h2.events.ConnectionTerminated):
                fail(f"the server ended the connection: {event.error_code}")
        self.flush()

    def connect(self, authority, path, protocol):
        """CONNECT :protocol=PROTOCOL: the stream and the response's status."""
        stream = self.conn.get_next_available_stream_id()
        headers = [
            (":method", "CONNECT"),
            (":protocol", protocol),
            (":scheme", "http"),
            (":path", path),
            (":authority", authority),
            ("sec-websocket-version", "13"),
        ]
        self.conn.send_headers(stream, headers, end_stream=False)
        self.flush()
        while stream not in self.responses:
            self.pump()
        return stream, self.responses[stream][":status"]

    def send(self, stream, data):
        self.conn.send_data(stream, data)
        self.flush()

    def next_frame(self, stream):
        while True:
            parsed = parse_frame(self.data.get(stream, b""))
            if parsed:
                opcode, payload, self.data[stream] = parsed
                return opcode, payload
            if stream in self.ended:
                fail("the stream ended before a whole frame")
            self.pump()


def main():
    args = sys.argv[1:]
    if not args:
        fail("usage: h2_check.py http://HOST:PORT/PATH [--answer TEXT]")
    url = urlsplit(args[0])
    answer = args[args.index("--answer") + 1] if "--answer" in args else "hello tom"
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")

    client = Client(url.hostname, url.port)
    while client.settings is None:
        client.pump()
    enabled = client.settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL)
    if enabled is None or enabled.new_value != 1:
        fail("the server does not announce SETTINGS_ENABLE_CONNECT_PROTOCOL")
    print("ok settings", flush=True)

    stream, status = client.connect(url.netloc, path, "websocket")
    if status != "200":
        fail(f"CONNECT :protocol=websocket answered {status}")
    print("ok connect", flush=True)

    client.send(stream, frame(0x1, b"tom"))
    opcode, payload = client.next_frame(stream)
    if opcode != 0x1 or payload.decode() != answer:
        fail(f"answer: opcode {opcode}, {payload!r}")
    print("ok echo", flush=True)

    other, status = client.connect(url.netloc, path, "chat")
    if status != "501":
        fail(f"a :protocol other than websocket answered {status}, not 501")
    print("ok 501", flush=True)

    client.send(stream, frame(0x8, struct.pack("!H", 1000)))
    opcode, payload = client.next_frame(stream)
    if opcode != 0x8 or struct.unpack("!H", payload[:2])[0] != 1000:
        fail(f"close not answered with 1000: opcode {opcode}, {payload!r}")
    print("ok close", flush=True)
    client.conn.close_connection()
    client.flush()
    client.sock.close()


if __name__ == "__main__":
    signal.signal(signal.SIGALRM, lambda *_: fail("timed out"))
    signal.alarm(int(TIMEOUT))
    try:
        main()
    except socket.timeout:
        fail("timed out")
