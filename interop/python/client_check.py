#!/usr/bin/env python3
"""Checklist run by a Python websockets client against an echo server.

    python client_check.py ws://127.0.0.1:PORT/
    python client_check.py --ca ca.pem wss://localhost:PORT/
    python client_check.py --deflate ws://127.0.0.1:PORT/

With ``--ca FILE`` (for ``wss://`` URLs) the server's certificate must chain to
the CA certificates in FILE (PEM); without it, the system's trust store is used.

The server must behave like echo_server.py (subprotocols "chat"/"superchat",
echo, and ``close <CODE> <REASON>``). Prints ``PASS <name>`` or
``FAIL <name>: <reason>`` per check and a final ``N passed, M failed``; exits 0
only when every check passed. Each check is bounded by 10 s, the whole run by
60 s. permessage-deflate is off unless ``--deflate``: then every check runs
with websockets' default compression, and ``deflate-params`` checks each
parameter of RFC 7692 (see DEFLATE_VARIANTS).
"""

import os

os.environ.setdefault("WEBSOCKETS_MAX_FRAGMENTS", str(1 << 20))  # see echo_server.py

import asyncio  # noqa: E402
import ssl  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from websockets.asyncio.client import connect  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402
from websockets.protocol import State  # noqa: E402

CHECK_TIMEOUT = 10.0
TOTAL_TIMEOUT = 60.0
MAX_MESSAGE = 16 * 1024 * 1024
SSL_CONTEXT = None  # set by --ca: an ssl context trusting that CA, for wss:// URLs
COMPRESSION = None  # "deflate" with --deflate


class CheckFailed(Exception):
    pass


def expect(condition, message):
    if not condition:
        raise CheckFailed(message)


def short(value, limit=60):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(value)} long)"


def open_ws(url, subprotocols=None):
    return connect(
        url,
        subprotocols=subprotocols,
        compression=COMPRESSION,
        max_size=MAX_MESSAGE,
        open_timeout=CHECK_TIMEOUT,
        close_timeout=5,
        **({"ssl": SSL_CONTEXT} if SSL_CONTEXT is not None and url.startswith("wss:") else {}),
    )


async def echo_one(ws, message):
    await ws.send(message)
    reply = await ws.recv()
    expect(type(reply) is type(message), f"sent {type(message).__name__}, got {type(reply).__name__}")
    expect(reply == message, f"sent {short(message)}, got {short(reply)}")


async def check_subprotocol_chosen(url):
    async with open_ws(url, ["chat"]) as ws:
        expect(ws.subprotocol == "chat", f"negotiated {ws.subprotocol!r}, expected 'chat'")


async def check_subprotocol_none(url):
    async with open_ws(url, ["x-unknown"]) as ws:
        expect(ws.subprotocol is None, f"negotiated {ws.subprotocol!r}, expected none")
        await echo_one(ws, "ok")


async def check_utf8_multibyte(url):
    async with open_ws(url) as ws:
        await echo_one(ws, "κόσμε 🎉 hello ✓")


async def check_empty_text(url):
    async with open_ws(url) as ws:
        await echo_one(ws, "")


async def check_empty_binary(url):
    async with open_ws(url) as ws:
        await echo_one(ws, b"")


async def check_binary_1mib(url):
    async with open_ws(url) as ws:
        await echo_one(ws, os.urandom(1024 * 1024))


async def check_burst_100(url):
    async with open_ws(url) as ws:
        sent = [f"msg-{i}" for i in range(100)]
        for message in sent:
            await ws.send(message)
        received = [await ws.recv() for _ in sent]
        expect(received == sent, f"out of order or wrong: first differences "
               f"{[(s, r) for s, r in zip(sent, received) if s != r][:3]}")


async def check_client_close(url):
    ws = await open_ws(url)
    await ws.send("before close")
    expect(await ws.recv() == "before close", "echo before close failed")
    await ws.close(4000, "client bye")  # waits for the answer and the TCP close
    state = ws.protocol  # the asyncio API keeps the close frames on its sans-I/O protocol
    expect(ws.state is State.CLOSED, f"state is {ws.state.name} after close(), expected CLOSED")
    expect(state.close_sent is not None and state.close_sent.code == 4000, f"sent {state.close_sent}")
    expect(state.close_rcvd is not None, "no close frame came back from the server")
    expect(state.close_rcvd.code == 4000,
           f"server answered with code {state.close_rcvd.code}, expected 4000")
    expect(state.close_rcvd_then_sent is False, "close handshake order is wrong")


async def check_server_close(url):
    ws = await open_ws(url)
    await ws.send("close 4001 server bye")
    try:
        reply = await ws.recv()
    except ConnectionClosed as closed:
        expect(closed.rcvd is not None, "connection dropped without a close frame")
        expect(closed.rcvd.code == 4001, f"close code {closed.rcvd.code}, expected 4001")
        expect(closed.rcvd.reason == "server bye", f"close reason {closed.rcvd.reason!r}")
        expect(closed.sent is not None and closed.sent.code == 4001,
               f"our answering close frame was {closed.sent}")
        expect(closed.rcvd_then_sent is True, "the server did not start the close handshake")
    else:
        raise CheckFailed(f"expected a close, got a message {short(reply)}")
    await ws.wait_closed()


# Client offers for deflate-params: each RFC 7692 parameter alone, then all of them.
# (Python's zlib cannot compress with an 8-bit window, so the client's own window
# stays >= 9; the server's may be 8.)
DEFLATE_VARIANTS = [
    {},
    {"server_no_context_takeover": True},
    {"client_no_context_takeover": True},
    {"server_max_window_bits": 10},
    {"client_max_window_bits": 9},
    {"server_max_window_bits": 8, "client_max_window_bits": 9,
     "server_no_context_takeover": True, "client_no_context_takeover": True},
]


async def check_deflate_params(url):
    from websockets.extensions.permessage_deflate import (
        ClientPerMessageDeflateFactory,
        PerMessageDeflate,
    )

    text = "".join(f'{{"id": {i}, "name": "item {i % 37}", "ok": true}}' for i in range(3000))
    data = bytes(range(256)) * 400
    for variant in DEFLATE_VARIANTS:
        async with connect(
            url,
            extensions=[ClientPerMessageDeflateFactory(**variant)],
            compression=None,
            max_size=MAX_MESSAGE,
            open_timeout=CHECK_TIMEOUT,
            close_timeout=5,
        ) as ws:
            header = ws.response.headers.get("Sec-WebSocket-Extensions", "")
            extensions = ws.protocol.extensions
            expect(len(extensions) == 1 and isinstance(extensions[0], PerMessageDeflate),
                   f"{variant}: not negotiated (answer {header!r})")
            ext = extensions[0]
            if variant.get("server_no_context_takeover"):
                expect(ext.remote_no_context_takeover, f"{variant}: answer {header!r}")
            if "server_max_window_bits" in variant:
                expect(ext.remote_max_window_bits <= variant["server_max_window_bits"],
                       f"{variant}: answer {header!r}")
            for message in (text, data, text, "short", text[:5000]):
                await echo_one(ws, message)


CHECKS = [
    ("subprotocol-chosen", check_subprotocol_chosen),
    ("subprotocol-none", check_subprotocol_none),
    ("utf8-multibyte", check_utf8_multibyte),
    ("empty-text", check_empty_text),
    ("empty-binary", check_empty_binary),
    ("binary-1mib", check_binary_1mib),
    ("burst-100", check_burst_100),
    ("client-close", check_client_close),
    ("server-close", check_server_close),
]


async def main(url):
    deadline = time.monotonic() + TOTAL_TIMEOUT
    passed = failed = 0
    checks = CHECKS + ([("deflate-params", check_deflate_params)] if COMPRESSION else [])
    for name, check in checks:
        budget = min(CHECK_TIMEOUT, deadline - time.monotonic())
        try:
            if budget <= 0:
                raise CheckFailed("not run: overall 60 s budget used up")
            await asyncio.wait_for(check(url), budget)
        except asyncio.TimeoutError:
            failed += 1
            print(f"FAIL {name}: timed out after {budget:.1f} s", flush=True)
        except CheckFailed as e:
            failed += 1
            print(f"FAIL {name}: {e}", flush=True)
        except Exception as e:  # connection refused, handshake rejected, protocol error...
            failed += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
        else:
            passed += 1
            print(f"PASS {name}", flush=True)
    print(f"{passed} passed, {failed} failed", flush=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    args = sys.argv[1:]
    if "--deflate" in args:
        args.remove("--deflate")
        COMPRESSION = "deflate"
    if len(args) == 3 and args[0] == "--ca":
        SSL_CONTEXT = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=args[1])
        args = args[2:]
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(asyncio.run(main(args[0])))
