#!/usr/bin/env python3
"""Runs one role of the Autobahn|Testsuite against a testee and prints the verdicts.

Run it with the Python of the venv that install.sh made (it reads the suite's own case list
to count cases that never ran):

  VENV/bin/python conformance/run.py server URL OUTDIR [options]
      wstest's fuzzing client against a WebSocket server already listening at URL (ws://...),
      which must echo every message back as it came.

  VENV/bin/python conformance/run.py client OUTDIR [options] -- COMMAND [ARG...]
      wstest's fuzzing server on a free port of 127.0.0.1, then COMMAND, the client under
      test, with AUTOBAHN_URL=ws://127.0.0.1:PORT and AUTOBAHN_AGENT in its environment. The
      client does the suite's usual loop: GET /getCaseCount, then /runCase?case=I&agent=A for
      I in 1..N echoing every message, then /updateReports?agent=A.

Options:
  --cases PATTERNS    case ids or patterns, "1.*,2.*,6.4.*" (default: every case)
  --exclude PATTERNS  cases to leave out, same form (default: none)
  --agent NAME        the testee's name in the reports (default: wsworker)
  --timeout SECONDS   bound on the whole suite (server) or on COMMAND (client); default 3600
  --strict            fail unless every case is OK or INFORMATIONAL (NON-STRICT fails too)

OUTDIR receives the spec given to wstest, wstest.log, client.log (client role) and the suite's
reports: index.json, index.html and one page per case with every frame exchanged.

Output: a table of verdicts per case group, the cases that did not pass, and a last line

  autobahn-ROLE: OK=.. NONSTRICT=.. INFO=.. UNIMPL=.. FAILED=.. MISSING=..

Exit status: 0 when nothing FAILED or is MISSING (with --strict: when everything is OK or
INFORMATIONAL), 1 otherwise, 2 when the suite could not run or wrote no report.
"""

import argparse
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from urllib.parse import quote, urlparse

VERDICTS = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED", "MISSING"]
SHORT = dict(zip(VERDICTS, ["OK", "NONSTRICT", "INFO", "UNIMPL", "FAILED", "MISSING"]))
PASSING = {"OK", "INFORMATIONAL"}


def fail(message):
    print("run.py: %s" % message, file=sys.stderr)
    sys.exit(2)


def patterns(text):
    """'1.*,2.*' or '1.* 2.*' -> ['1.*', '2.*']; empty -> every case."""
    found = [p for p in (text or "").replace(",", " ").split() if p]
    return found or ["*"]


def case_order(case_id):
    return [int(p) if p.isdigit() else 0 for p in case_id.split(".")]


def wstest_path():
    path = os.path.join(os.path.dirname(sys.executable), "wstest")
    if not os.access(path, os.X_OK):
        fail("no wstest beside %s: run conformance/install.sh, then VENV/bin/python run.py" % sys.executable)
    return path


def cases_in_spec(spec):
    """The case ids the spec selects, as the suite itself resolves its patterns."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from autobahntestsuite.case import CaseBasename, CaseCategories, Cases, CaseSetname, CaseSubCategories
        from autobahntestsuite.caseset import CaseSet
    case_set = CaseSet(CaseSetname, CaseBasename, Cases, CaseCategories, CaseSubCategories)
    return [c for c in case_set.parseSpecCases(spec) if c in case_set.CasesById]


def check_selection(spec):
    """Refuse case ids the suite does not have: wstest stops dead on one, half-way through."""
    known = set(cases_in_spec({"cases": ["*"], "exclude-cases": []}))
    unknown = [p for p in spec["cases"] + spec["exclude-cases"] if "*" not in p and p not in known]
    if unknown:
        fail("no such case: %s (the suite has %d cases)" % (", ".join(unknown), len(known)))
    if not cases_in_spec(spec):
        fail("the case patterns select no case")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, process, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def stop(process):
    """SIGTERM, then SIGKILL if it has not gone after 5 s. Only the process we started."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def request_reports(url, agent):
    """Ask a fuzzing server to write its reports (GET /updateReports over WebSocket, done by
    hand here to need no client library), and wait until it closes: it has written them then.
    The client under test does this too; doing it again is harmless and makes sure a client that
    crashed half-way still leaves a report of the cases it ran."""
    parts = urlparse(url)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        "GET /updateReports?agent=%s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
        % (quote(agent), parts.hostname, parts.port, key)
    )
    with socket.create_connection((parts.hostname, parts.port), timeout=600) as s:
        s.sendall(request.encode("ascii"))
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                raise OSError("connection closed during the handshake")
            data += chunk
        if b" 101 " not in data.split(b"\r\n", 1)[0]:
            raise OSError("handshake refused: %r" % data.split(b"\r\n", 1)[0])
        data = data.split(b"\r\n\r\n", 1)[1]
        while not (data and data[0] & 0x0F == 0x8):  # the server's close frame
            chunk = s.recv(4096)
            if not chunk:
                return
            data += chunk
        s.sendall(bytes([0x88, 0x80]) + os.urandom(4))  # our close: empty, masked


def wstest_env():
    # The suite's dependencies warn about deprecations on every start: keep wstest.log for
    # what matters.
    return dict(os.environ, PYTHONWARNINGS="ignore")


def note_tracebacks(outdir):
    with open(os.path.join(outdir, "wstest.log"), errors="replace") as f:
        if "Traceback" in f.read():
            print("note: wstest logged a Python traceback, see %s/wstest.log" % outdir, file=sys.stderr)


def fresh_outdir(path):
    """The output folder, made if need be, without the index of an earlier run (which would
    pass for this run's if wstest wrote none)."""
    outdir = os.path.abspath(path)
    os.makedirs(outdir, exist_ok=True)
    for stale in ("index.json", "index.html"):
        if os.path.exists(os.path.join(outdir, stale)):
            os.remove(os.path.join(outdir, stale))
    return outdir


def write_spec(outdir, name, spec):
    path = os.path.join(outdir, name)
    with open(path, "w") as f:
        json.dump(spec, f, indent=2)
    return path


def summarize(outdir, spec, label, agent, strict):
    """Print the verdicts per group; return the exit status."""
    index_path = os.path.join(outdir, "index.json")
    if not os.path.exists(index_path):
        print("%s: no report (%s missing)" % (label, index_path))
        return 2
    with open(index_path) as f:
        index = json.load(f)
    results = index.get(agent)
    if results is None and len(index) == 1:
        results = next(iter(index.values()))  # the client named itself differently
    results = results or {}

    counts = {}  # group -> verdict -> n
    not_passed = []
    for case in sorted(set(cases_in_spec(spec)) | set(results), key=case_order):
        verdict = results[case].get("behavior") if case in results else "MISSING"
        if verdict not in VERDICTS:
            verdict = "FAILED"  # anything the suite has no name for is not a pass
        group = counts.setdefault(case.split(".")[0], dict.fromkeys(VERDICTS, 0))
        group[verdict] += 1
        if verdict not in PASSING:
            not_passed.append("%s(%s)" % (case, SHORT[verdict]))

    total = dict.fromkeys(VERDICTS, 0)
    header = "%-6s" % "group" + "".join("%10s" % SHORT[v] for v in VERDICTS)
    print(header)
    print("-" * len(header))
    for group in sorted(counts, key=int):
        print("%-6s" % group + "".join("%10d" % counts[group][v] for v in VERDICTS))
        for v in VERDICTS:
            total[v] += counts[group][v]
    print("-" * len(header))
    print("%-6s" % "total" + "".join("%10d" % total[v] for v in VERDICTS))
    print("not OK or INFORMATIONAL: %s" % (" ".join(not_passed) or "none"))
    print("report: %s" % os.path.join(outdir, "index.html"))
    print("%s: %s" % (label, " ".join("%s=%d" % (SHORT[v], total[v]) for v in VERDICTS)))

    if total["FAILED"] or total["MISSING"]:
        return 1
    if strict and (total["NON-STRICT"] or total["UNIMPLEMENTED"]):
        return 1
    return 0


def run_server_role(args):
    """wstest -m fuzzingclient against the server at args.url."""
    outdir = fresh_outdir(args.outdir)
    spec = {
        "outdir": outdir,
        "servers": [{"agent": args.agent, "url": args.url}],
        "cases": patterns(args.cases),
        "exclude-cases": patterns(args.exclude) if args.exclude else [],
        "exclude-agent-cases": {},
    }
    check_selection(spec)
    spec_path = write_spec(outdir, "fuzzingclient.json", spec)
    print("server role: wstest fuzzing client -> %s (agent %s, cases %s)" % (args.url, args.agent, args.cases or "all"))
    started = time.monotonic()
    with open(os.path.join(outdir, "wstest.log"), "w") as log:
        wstest = subprocess.Popen(
            [wstest_path(), "-m", "fuzzingclient", "-s", spec_path], cwd=outdir,
            env=wstest_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            code = wstest.wait(args.timeout)
        except subprocess.TimeoutExpired:
            stop(wstest)
            print("server role: wstest did not finish within %d s" % args.timeout, file=sys.stderr)
            code = None
    print("server role: wstest exited %s after %d s" % (code, time.monotonic() - started))
    note_tracebacks(outdir)
    status = summarize(outdir, spec, "autobahn-server", args.agent, args.strict)
    return status if code == 0 else max(status, 2)


def run_client_role(args):
    """wstest -m fuzzingserver, then the client under test against it."""
    if not args.command:
        fail("client: give the client's command after --")
    outdir = fresh_outdir(args.outdir)
    port = free_port()
    url = "ws://127.0.0.1:%d" % port
    spec = {
        "url": url,
        "outdir": outdir,
        "cases": patterns(args.cases),
        "exclude-cases": patterns(args.exclude) if args.exclude else [],
        "exclude-agent-cases": {},
    }
    check_selection(spec)
    spec_path = write_spec(outdir, "fuzzingserver.json", spec)
    wstest_log = open(os.path.join(outdir, "wstest.log"), "w")
    # --webport 0: no web UI. The port (see port.py) listens on the spec's host, 127.0.0.1.
    wstest = subprocess.Popen(
        [wstest_path(), "-m", "fuzzingserver", "-s", spec_path, "--webport", "0"],
        cwd=outdir,
        env=wstest_env(),
        stdout=wstest_log,
        stderr=subprocess.STDOUT,
    )
    client_code = None
    try:
        if not wait_for_port(port, wstest, 60):
            fail("client: the fuzzing server did not listen on %s (see %s/wstest.log)" % (url, outdir))
        print("client role: fuzzing server on %s (cases %s); running %s" % (url, args.cases or "all", " ".join(args.command)))
        env = dict(os.environ, AUTOBAHN_URL=url, AUTOBAHN_AGENT=args.agent)
        started = time.monotonic()
        with open(os.path.join(outdir, "client.log"), "w") as client_log:
            client = subprocess.Popen(
                args.command, env=env, stdin=subprocess.DEVNULL, stdout=client_log, stderr=subprocess.STDOUT
            )
            try:
                client_code = client.wait(args.timeout)
            except subprocess.TimeoutExpired:
                stop(client)
                print("client role: the client did not finish within %d s" % args.timeout, file=sys.stderr)
        print("client role: client exited %s after %d s (log: %s/client.log)" % (client_code, time.monotonic() - started, outdir))
        if wstest.poll() is None:
            try:
                request_reports(url, args.agent)
            except OSError as error:
                print("client role: asking for the reports failed: %s" % error, file=sys.stderr)
    finally:
        stop(wstest)
        wstest_log.close()
    note_tracebacks(outdir)
    status = summarize(outdir, spec, "autobahn-client", args.agent, args.strict)
    return status if client_code == 0 else max(status, 2)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    roles = parser.add_subparsers(dest="role", required=True)
    server = roles.add_parser("server", help="the suite's fuzzing client against a server under test")
    server.add_argument("url")
    server.add_argument("outdir")
    client = roles.add_parser("client", help="the suite's fuzzing server against a client under test")
    client.add_argument("outdir")
    for role in (server, client):
        role.add_argument("--cases", default="")
        role.add_argument("--exclude", default="")
        role.add_argument("--agent", default="wsworker")
        role.add_argument("--timeout", type=int, default=3600)
        role.add_argument("--strict", action="store_true")
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    args.command = argv[split + 1 :]
    # A SIGTERM (say, from a CI timeout) ends us through the `finally` that stops wstest.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return run_server_role(args) if args.role == "server" else run_client_role(args)


if __name__ == "__main__":
    sys.exit(main())
