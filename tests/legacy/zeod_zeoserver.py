"""zeod in place of ZEO 4's test server script (ZEO/tests/zeoserver.py).

ZEO 4's test forker spawns ``python zeoserver.py -C conf [-k] [-d] [-S]
[-v protocol]`` and talks to it over an admin address (the ZEO port + 1,
or the socket path + ``-test``): the first connection there receives one
byte once the server is up, the second makes it stop, removing the
storage files unless ``-k`` (spec section 13.2). This script keeps that contract
and runs ``zeod serve -C <conf>`` (``$ZEOD_BIN``) as the server, so ZEO 4's
own tests drive a ZEO 4 client against zeod.

A ``<mappingstorage>`` becomes a new ``<filestorage>`` (zeod serves
FileStorages only); ``<zeo>`` gets ``invalidation-age 0`` unless it sets
one, as a ZEO 4 server behaves (``getInvalidations`` answers from the
queue only; zeod otherwise reads older commits back from Data.fs); ``-v``
(an older protocol to announce) is ignored: zeod always announces Z5 and
lets the client choose.
"""
from __future__ import print_function

import ctypes
import getopt
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
ZEOD_BIN = os.environ.get(
    "ZEOD_BIN", os.path.join(ROOT, "target", "release", "zeod"))
LOG_DIR = os.environ.get(
    "ZEOD_PY_LOGDIR", os.path.join(ROOT, "tests", ".work", "legacy-logs"))
START_TIMEOUT = 30
STOP_TIMEOUT = 15
# A test that dies without stopping its server must not leave it behind.
SUICIDE_AFTER = 600

_MAPPING = re.compile(
    r"<mappingstorage(?:\s+([^>/\s]+))?\s*(?:/>|>(?:\s*name\s+\S+)?\s*"
    r"</mappingstorage>)", re.I)


def mapping_as_file(conf):
    def repl(match):
        name = match.group(1)
        return "<filestorage%s>\npath MappingStorage-%s.fs\n</filestorage>" % (
            " " + name if name else "", name or "1")
    return _MAPPING.sub(repl, conf)


def zeo4_invalidations(conf):
    if re.search(r"^\s*invalidation-age\s", conf, re.M | re.I):
        return conf
    return re.sub(r"<zeo>\n", "<zeo>\ninvalidation-age 0\n", conf, count=1)


def storage_files(conf, cwd):
    paths = []
    for value in re.findall(r"^\s*path\s+(\S+)\s*$", conf, re.M | re.I):
        value = os.path.join(cwd, value)
        paths += [value + ext for ext in
                  ("", ".index", ".lock", ".tmp", ".old", ".pack")]
    return paths


def can_connect(addr):
    family = socket.AF_UNIX if isinstance(addr, str) else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(1)
    try:
        s.connect(addr)
        return True
    except socket.error:
        return False
    finally:
        s.close()


def die_with_parent():
    # PR_SET_PDEATHSIG: zeod gets SIGTERM when this script dies (tests
    # SIGKILL the "server" pid they were given).
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)
    except OSError:
        pass


def main(argv):
    opts, _ = getopt.getopt(argv, "dkSC:v:")
    opts = dict(opts)
    keep = "-k" in opts
    conf_path = opts["-C"]
    cwd = os.getcwd()
    with open(conf_path) as f:
        conf = zeo4_invalidations(mapping_as_file(f.read()))
    address = re.search(r"^\s*address\s+(\S+)", conf, re.M).group(1)
    if "/" in address:
        addr, admin = address, address + "-test"
    else:
        host, _, port = address.rpartition(":")
        addr = (host or "localhost", int(port))
        admin = (addr[0], addr[1] + 1)
    zeod_conf = conf_path + ".zeod"
    with open(zeod_conf, "w") as f:
        f.write(conf)

    if not os.path.isdir(LOG_DIR):
        os.makedirs(LOG_DIR)
    log_path = os.path.join(LOG_DIR, "zeo4-suite-%s.log" % (
        address.replace("/", "_").replace(":", "_")))
    log = open(log_path, "ab")
    log.write(("# cwd %s\n%s\n# ---\n" % (cwd, conf)).encode())
    log.flush()
    proc = subprocess.Popen(
        [ZEOD_BIN, "serve", "-C", zeod_conf], cwd=cwd, stdout=log,
        stderr=subprocess.STDOUT, preexec_fn=die_with_parent)

    def stop():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            deadline = time.time() + STOP_TIMEOUT
            while proc.poll() is None and time.time() < deadline:
                time.sleep(0.05)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if os.path.exists(zeod_conf):
            os.remove(zeod_conf)
        if not keep:
            for p in storage_files(conf, cwd):
                if os.path.exists(p):
                    os.remove(p)

    deadline = time.time() + START_TIMEOUT
    while not can_connect(addr):
        if proc.poll() is not None or time.time() > deadline:
            stop()
            print("zeod did not start (see %s)" % log_path, file=sys.stderr)
            return 1
        time.sleep(0.05)

    family = socket.AF_UNIX if isinstance(admin, str) else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    if family == socket.AF_INET:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(admin)
    listener.listen(5)
    parent = os.getppid()
    started = time.time()
    connections = 0
    try:
        while connections < 2:
            ready, _, _ = select.select([listener], [], [], 0.5)
            if not ready:
                if (os.getppid() != parent or proc.poll() is not None
                        or time.time() - started > SUICIDE_AFTER):
                    break
                continue
            conn, _ = listener.accept()
            connections += 1
            if connections == 1:
                conn.send(b"X")
            conn.close()
    finally:
        listener.close()
        if isinstance(admin, str) and os.path.exists(admin):
            os.remove(admin)
        stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
