#!/usr/bin/env python3
"""Ports the Autobahn|Testsuite to Python 3, in place, inside the venv that runs it.

install.sh runs this with the venv's interpreter, over freshly installed copies of
``autobahntestsuite`` 25.10.1 (Python 2 code) and ``autobahn`` 0.10.9 (the WebSocket library
the suite was written against; it runs on Python 3 already, but a few paths only the fuzzers
take were never run there).

The port has three parts:

1. lib2to3's standard fixers over the whole ``autobahntestsuite`` package: print statements,
   ``except X, e``, implicit relative imports, ``has_key``, dict views and so on.
2. A small helper module, ``autobahntestsuite/_py3shim.py`` (SHIM below).
3. Targeted edits (EDITS and the functions below). In Python 2 a plain string literal is a
   byte string; after lib2to3 the suite's payloads are ``str``, while autobahn on Python 3
   sends and receives ``bytes``. The edits convert at the few boundaries where the two meet
   (sending, comparing what was received with what was expected, logging, writing the
   reports) rather than rewriting the hundreds of literals in the cases.

Every edit names the text it expects and how often: when the text is not there exactly that
often, the port stops with an error and changes nothing, so a different release of either
package is refused loudly instead of ported half-way. Running it over files it already
ported is refused too (install.sh reinstalls the packages pristine first).

Usage: VENV/bin/python conformance/port.py
"""

import compileall
import importlib.util
import io
import os
import re
import sys
import tokenize
import warnings

SUITE_VERSION = "25.10.1"
AUTOBAHN_VERSION = "0.10.9"
SHIM_NAME = "_py3shim"
SHIM_IMPORT = "from autobahntestsuite import _py3shim as py3\n"


class PortError(Exception):
    """An expected edit did not apply: the installed files are not the ones this port knows."""


# --------------------------------------------------------------------------------------------
# The helper module the edits call into.
# --------------------------------------------------------------------------------------------

SHIM = '''"""Python 3 helpers for the ported Autobahn|Testsuite (written by conformance/port.py).

The suite's Python 2 byte strings are ``str`` after lib2to3. Each of their characters is below
U+0100 (they were written as ASCII or as \\\\xNN escapes), so Latin-1 turns them back into
exactly the bytes they stood for.
"""
import binascii
import importlib
import os
from urllib.parse import urlparse


def as_bytes(value):
    """A Python 2 byte string (now ``str``) as ``bytes``; bytes-like values are copied as is."""
    if isinstance(value, str):
        return value.encode("latin-1")
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    return value


def as_text(value):
    """Bytes (or a Python 2 byte string) shown as text, as the Python 2 reports did: UTF-8."""
    return as_bytes(value).decode("utf-8", "replace")


def hexlify(value):
    """``binascii.b2a_hex`` for bytes or a Python 2 byte string, as ``str``."""
    return binascii.b2a_hex(as_bytes(value)).decode("ascii")


def _canonical(value):
    if isinstance(value, (str, bytearray, memoryview)):
        return as_bytes(value)
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_canonical(v) for v in value)
    if isinstance(value, dict):
        return {_canonical(k): _canonical(v) for k, v in value.items()}
    return value


def _strict_equal(a, b):
    # The suite compared pickles, which tells a list from a tuple and True from 1: so do we.
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_strict_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_strict_equal(a[k], b[k]) for k in a)
    return a == b


def same_events(received, expected):
    """Whether what a case received matches what it expected, payloads compared as bytes."""
    return _strict_equal(_canonical(received), _canonical(expected))


def jsonable(value):
    """A case result with its bytes as text, so that the json module can write it."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if isinstance(value, tuple):
        return tuple(jsonable(v) for v in value)
    if isinstance(value, dict):
        return {jsonable(k): jsonable(v) for k, v in value.items()}
    return value


def package_file(package, name):
    """A data file shipped inside a package (what pkg_resources.resource_filename gave)."""
    module = importlib.import_module(package)
    return os.path.join(os.path.dirname(os.path.abspath(module.__file__)), name)


def listen_host(url):
    """The interface to listen on: the host of the spec's ws:// URL (127.0.0.1 when it has
    none or says localhost). Upstream listens on every interface."""
    host = urlparse(url).hostname if url else None
    return host if host and host != "localhost" else "127.0.0.1"
'''


# --------------------------------------------------------------------------------------------
# Checked edits.
# --------------------------------------------------------------------------------------------


class Package:
    """The source files of one installed package, edited in memory and written by save()."""

    def __init__(self, name):
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            raise PortError("package %s is not installed for %s" % (name, sys.executable))
        self.name = name
        self.root = list(spec.submodule_search_locations)[0]
        self.files = {}
        self.original = {}
        self.edits = 0

    def text(self, rel):
        if rel not in self.files:
            with io.open(os.path.join(self.root, rel), encoding="utf-8") as f:
                self.files[rel] = self.original[rel] = f.read()
        return self.files[rel]

    def replace(self, rel, old, new, times=1):
        """Replace ``old`` by ``new`` in file ``rel``; ``old`` must occur exactly ``times``
        times (``times=None``: at least once)."""
        found = self.text(rel).count(old)
        if found == 0 or (times is not None and found != times):
            raise PortError(
                "%s/%s: expected %s of %r, found %d"
                % (self.name, rel, "%d occurrence(s)" % times if times else "at least one", old, found)
            )
        self.files[rel] = self.files[rel].replace(old, new)
        self.edits += 1

    def import_shim(self, rel):
        """Import the shim as ``py3`` right before the file's first import statement."""
        text = self.text(rel)
        if SHIM_IMPORT in text:
            return
        first = re.search(r"^(?:import |from (?!__future__ ))", text, re.M)
        if first is None:
            raise PortError("%s/%s: no import statement to put the shim's import before" % (self.name, rel))
        self.files[rel] = text[: first.start()] + SHIM_IMPORT + text[first.start() :]
        self.edits += 1

    def save(self):
        """Write the files that changed; return how many."""
        changed = [rel for rel, text in self.files.items() if text != self.original.get(rel)]
        for rel in changed:
            with io.open(os.path.join(self.root, rel), "w", encoding="utf-8") as f:
                f.write(self.files[rel])
        return len(changed)


def version_of(package, rel):
    with io.open(os.path.join(package.root, rel), encoding="utf-8") as f:
        match = re.search(r"__version__\s*=\s*['\"]([^'\"]+)['\"]", f.read())
    return match.group(1) if match else None


# --------------------------------------------------------------------------------------------
# 1. lib2to3
# --------------------------------------------------------------------------------------------


def run_lib2to3(package):
    """The fixers the ``2to3`` command applies by default, over every module of the package."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lib2to3 warns that it is deprecated
        from lib2to3 import refactor
    tool = refactor.RefactoringTool(refactor.get_fixers_from_package("lib2to3.fixes"))
    rewritten = total = 0
    for folder, dirs, names in os.walk(package.root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(n for n in names if n.endswith(".py")):
            rel = os.path.relpath(os.path.join(folder, name), package.root)
            source = package.text(rel)
            if not source.endswith("\n"):
                source += "\n"  # lib2to3's parser needs the final newline
            # The absolute path: the fixer for implicit relative imports looks beside it.
            ported = str(tool.refactor_string(source, os.path.join(folder, name)))
            total += 1
            if ported != source:
                package.files[rel] = ported
                rewritten += 1
    print("port.py: lib2to3 rewrote %d of %d modules" % (rewritten, total))


# --------------------------------------------------------------------------------------------
# 2. the suite
# --------------------------------------------------------------------------------------------

# Send API of autobahn's WebSocketProtocol, wrapped in the fuzzers' mix-in (it comes first in
# the MRO of both the fuzzing server's and the fuzzing client's protocol): the cases and the
# command channel of the fuzzing server hand it str, autobahn wants bytes.
SEND_WRAPPERS = '''   # --- Python 3 port: the cases pass Python 2 byte strings (str); autobahn wants bytes ---
   def sendFrame(self, opcode, payload = b'', *args, **kwargs):
      if kwargs.get('mask') is not None:
         kwargs['mask'] = py3.as_bytes(kwargs['mask'])
      return super(FuzzingProtocol, self).sendFrame(opcode, py3.as_bytes(payload), *args, **kwargs)

   def sendMessage(self, payload, *args, **kwargs):
      return super(FuzzingProtocol, self).sendMessage(py3.as_bytes(payload), *args, **kwargs)

   def sendMessageFrame(self, payload, *args, **kwargs):
      return super(FuzzingProtocol, self).sendMessageFrame(py3.as_bytes(payload), *args, **kwargs)

   def sendMessageFrameData(self, payload, *args, **kwargs):
      return super(FuzzingProtocol, self).sendMessageFrameData(py3.as_bytes(payload), *args, **kwargs)

   def sendCloseFrame(self, code = None, reasonUtf8 = None, isReply = False):
      if reasonUtf8 is not None:
         reasonUtf8 = py3.as_bytes(reasonUtf8)
      return super(FuzzingProtocol, self).sendCloseFrame(code = code, reasonUtf8 = reasonUtf8, isReply = isReply)

   def sendPing(self, payload = None):
      return super(FuzzingProtocol, self).sendPing(None if payload is None else py3.as_bytes(payload))

   def sendPong(self, payload = None):
      return super(FuzzingProtocol, self).sendPong(None if payload is None else py3.as_bytes(payload))

   def enableWirelog(self, enable):'''

# (file, text after lib2to3, replacement, occurrences). Grouped by what they fix.
SUITE_EDITS = [
    # -- fuzzing.py: the wire log holds bytes; its hex and text renderings must be str.
    ("fuzzing.py", "dd = binascii.b2a_hex(data[:maxlen]) + ellipses", "dd = py3.hexlify(data[:maxlen]) + ellipses", 1),
    ("fuzzing.py", "dd = binascii.b2a_hex(data)\n", "dd = py3.hexlify(data)\n", 1),
    (
        "fuzzing.py",
        'def asciiLogData(data, maxlen = 64, replace = False):\n   ellipses = " ..."\n',
        'def asciiLogData(data, maxlen = 64, replace = False):\n   ellipses = b" ..."\n   data = py3.as_bytes(data)\n',
        1,
    ),
    ("fuzzing.py", "p = ''.join(payload)", "p = b''.join(py3.as_bytes(part) for part in payload)", 1),
    (
        "fuzzing.py",
        "binascii.b2a_hex(frameHeader.mask) if frameHeader.mask else None",
        "py3.hexlify(frameHeader.mask) if frameHeader.mask else None",
        2,
    ),
    ("fuzzing.py", "mmask = binascii.b2a_hex(t[6])", "mmask = py3.hexlify(t[6])", 1),
    # -- fuzzing.py: sending (see SEND_WRAPPERS).
    ("fuzzing.py", "   def enableWirelog(self, enable):", SEND_WRAPPERS, 1),
    # -- fuzzing.py: results go through json (bytes -> text) and the reports are UTF-8 text
    #    files, written as str rather than as encoded bytes.
    ("fuzzing.py", "self.factory.logCase(caseResult)", "self.factory.logCase(py3.jsonable(caseResult))", 1),
    (
        "fuzzing.py",
        "f = open(os.path.join(outdir, report_filename), 'w')",
        "f = open(os.path.join(outdir, report_filename), 'w', encoding = 'utf-8')",
        4,
    ),
    ("fuzzing.py", '(c[0], case[c[0]], c[1])).encode("utf-8"))', "(c[0], case[c[0]], c[1])))", 1),
    ("fuzzing.py", "(2+4+len(prefix))*\" \", ll.encode('utf8')))", '(2+4+len(prefix))*" ", ll))', 1),
    # -- fuzzing.py: listen on the spec's host (loopback here), not on every interface; the web
    #    UI (only when --webport is given) likewise. Twisted's resource paths are bytes.
    (
        "fuzzing.py",
        "   listenWS(factory, sslContext)\n",
        "   listenWS(factory, sslContext, interface = py3.listen_host(spec.get('url')))\n",
        1,
    ),
    (
        "fuzzing.py",
        "reactor.listenSSL(webport, web, sslContext)\n",
        "reactor.listenSSL(webport, web, sslContext, interface = py3.listen_host(spec.get('url')))\n",
        1,
    ),
    (
        "fuzzing.py",
        "reactor.listenTCP(webport, web)\n",
        "reactor.listenTCP(webport, web, interface = py3.listen_host(spec.get('url')))\n",
        1,
    ),
    ("fuzzing.py", "webdir.putChild('cwd', curdir)", "webdir.putChild(b'cwd', curdir)", 1),
    # -- serializer.py: imported by wstest at start for a mode we do not use; its import of
    #    autobahn's WAMP test helpers must not keep wstest from starting.
    (
        "serializer.py",
        "from autobahn.wamp.test.test_serializer import generate_test_messages\n",
        "try:\n   from autobahn.wamp.test.test_serializer import generate_test_messages\n"
        "except Exception:  # Python 3 port: only the serializer mode needs it\n"
        "   generate_test_messages = None\n",
        1,
    ),
    # -- the cases: compare received and expected events as bytes (was: their pickles).
    ("case/case.py", "return pickle.dumps(obj1) == pickle.dumps(obj2)", "return py3.same_events(obj1, obj2)", 1),
    # -- 6.2.1 to 6.2.3 spell their payloads with literal non-ASCII characters in a UTF-8
    #    source file: in Python 2 that was the UTF-8 bytes. Say so; the descriptions show text.
    ("case/case6_2_1.py", 'PAYLOAD = "Hello-µ@ßöäüàá-UTF-8!!"', 'PAYLOAD = "Hello-µ@ßöäüàá-UTF-8!!".encode("utf-8")', 1),
    ("case/case6_2_3.py", 'PAYLOAD = "Hello-µ@ßöäüàá-UTF-8!!"', 'PAYLOAD = "Hello-µ@ßöäüàá-UTF-8!!".encode("utf-8")', 1),
    ("case/case6_2_2.py", 'PAYLOAD1 = "Hello-µ@ßöä"', 'PAYLOAD1 = "Hello-µ@ßöä".encode("utf-8")', 1),
    ("case/case6_2_2.py", 'PAYLOAD2 = "üàá-UTF-8!!"', 'PAYLOAD2 = "üàá-UTF-8!!".encode("utf-8")', 1),
    ("case/case6_2_1.py", "% (PAYLOAD, py3.hexlify(PAYLOAD))", "% (py3.as_text(PAYLOAD), py3.hexlify(PAYLOAD))", 1),
    ("case/case6_2_3.py", "% (PAYLOAD, py3.hexlify(PAYLOAD))", "% (py3.as_text(PAYLOAD), py3.hexlify(PAYLOAD))", 1),
    ("case/case6_2_4.py", "% (PAYLOAD, py3.hexlify(PAYLOAD))", "% (py3.as_text(PAYLOAD), py3.hexlify(PAYLOAD))", 1),
    (
        "case/case6_2_2.py",
        "% (PAYLOAD1, py3.hexlify(PAYLOAD1), PAYLOAD2, py3.hexlify(PAYLOAD2))",
        "% (py3.as_text(PAYLOAD1), py3.hexlify(PAYLOAD1), py3.as_text(PAYLOAD2), py3.hexlify(PAYLOAD2))",
        1,
    ),
    # -- 6.x.x: the UTF-8 test vectors are Python 2 byte strings; the validator wants bytes.
    ("case/case6_x_x.py", "      res = v.validate(vss[:i])", "      res = v.validate(py3.as_bytes(vss[:i]))", 1),
    (
        "case/case6_x_x.py",
        "   return UTF8_TEST_SEQUENCES\n",
        "   return [[label, [(valid, py3.as_bytes(octets)) for (valid, octets) in seqs]]\n"
        "           for (label, seqs) in UTF8_TEST_SEQUENCES]\n",
        1,
    ),
    # -- 9.9.1: zope.interface's implements() class advice is gone; the decorator replaced it.
    ("case/case9_9_1.py", "from zope.interface import implements\n", "from zope.interface import implementer\n", 1),
    (
        "case/case9_9_1.py",
        "class FrameProducer:\n\n   implements(interfaces.IPushProducer)\n",
        "@implementer(interfaces.IPushProducer)\nclass FrameProducer:\n",
        1,
    ),
    # -- 10.1.1: the expected frame count is a whole number.
    (
        "case/case10_1_1.py",
        "len(self.payload) / self.p.autoFragmentSize",
        "len(self.payload) // self.p.autoFragmentSize",
        1,
    ),
    # -- 12.* and 13.*: digests in the result text.
    (
        "case/case12_x_x.py",
        "binascii.hexlify(received_hash), binascii.hexlify(self._expected_hash)",
        "py3.hexlify(received_hash), py3.hexlify(self._expected_hash)",
        1,
    ),
]

# Modules that import pkg_resources (setuptools, deprecated, maybe absent) only to find the data
# files shipped in the package: (file, the import line after lib2to3, what remains of it).
PKG_RESOURCES_IMPORTS = [
    ("fuzzing.py", "import os, json, binascii, time, textwrap, pkg_resources\n", "import os, json, binascii, time, textwrap\n"),
    ("wstest.py", "import os, json, sys, pkg_resources\n", "import os, json, sys\n"),
    ("broadcast.py", "import pkg_resources\n", ""),
    ("case/case12_x_x.py", "import copy, os, pkg_resources, hashlib, binascii\n", "import copy, os, hashlib, binascii\n"),
]
# ... and where they call it: (file, how many calls).
PACKAGE_FILE_CALLS = [
    ("fuzzing.py", 1),
    ("testee.py", 1),
    ("broadcast.py", 1),
    ("wsperfmaster.py", 1),
    ("case/case12_x_x.py", 3),
]


def port_suite(suite):
    run_lib2to3(suite)
    suite.files[SHIM_NAME + ".py"] = SHIM  # written by save() with the rest

    # The shim's import first, so that the edits may use it.
    needs_shim = {rel for (rel, _, new, _) in SUITE_EDITS if "py3." in new}
    needs_shim |= {rel for (rel, _) in PACKAGE_FILE_CALLS}
    for rel in sorted(needs_shim):
        suite.import_shim(rel)

    # binascii.b2a_hex in the cases' descriptions: hex as str.
    case_files = sorted(
        "case/" + n
        for n in os.listdir(os.path.join(suite.root, "case"))
        if n.endswith(".py") and n not in ("__init__.py", "case.py")
    )
    for rel in case_files:
        if "binascii.b2a_hex(" in suite.text(rel):
            suite.import_shim(rel)
            suite.replace(rel, "binascii.b2a_hex(", "py3.hexlify(", times=None)
        # Cases made with type(name, (object, Case, ), ...): no consistent MRO on Python 3,
        # where every class derives from object already.
        if "(object, Case, )" in suite.text(rel):
            suite.replace(rel, "(object, Case, )", "(Case, )", times=None)

    for rel, old, new, times in SUITE_EDITS:
        suite.replace(rel, old, new, times)

    for rel, old, new in PKG_RESOURCES_IMPORTS:
        suite.replace(rel, old, new, 1)
    for rel, times in PACKAGE_FILE_CALLS:
        suite.replace(rel, "pkg_resources.resource_filename(", "py3.package_file(", times)

    # Nothing may still use what we took out.
    for rel, text in suite.files.items():
        # util.py: optional, inside try/except; the shim: in its docstring
        if "pkg_resources" in text and rel not in ("util.py", SHIM_NAME + ".py"):
            raise PortError("%s/%s still uses pkg_resources" % (suite.name, rel))


# --------------------------------------------------------------------------------------------
# 3. autobahn
# --------------------------------------------------------------------------------------------


def port_autobahn(autobahn):
    # sendFrame(payload_len=...) repeats the payload a whole number of times.
    autobahn.replace(
        "websocket/protocol.py", "range(payload_len / len(payload))", "range(payload_len // len(payload))", 1
    )
    # Current txaio needs the framework chosen explicitly (the txaio of 2015 guessed it); later
    # autobahn releases do exactly this at the top of autobahn/twisted/*.py.
    autobahn.replace(
        "twisted/websocket.py",
        "\nfrom base64 import b64encode, b64decode\n",
        "\nimport txaio\ntxaio.use_twisted()  # Python 3 port: see conformance/port.py\n\n"
        "from base64 import b64encode, b64decode\n",
        1,
    )


# --------------------------------------------------------------------------------------------


def main():
    suite = Package("autobahntestsuite")
    autobahn = Package("autobahn")
    found = (version_of(suite, "_version.py"), version_of(autobahn, "__init__.py"))
    if found != (SUITE_VERSION, AUTOBAHN_VERSION):
        raise PortError(
            "this port is for autobahntestsuite %s with autobahn %s, found %s with %s"
            % ((SUITE_VERSION, AUTOBAHN_VERSION) + found)
        )
    if os.path.exists(os.path.join(suite.root, SHIM_NAME + ".py")):
        raise PortError("%s is ported already; reinstall both packages pristine first (install.sh does)" % suite.root)

    # Every edit is made in memory and checked before save() writes a file, so that a port
    # which fails leaves the pristine files as they were.
    port_suite(suite)
    port_autobahn(autobahn)
    for package in (suite, autobahn):
        print("port.py: %d edits in %d files of %s" % (package.edits, package.save(), package.name))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compiled = compileall.compile_dir(suite.root, quiet=1, force=True)
        compiled = compileall.compile_dir(os.path.join(autobahn.root, "websocket"), quiet=1, force=True) and compiled
        compiled = compileall.compile_dir(os.path.join(autobahn.root, "twisted"), quiet=1, force=True) and compiled
    if not compiled:
        raise PortError("the ported modules do not compile")
    print("port.py: done")


if __name__ == "__main__":
    try:
        main()
    except PortError as error:
        sys.stderr.write("port.py: ERROR: %s\n" % error)
        sys.exit(1)
