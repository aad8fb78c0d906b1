#!/usr/bin/env python3
"""Receives a Hub fan-out with permessage-deflate on websockets' own clients.

    python fanout_check.py ws://127.0.0.1:PORT/ CLIENTS MESSAGES

Opens CLIENTS connections with websockets' default compression (it offers
permessage-deflate and inflates what comes, with the window it agreed to), prints
``CONNECTED`` once they are all open, then on each reads messages until the text
``--end--`` and checks that it got message 0 to MESSAGES - 1 as
``fanout_message(k)`` makes them (the sender makes the same), in order, and that
compression was agreed. Prints ``PASS <name>`` or ``FAIL <name>: <reason>`` per
check and a final ``N passed, M failed``; exits 0 only when every check passed.
Every wait is bounded by 10 s.
"""

import asyncio
import sys

from websockets.asyncio.client import connect

TIMEOUT = 10.0
END = "--end--"


def fanout_message(k):
    """Message k: compressible text (crates/wsworker/tests/interop.rs makes the same)."""
    return f"fan-out {k}: " + "the quick brown fox jumps over the lazy dog " * (10 * k + 5)


async def receive(url, ready):
    async with connect(url, open_timeout=TIMEOUT, max_size=None) as ws:
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        ready.set_result(None)
        got = []
        while True:
            message = await asyncio.wait_for(ws.recv(), TIMEOUT)
            if message == END:
                return extensions, got
            got.append(message)


async def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    url, clients, messages = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    passed = failed = 0

    def report(name, error=None):
        nonlocal passed, failed
        if error is None:
            passed += 1
            print(f"PASS {name}", flush=True)
        else:
            failed += 1
            print(f"FAIL {name}: {error}", flush=True)

    loop = asyncio.get_running_loop()
    readies = [loop.create_future() for _ in range(clients)]
    tasks = [asyncio.create_task(receive(url, ready)) for ready in readies]
    await asyncio.wait_for(asyncio.gather(*readies), TIMEOUT)
    print("CONNECTED", flush=True)
    expected = [fanout_message(k) for k in range(messages)]
    for i, task in enumerate(tasks):
        try:
            extensions, got = await task
        except Exception as e:  # noqa: BLE001 - every failure is reported
            report(f"client {i}", repr(e))
            continue
        if not extensions.startswith("permessage-deflate"):
            report(f"client {i} compression", f"agreed to {extensions!r}")
        else:
            report(f"client {i} compression ({extensions})")
        if got != expected:
            report(f"client {i} messages", f"{len(got)} messages, not the {messages} sent")
        else:
            report(f"client {i} messages ({messages})")
    print(f"{passed} passed, {failed} failed", flush=True)
    sys.exit(0 if failed == 0 else 1)


if __name__ == "__main__":
    asyncio.run(main())
