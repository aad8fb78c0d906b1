#!/usr/bin/env python3
"""The two halves of bench/run that are easier in Python (standard library only).

    report.py cell CELLS.jsonl KEY=VALUE... < BENCH_JSON
        appends one measured cell (the load generator's --json report on stdin, the
        server's figures as arguments) to CELLS.jsonl and prints a one-line summary;
    report.py table CELLS.jsonl OUT.md --date ... --reps ... (see main)
        writes the Markdown tables: medians per scenario and server, ratios to the ceiling;
    report.py cross CELLS.jsonl OUT.md --date ... --command ... (see main)
        appends bench/cross-node's table to OUT.md: a row per stack and rate.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import tomllib

SCENARIOS = {
    "A": "many small text messages",
    "B": "1 KiB binary messages",
    "C": "many connections, little in flight",
    "D": "64 KiB binary messages",
    "E": "one 16 MiB binary message at a time",
    "F": "latency: one 20-byte message at a time",
    "G": "idle connections: handshakes and memory",
    "H": "wsworker --count 2 against --count 1, scenario A, both cores",
    "I": "fan-out: one publisher to every connection in a chat room",
    "J": "fan-out, closed loop: 8 messages in flight",
    "L": "fan-out, closed loop: 64 messages in flight",
    "K": "permessage-deflate memory: each connection echoes one compressible text message, then idles",
    "M": "fan-out with deflate: closed loop, 8 in flight, every subscriber with permessage-deflate",
}
FANOUT = ("I", "J", "L", "M")
# Scenario M: wsworker's chat with permessage-deflate (the others do not negotiate it).
FANOUT_DEFLATE = "wsworker-chat-deflate"
FANOUT_BASE = "wsworker-chat"
# The raw fan-out (bench/servers/ceiling --fanout): the fan-out tables' base when it ran.
FANOUT_CEILING = "ceiling-chat"
FANOUT_ORDER = [FANOUT_BASE, "wsworker-chat-deflate", "uws-chat", "tokio-tungstenite-chat", FANOUT_CEILING]
CEILING = "ceiling"
# The plain TCP echo (bench/servers/ceiling --tcp): server CPU per message is also shown as
# a ratio to its.
TCP_CEILING = "ceiling-tcp"
H_BASE = "wsworker-count1"
# Scenario K: wsworker alone, with permessage-deflate on (the others do not negotiate it).
DEFLATE = "K"
DEFLATE_SERVER = "wsworker-deflate"


def cell(path, pairs):
    """Appends one cell: KEY=VALUE pairs (integers where they parse) and the bench report."""
    record = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            record[key] = int(value)
        except ValueError:
            record[key] = {"true": True, "false": False}.get(value, value)
    text = sys.stdin.read().strip()
    try:
        record["bench"] = json.loads(text) if text else None
    except json.JSONDecodeError:
        record["bench"] = None
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(record) + "\n")
    bench = record["bench"]
    if bench is None:
        summary = "no report"
    elif bench.get("mode") == "fanout":
        per_s, p99 = bench["deliveries_per_s"], bench["latency_us"]["p99"]
        summary = f"{fmt(per_s, 0)} deliveries/s, p99 {fmt(p99, 0)} µs"
    elif bench["msgs_per_s"] is None:
        summary = f"{bench['connections_opened']} open, {bench['handshakes_per_s'] or 0:,.0f} handshakes/s"
        deflate = bench.get("deflate")
        if deflate and deflate.get("ratio") is not None:
            summary += f", replies {deflate['ratio']:.3f} of the message bytes"
    else:
        summary = f"{bench['msgs_per_s']:,.0f} msgs/s, p99 {bench['rtt_us']['p99']:,.0f} µs"
    print(f"   {record['scenario']} rep {record['rep']} {record['server']:<22} {summary}")


def figures(record, clk_tck):
    """The figures of one cell, or None when the load generator gave no report."""
    bench = record.get("bench")
    if not bench:
        return None
    cpu_s = record["cpu_ticks"] / clk_tck
    if bench.get("mode") == "fanout":
        deliveries = bench["deliveries"]
        return {
            "deliveries_per_s": bench["deliveries_per_s"],
            "delivered_pct": 100 * deliveries / bench["expected_deliveries"]
            if bench["expected_deliveries"]
            else None,
            "p50": bench["latency_us"]["p50"],
            "p99": bench["latency_us"]["p99"],
            "cpu_ns_delivery": cpu_s * 1e9 / deliveries if deliveries else None,
            "rss_mib": record["rss_after_kib"] / 1024,
            "hwm_mib": record["hwm_kib"] / 1024,
            "load_cpu": 100 * bench["client_cpu_s"] / bench["delivery_span_s"],
        }
    msgs = bench["messages"]
    opened = bench["connections_opened"]
    deflate = bench.get("deflate") or {}
    return {
        "msgs_per_s": bench["msgs_per_s"],
        "mb_per_s": bench["mb_per_s"],
        "cpu_us_msg_tcp": cpu_s * 1e6 / msgs if msgs else None,
        "p50": bench["rtt_us"]["p50"],
        "p99": bench["rtt_us"]["p99"],
        "cpu_us_msg": cpu_s * 1e6 / msgs if msgs else None,
        "rss_mib": record["rss_after_kib"] / 1024,
        "hwm_mib": record["hwm_kib"] / 1024,
        "load_cpu": 100 * bench["client_cpu_s"] / bench["duration_s"],
        "opened": opened,
        "handshakes_per_s": bench["handshakes_per_s"],
        # The peak is reached while every connection is open.
        "kib_per_conn": (record["hwm_kib"] - record["rss_before_kib"]) / opened if opened else None,
        "cpu_us_conn": cpu_s * 1e6 / opened if opened else None,
        # Scenario K: the payload bytes of the server's compressed replies over the messages'.
        "ratio": deflate.get("ratio"),
    }


def failure(record):
    """Why a cell failed (empty when it did not)."""
    bench = record.get("bench")
    # In a fan-out run, messages that had not come 2 s after the last was sent ("missing")
    # are the server falling behind: a result (the delivered % column), not a failed run.
    behind = ("missing",) if bench and bench.get("mode") == "fanout" else ()
    why = []
    if not record.get("alive", False):
        why.append("server died" if "alive" in record else "server did not start")
    if bench:
        # The echo mode's kinds, and with --fanout the order errors (gap, missing, ...) too.
        why += [f"{n} {kind}" for kind, n in bench["errors"].items() if n and kind not in behind]
        if bench.get("connections_failed"):
            why.append(f"{bench['connections_failed']} connections failed")
    elif "alive" in record:
        why.append("no report")
    # wsworker bench exits 1 on any error, the tolerated ones included.
    fell_behind = any(bench["errors"].get(kind) for kind in behind)
    if record.get("exit", 0) != 0 and not why and not (record["exit"] == 1 and fell_behind):
        why.append(f"load exit {record['exit']}")
    said = str(record.get("load_error", "")).strip().splitlines()
    if why and said:
        why.append(f"`{said[0]}`")
    return ", ".join(why)


def summarise(records, clk_tck):
    """Per server: medians of the cells that ran clean."""
    by_server = {}
    for record in records:
        by_server.setdefault(record["server"], []).append(record)
    out = {}
    for server, cells in by_server.items():
        clean = [c for c in cells if not failure(c)]
        use = [f for c in clean if (f := figures(c, clk_tck))]
        medians = {}
        for key in use[0] if use else ():
            values = [f[key] for f in use if f[key] is not None]
            medians[key] = statistics.median(values) if values else None
        failures = sorted({failure(c) for c in cells if failure(c)})
        out[server] = {
            "ok": f"{len(clean)}/{len(cells)}",
            "failed": "; ".join(failures),
            "medians": medians,
        }
    return out


def fmt(value, digits):
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def with_ratio(value, base, digits):
    text = fmt(value, digits)
    if value is None or not base:
        return text
    return f"{text} ({value / base:.2f}×)"


def table(summary, columns, base_name, order, bases=None):
    """A Markdown table: one row per server, each figure with its ratio to base_name's
    (or, for the keys in `bases`, to that server's)."""
    base = dict(summary.get(base_name, {}).get("medians", {}))
    for key, other in (bases or {}).items():
        base[key] = summary.get(other, {}).get("medians", {}).get(key)
    head = ["server", "runs ok"] + [title for title, _, _, _ in columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for server in order:
        if server not in summary:
            continue
        row = summary[server]
        m = row["medians"]
        cells = [f"**{server}**" if server == base_name else server, row["ok"]]
        if row["ok"].startswith("0/"):
            cells += ["failed (below)"] + ["–"] * (len(columns) - 1)
        else:
            for _, key, digits, ratio in columns:
                value, of = m.get(key), base.get(key)
                if ratio == "only":
                    cells.append(f"{value / of:.{digits}f}×" if value is not None and of else "–")
                elif ratio:
                    cells.append(with_ratio(value, of, digits))
                else:
                    cells.append(fmt(value, digits))
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"- {s}: {summary[s]['failed']}" for s in order if s in summary and summary[s]["failed"]]
    if notes:
        lines += ["", "Failed runs (left out of the medians):", *notes]
    return lines


TRAFFIC = [
    ("msgs/s", "msgs_per_s", 0, True),
    ("MB/s", "mb_per_s", 1, True),
    ("server CPU µs/msg", "cpu_us_msg", 2, True),
    ("p50 µs", "p50", 0, True),
    ("p99 µs", "p99", 0, True),
    ("RSS after MiB", "rss_mib", 1, True),
    ("RSS peak MiB", "hwm_mib", 1, True),
    ("load CPU %", "load_cpu", 0, False),
]
# With the plain TCP echo in the run: server CPU per message as a ratio to its, too.
TRAFFIC_TCP = TRAFFIC[:3] + [("CPU/msg ÷ TCP echo", "cpu_us_msg_tcp", 2, "only")] + TRAFFIC[3:]
FANOUT_COLUMNS = [
    ("deliveries/s", "deliveries_per_s", 0, True),
    ("delivered %", "delivered_pct", 1, False),
    ("server CPU ns/delivery", "cpu_ns_delivery", 0, True),
    ("p50 µs", "p50", 0, True),
    ("p99 µs", "p99", 0, True),
    ("RSS after MiB", "rss_mib", 1, True),
    ("RSS peak MiB", "hwm_mib", 1, True),
    ("load CPU %", "load_cpu", 0, False),
]
IDLE = [
    ("connections", "opened", 0, False),
    ("handshakes/s", "handshakes_per_s", 0, True),
    ("RSS KiB/conn", "kib_per_conn", 1, True),
    ("server CPU µs/conn", "cpu_us_conn", 1, True),
    ("RSS peak MiB", "hwm_mib", 1, True),
]
IDLE_DEFLATE = [
    ("connections", "opened", 0, False),
    ("RSS KiB/conn", "kib_per_conn", 1, False),
    ("compressed ÷ plain", "ratio", 3, False),
    ("handshakes + echoes/s", "handshakes_per_s", 0, False),
    ("server CPU µs/conn", "cpu_us_conn", 1, False),
    ("RSS peak MiB", "hwm_mib", 1, False),
]


def cpu_model():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def versions(lockfile):
    with open(lockfile, "rb") as lock:
        packages = tomllib.load(lock)["package"]
    wanted = ("tokio-tungstenite", "tungstenite", "fastwebsockets", "hyper", "tokio")
    found = {p["name"]: p["version"] for p in packages if p["name"] in wanted}
    return ", ".join(f"{name} {found[name]}" for name in wanted if name in found)



def report(args):
    with open(args.cells, encoding="utf-8") as cells:
        records = [json.loads(line) for line in cells if line.strip()]
    servers = []
    for record in records:
        if record["server"] not in servers and record["scenario"] not in ("H", DEFLATE, *FANOUT):
            servers.append(record["server"])
    title = "Smoke run (not a measurement)" if args.smoke else "Results"
    lines = [
        f"# wsworker side by side: {title}",
        "",
        "Written by `bench/run` (see README.md); do not edit by hand.",
        "",
        f"- Date: {args.date}; {args.reps} repetition(s) of {args.duration} s per cell, "
        f"{args.elapsed // 60} min {args.elapsed % 60} s in all.",
        f"- Machine: {os.cpu_count()} cores ({cpu_model()}), Linux {platform.release()}; "
        "shared with other work, so expect noise.",
        f"- Versions: {args.wsworker}; {versions(args.lockfile)}; {args.rustc}"
        + (f"; {args.uws} (g++ -O3 -flto, no SSL, no zlib: bench/servers/uws)." if args.uws else "."),
        "- Method: for each scenario, each repetition runs every server once, in an order "
        "rotated by one each repetition; every cell is a fresh server process pinned to core 0 "
        "(`taskset -c 0`) and one `wsworker bench … --json` pinned to core 1. Figures are "
        "medians over the repetitions. The ceiling is the least work any WebSocket echo can "
        "do (a handshake, then each frame sent back unmasked: bench/servers/ceiling), "
        "measured in the same run; `(0.50×)` is a figure divided by the ceiling's. "
        "`ceiling-tcp` is the stricter limit, a plain TCP echo of the frame bytes (neither "
        "parsed nor unmasked; the load generator takes them masked, `--masked-echo`): "
        "\"CPU/msg ÷ TCP echo\" is server CPU per message divided by its.",
        "- Throughput is higher-better, latency, CPU and memory lower-better. msgs/s and MB/s "
        "count echoes received in the window (MB/s one way, in millions of payload bytes); "
        "p50/p99 are round trips; server CPU is utime+stime from /proc/PID/stat over the "
        f"whole load run (CLK_TCK {args.clk_tck}) divided by the echoes; RSS is VmRSS after "
        "the run and VmHWM (the peak) from /proc/PID/status. Load CPU is the load "
        "generator's CPU time over the window: near 100 % the load generator, not the "
        "server, sets the pace, and the ratios understate the differences between servers.",
    ]
    fanout_told = False  # the fan-out tables' note, under the first of them
    for scenario, title in SCENARIOS.items():
        rows = [r for r in records if r["scenario"] == scenario]
        if not rows:
            continue
        bench = next((r["bench"] for r in rows if r.get("bench")), None)
        shape = ""
        if bench and bench.get("mode") == "fanout":
            pace = (
                f"{bench['inflight']} in flight"
                if bench.get("inflight") is not None
                else f"{bench['rate']:,.0f} msgs/s"
            )
            shape = (
                f": {bench['conns']:,} subscribers + 1 publisher in one room × {bench['size']:,} B "
                f"text × {pace}"
            )
        elif bench and bench.get("deflate"):
            shape = (
                f": {bench['conns']:,} connections × one {bench['deflate']['size']:,} B text "
                f"message echoed, then held {bench['duration_s']:g} s"
            )
        elif bench and bench["size"] is not None:
            kind = "binary" if bench["binary"] else "text"
            shape = f": {bench['conns']:,} conns × {bench['size']:,} B {kind} × {bench['inflight']} in flight"
        elif bench:
            shape = f": {bench['conns']:,} idle connections held {bench['duration_s']:g} s"
        lines += ["", f"## {scenario}. {title}{shape}", ""]
        summary = summarise(rows, args.clk_tck)
        if scenario in FANOUT:
            base = next(
                (s for s in (FANOUT_CEILING, FANOUT_BASE, FANOUT_DEFLATE) if s in summary),
                FANOUT_BASE,
            )
            lines += table(summary, FANOUT_COLUMNS, base, FANOUT_ORDER)
            if fanout_told:
                continue
            fanout_told = True
            lines += [
                "",
                "Ratios here are to the raw fan-out's (`ceiling-chat`: bench/servers/ceiling "
                "--fanout, every data frame unmasked and written to every connection, nothing "
                "else), or to wsworker's when it did not run. `wsworker bench --fanout`: the subscribers join "
                "the room (`?room=bench`), then one publisher sends text messages, paced (`--rate`) "
                "or closed loop (`--inflight K`: it keeps K messages outstanding, a message being "
                "done once every subscriber has it, so deliveries/s is the most the server "
                "sustains and the latency is at that load); every "
                "delivery (a message received by a subscriber; the publisher's own copies are "
                "not counted) is checked for order, and a gap, duplicate, reorder or missing "
                "message is an error. A message that has not come 2 s after the last was sent "
                "is missing: the server fell behind, and delivered % (deliveries / published × "
                "subscribers) shows it rather than the run counting as failed; gaps, "
                "duplicates, reorders and closed connections do fail it. deliveries/s runs "
                "from the first message to the last delivery; p50/p99 are send-to-receive "
                "latencies (of the messages that came). Server CPU is measured over "
                "the whole load run (the subscribers' handshakes included) and divided by the "
                "deliveries. Servers: `wsworker serve --mode chat --count 1` (the Hub's groups), "
                "uws-chat (uWebSockets' topics: bench/servers/uws/chat.cpp) "
                "and bench/servers/tungstenite's chat-tungstenite (a `tokio::sync::broadcast` "
                "channel of 1,024 messages per room, one task per connection; a connection "
                "that lags behind is closed with 1013).",
            ]
        elif scenario == "H":
            lines += table(summary, TRAFFIC, H_BASE, [H_BASE, "wsworker-count2"])
            lines += [
                "",
                "Ratios here are to `--count 1`. The server may use both cores (`taskset -c "
                "0,1`) and the load generator runs on core 1, so it competes with the second "
                "worker for that core. What this shows: whether a second worker adds "
                "throughput, or costs some, when it has to share its core; that the "
                "connections are spread over both workers and nothing breaks. What it cannot "
                "show: how wsworker scales with cores, which needs the load on cores of its "
                "own (another machine or more cores than the server uses).",
            ]
        elif scenario == DEFLATE:
            lines += table(summary, IDLE_DEFLATE, DEFLATE_SERVER, [DEFLATE_SERVER])
            offer = (bench or {}).get("deflate", {}).get("offer", "")
            lines += [
                "",
                "wsworker alone: the other servers here do not negotiate permessage-deflate "
                "(uWebSockets is built without zlib, tokio-tungstenite and fastwebsockets have "
                "none). `wsworker serve --mode echo --count 1` with its default "
                "permessage-deflate settings; `wsworker bench --idle N --deflate` offers "
                f"`{offer}` (as browsers and wsworker's client do), echoes one text message "
                "of JSON chat lines per connection through the compression agreed (checked "
                "byte for byte), then holds the connections. RSS KiB/conn is (VmHWM after the "
                "run − VmRSS before it) / connections, as in G: what a connection costs once "
                "its server has inflated a message and compressed a reply. compressed ÷ "
                "plain is the payload bytes of the server's replies on the wire over the "
                "messages' bytes (one message per connection, so no context to draw on). "
                "handshakes + echoes/s counts a connection opened once its echo came back.",
            ]
        elif scenario == "G":
            lines += table(summary, IDLE, CEILING, servers)
            lines += [
                "",
                "RSS KiB/conn is (VmHWM after the run − VmRSS before it) / connections: the "
                "peak is reached while all of them are open. Server CPU µs/conn is the "
                "server's CPU time over the run per connection (handshake, then close). "
                "Handshake rates swing most between runs on a shared machine, so a full run "
                "takes at least 5 repetitions of this scenario (runs ok).",
            ]
        elif TCP_CEILING in summary:
            bases = {"cpu_us_msg_tcp": TCP_CEILING}
            lines += table(summary, TRAFFIC_TCP, CEILING, servers, bases)
        else:
            lines += table(summary, TRAFFIC, CEILING, servers)
    with open(args.out, "w", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")


CROSS_STACKS = ("wsworker", "socketio")
CROSS_BASE = "socketio"
CROSS_COLUMNS = [
    ("deliveries/s", "deliveries_per_s", 0, True),
    ("delivered %", "delivered_pct", 1, False),
    ("p50 ms", "p50_ms", 2, True),
    ("p99 ms", "p99_ms", 2, True),
    ("Redis CPU µs/msg", "redis_us_msg", 1, True),
    ("Redis cmds/msg", "redis_cmds_msg", 2, False),
    ("nodes CPU µs/delivery", "nodes_us_delivery", 2, True),
    ("nodes RSS peak MiB", "nodes_hwm_mib", 0, True),
    ("load CPU %", "load_cpu", 0, False),
]


def cross_figures(record):
    """The figures of one bench/cross-node cell, or None without a load report."""
    bench = record.get("bench")
    if not bench:
        return None
    published, deliveries = bench["published"], bench["deliveries"]
    latency = bench["latency_us"]
    ms = lambda us: us / 1e3 if us is not None else None  # noqa: E731
    span = bench["delivery_span_s"]
    return {
        "deliveries_per_s": bench["deliveries_per_s"],
        "delivered_pct": 100 * deliveries / bench["expected_deliveries"]
        if bench["expected_deliveries"]
        else None,
        "p50_ms": ms(latency["p50"]),
        "p99_ms": ms(latency["p99"]),
        "redis_us_msg": record["redis_cpu_ns"] / 1e3 / published if published else None,
        "redis_cmds_msg": record["redis_commands"] / published if published else None,
        "nodes_us_delivery": record["nodes_cpu_ns"] / 1e3 / deliveries if deliveries else None,
        "nodes_hwm_mib": record["nodes_hwm_kib"] / 1024,
        "load_cpu": 100 * bench["client_cpu_s"] / span
        if span and bench["client_cpu_s"] is not None
        else None,
    }


def cross_errors(cells):
    """Every error kind counted in these cells, summed, in words ("none" without any)."""
    totals = {}
    for record in cells:
        for kind, count in ((record.get("bench") or {}).get("errors") or {}).items():
            totals[kind] = totals.get(kind, 0) + count
    said = [f"{kind} {count:,}" for kind, count in totals.items() if count]
    return ", ".join(said) or "none"


def cross(args):
    """Appends one run of bench/cross-node to OUT: medians per stack and rate."""
    with open(args.cells, encoding="utf-8") as cells:
        records = [json.loads(line) for line in cells if line.strip()]
    rates = []
    for record in records:
        if record["rate"] not in rates:
            rates.append(record["rate"])
    bench = next((r["bench"] for r in records if r.get("bench")), None)
    shape = (
        f"{records[0].get('nodes', '?')} nodes, {bench['conns']:,} subscribers + 1 publisher in one "
        f"room, {bench['size']} B text"
        if bench and records
        else "no load report"
    )
    title = "smoke run (not a measurement)" if args.smoke else "cross-node broadcast"
    lines = []
    if not os.path.exists(args.out) or os.path.getsize(args.out) == 0:
        lines += [
            "# Cross-node broadcast: wsworker and Socket.IO, each over one Redis",
            "",
            "Appended to by `bench/cross-node` (see README.md), one section per run; do not "
            "edit by hand.",
        ]
    lines += [
        "",
        f"## {args.date}: {title}",
        "",
        f"- `{args.command}`: {shape}; {args.reps} repetition(s) of {args.duration} s of "
        f"publishing per cell, {args.elapsed // 60} min {args.elapsed % 60} s in all.",
        f"- Machine: {os.cpu_count()} cores ({cpu_model()}), Linux {platform.release()}; "
        f"{args.pinned or 'nothing pinned'}.",
        f"- Versions: {args.versions}.",
        "- Medians over the repetitions of the runs without errors (a message still missing 2 s "
        "after the last was sent is the stack falling behind: delivered %, not a failed run). "
        "`(2.00×)` is a figure divided by Socket.IO's at the same rate. Redis CPU is "
        "redis-server's CPU time over the load run, less its idle upkeep (measured for 1 s "
        "before), divided by the messages published (when a stack falls far behind, fewer of them reach "
        "Redis: Redis cmds/msg, the commands it ran per message published, shows it); nodes "
        "CPU, the nodes' together (connecting included) divided by the deliveries; nodes RSS "
        "peak, the sum of their VmHWM; load CPU, the load generator's CPU time over the "
        "delivery span.",
        "",
    ]
    head = ["stack", "msgs/s", "runs ok"] + [name for name, _, _, _ in CROSS_COLUMNS] + ["errors"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    notes = []
    for rate in rates:
        summary = {}
        for stack in CROSS_STACKS:
            cells = [r for r in records if r["rate"] == rate and r["server"] == stack]
            if not cells:
                continue
            clean = [c for c in cells if not failure(c)]
            use = [f for c in clean if (f := cross_figures(c))]
            medians = {}
            for key in use[0] if use else ():
                values = [f[key] for f in use if f[key] is not None]
                medians[key] = statistics.median(values) if values else None
            summary[stack] = (cells, clean, medians)
            notes += [f"- {stack} at {rate:,}/s: {why}" for c in cells if (why := failure(c))]
        base = summary.get(CROSS_BASE, (None, None, {}))[2]
        for stack, (cells, clean, medians) in summary.items():
            row = [stack, f"{rate:,}", f"{len(clean)}/{len(cells)}"]
            for _, key, digits, ratio in CROSS_COLUMNS:
                value = medians.get(key)
                if ratio and stack != CROSS_BASE:
                    row.append(with_ratio(value, base.get(key), digits))
                else:
                    row.append(fmt(value, digits))
            row.append(cross_errors(cells))
            lines.append("| " + " | ".join(row) + " |")
    if notes:
        lines += ["", "Failed runs (left out of the medians):", *notes]
    with open(args.out, "a", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")
    return 1 if notes else 0


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "cell":
        cell(sys.argv[2], sys.argv[3:])
        return
    if len(sys.argv) >= 2 and sys.argv[1] == "cross":
        parser = argparse.ArgumentParser(description=__doc__)
        parser.add_argument("mode", choices=["cross"])
        parser.add_argument("cells")
        parser.add_argument("out")
        parser.add_argument("--date", required=True)
        parser.add_argument("--command", required=True)
        parser.add_argument("--versions", required=True)
        parser.add_argument("--reps", type=int, required=True)
        parser.add_argument("--duration", required=True)
        parser.add_argument("--smoke", type=int, default=0)
        parser.add_argument("--pinned", default="")
        parser.add_argument("--elapsed", type=int, default=0)
        sys.exit(cross(parser.parse_args()))
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["table"])
    parser.add_argument("cells")
    parser.add_argument("out")
    parser.add_argument("--date", required=True)
    parser.add_argument("--reps", type=int, required=True)
    parser.add_argument("--duration", required=True)
    parser.add_argument("--smoke", type=int, default=0)
    parser.add_argument("--clk-tck", type=int, required=True)
    parser.add_argument("--lockfile", required=True)
    parser.add_argument("--wsworker", required=True)
    parser.add_argument("--rustc", required=True)
    parser.add_argument("--uws", default="")
    parser.add_argument("--elapsed", type=int, default=0)
    report(parser.parse_args())


if __name__ == "__main__":
    main()
