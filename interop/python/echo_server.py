#!/usr/bin/env python3
"""Echo server on Python websockets: a real peer for wsworker's client tests.

    python echo_server.py [--port N] [--ignore-stdin] [--cert FILE --key FILE] [--deflate]

Listens on 127.0.0.1 (port 0 = any free port), prints ``LISTENING <port>`` on a
line of its own and flushes, then serves until SIGTERM/SIGINT or until its
stdin reaches EOF (so a test that dies does not leave it behind; pass
``--ignore-stdin`` to run it by hand with stdin closed). With ``--cert`` and
``--key`` (PEM) it serves TLS (``wss://``).

Per connection:
- subprotocol: the first one the client offers that is in ["chat", "superchat"],
  otherwise none (the handshake is never refused over subprotocols);
- every message is echoed as it came (text as text, binary as binary);
- except a text message ``close <CODE> <REASON...>``: the server closes with that
  code and reason instead (a code it may not send gives close 1008);
- messages up to 16 MiB, permessage-deflate off (``--deflate``: on, with
  websockets' default settings: 12-bit windows both ways, memLevel 5).
"""

import os

# websockets >= 17.4 refuses messages of more than WEBSOCKETS_MAX_FRAGMENTS
# frames (default 4096) and reads the variable at import time. A 16 MiB message
# may legitimately arrive in many small fragments, so raise it unless the caller
# chose a value.
os.environ.setdefault("WEBSOCKETS_MAX_FRAGMENTS", str(1 << 20))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import ssl  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402

from websockets.asyncio.server import serve  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402

SUPPORTED_SUBPROTOCOLS = ["chat", "superchat"]
MAX_MESSAGE = 16 * 1024 * 1024
CLOSE_COMMAND = re.compile(r"close (\d{1,5})(?: (.*))?", re.DOTALL)


def select_subprotocol(connection, offered):
    for protocol in offered:
        if protocol in SUPPORTED_SUBPROTOCOLS:
            return protocol
    return None


async def handler(ws):
    try:
        async for message in ws:
            if isinstance(message, str):
                command = CLOSE_COMMAND.fullmatch(message)
                if command:
                    code, reason = int(command.group(1)), command.group(2) or ""
                    try:
                        await ws.close(code, reason)
                    except Exception:  # invalid code or reason too long
                        await ws.close(1008, "invalid close command")
                    return
            await ws.send(message)
    except ConnectionClosed:
        pass


def watch_stdin(loop, stop):
    """Set `stop` when stdin reaches EOF (read in a daemon thread)."""

    fd = sys.stdin.fileno()

    def run():
        # os.read on the raw descriptor, not sys.stdin: a daemon thread blocked
        # inside a buffered reader aborts the interpreter at shutdown.
        try:
            while os.read(fd, 65536):
                pass
        except OSError:
            pass
        try:
            loop.call_soon_threadsafe(lambda: stop.done() or stop.set_result("stdin EOF"))
        except RuntimeError:  # the loop is already closed
            pass

    threading.Thread(target=run, name="stdin-watch", daemon=True).start()


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ignore-stdin", action="store_true", help="do not stop on stdin EOF")
    parser.add_argument("--cert", help="serve TLS with this certificate chain (PEM)")
    parser.add_argument("--key", help="the private key (PEM) of --cert")
    parser.add_argument("--deflate", action="store_true", help="accept permessage-deflate")
    args = parser.parse_args()
    if (args.cert is None) != (args.key is None):
        parser.error("--cert and --key go together")
    tls = None
    if args.cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.cert, args.key)

    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda s=sig: stop.done() or stop.set_result(s.name))
    if not args.ignore_stdin and sys.stdin is not None:  # None when fd 0 is closed
        watch_stdin(loop, stop)

    async with serve(
        handler,
        "127.0.0.1",
        args.port,
        select_subprotocol=select_subprotocol,
        compression="deflate" if args.deflate else None,
        max_size=MAX_MESSAGE,
        close_timeout=5,
        ssl=tls,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"LISTENING {port}", flush=True)
        why = await stop
        print(f"stopping ({why})", file=sys.stderr, flush=True)
        server.close()  # closes every connection with 1001, bounded by close_timeout


if __name__ == "__main__":
    asyncio.run(main())
