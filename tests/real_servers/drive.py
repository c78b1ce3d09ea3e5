#!/usr/bin/env python3
"""Drive an MCP stdio server by hand with exact bytes, to see what it does with them.

    drive.py [--preset NAME | --frame BYTES]... -- <server command...>

Spawns the server, does the initialize handshake, then writes each frame verbatim, in
the order given, and prints every line the server answers. --frame takes a Python bytes
literal body, so a raw CR is \\r and a raw U+2028 is \\xe2\\x80\\xa8 while a JSON escape
is \\\\u2028; a frame carries its own line end. In what is printed, a raw CR, LF, U+2028,
U+2029 and U+0085 show as <CR>, <LF>, <U+2028>, ... so raw and escaped forms differ.
$THOTH_TEST_MARKER_DIR is used if set, a fresh temporary directory otherwise; the marker
files the server's evil tool made during the run are listed at the end. Stdlib only.
"""

import argparse
import codecs
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time

CR = b"\r"


def call(id, name, arguments):
    return b'{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"%s","arguments":%s}}' % (
        id, name.encode(), arguments)


EVIL = call(11, "evil", b"{}")  # the call that must never run through thoth
PRESETS = {
    # The attack: one \n-terminated line, valid JSON (CR is JSON whitespace) calling safe,
    # that a universal-newline reader sees as three lines, the middle one calling evil.
    "smuggle": call(1, "safe", b'{"pad":' + CR + EVIL + CR + b"}") + b"\n",
    # Legitimate frames every server must handle.
    "list": b'{"jsonrpc":"2.0","id":2,"method":"tools/list"}\n',
    "crlf": call(3, "safe", b'{"s":"crlf"}') + b"\r\n",
    "raw2028": call(4, "safe", '{"s":"a\u2028b"}'.encode()) + b"\n",  # raw E2 80 A8, as JSON.stringify emits
    "esc2028": call(5, "safe", b'{"s":"a\\u2028b"}') + b"\n",  # the 6-character escape
    "raw2029": call(6, "safe", '{"s":"a\u2029b"}'.encode()) + b"\n",
    "raw0085": call(7, "safe", '{"s":"a\u0085b"}'.encode()) + b"\n",
    "safe-only": call(8, "safe", b'{"s":"plain"}') + b"\n",
    # The same smuggled call hidden in other places where JSON allows whitespace.
    "in-notification": b'{"jsonrpc":"2.0","method":"notifications/progress","params":'
                       b'{"progressToken":1,"progress":1,"pad":' + CR + EVIL + CR + b"}}\n",
    "in-ping-meta": b'{"jsonrpc":"2.0","id":20,"method":"ping","params":{"_meta":{"pad":' + CR + EVIL + CR + b"}}}\n",
    "in-result": b'{"jsonrpc":"2.0","id":21,"result":{"pad":' + CR + EVIL + CR + b"}}\n",
    "in-error-data": b'{"jsonrpc":"2.0","id":22,"error":{"code":-1,"message":"x","data":' + CR + EVIL + CR + b"}}\n",
    "in-batch": b'[{"jsonrpc":"2.0","id":23,"method":"ping"},' + CR + EVIL + CR + b"]\n",
}
SHOW = {"\r": "<CR>", "\n": "<LF>", "\u2028": "<U+2028>", "\u2029": "<U+2029>", "\u0085": "<U+0085>"}


def show(line):
    return "".join(SHOW.get(c, c) for c in line.decode("utf-8", "backslashreplace"))


def frame(value):
    if value in PRESETS:
        return PRESETS[value]
    try:
        return codecs.escape_decode(value.encode())[0]  # the escapes of a bytes literal
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"neither a preset ({', '.join(PRESETS)}) nor a bytes literal: {e}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", "--frame", dest="frames", action="append", type=frame, default=[], metavar="NAME|BYTES",
                   help="a preset name or a bytes literal body; repeatable, sent in order")
    p.add_argument("--protocol", default="2025-06-18", help="protocolVersion to initialize with")
    p.add_argument("--quiet", type=float, default=1.5, help="seconds of silence that end the run")
    p.add_argument("command", nargs="+", help="the server command, after --")
    args = p.parse_args()

    marker_dir = os.environ.get("THOTH_TEST_MARKER_DIR") or tempfile.mkdtemp(prefix="thoth-markers-")
    before = set(os.listdir(marker_dir))
    server = subprocess.Popen(args.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env={**os.environ, "THOTH_TEST_MARKER_DIR": marker_dir})
    lines = queue.Queue()

    def read():  # lines are split on \n only, as bytes, so what the server wrote is shown as it is
        for line in server.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()

    def send(data):
        print("->", show(data), flush=True)
        server.stdin.write(data)
        server.stdin.flush()

    def drain(timeout, until_id0=False):
        while True:
            try:
                line = lines.get(timeout=timeout)
            except queue.Empty:
                return
            if line is None:
                return
            print("<-", show(line), flush=True)
            if until_id0 and b'"id":0' in line:
                return

    send(b'{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"%s","capabilities":{},'
         b'"clientInfo":{"name":"drive.py","version":"1"}}}\n' % args.protocol.encode())
    drain(15, until_id0=True)
    send(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
    for f in args.frames:
        send(f)
        time.sleep(0.05)
    drain(args.quiet)
    server.stdin.close()
    try:
        server.wait(5)
    except subprocess.TimeoutExpired:
        server.kill()
    for l in server.stderr.read().splitlines():
        print("!!", show(l))
    made = sorted(set(os.listdir(marker_dir)) - before)
    print(f"markers: {len(made)} {made} in {marker_dir}")


if __name__ == "__main__":
    main()
