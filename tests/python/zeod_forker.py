"""Start ZEO servers as external processes for ZEO's and ZODB's own tests.

ZEO's test-suite starts its servers through ``start_zeo_server`` (in
``ZEO._forker``, re-exported by ``ZEO.tests.forker`` and imported by name into
``ZEO.tests.testConfig``).  ``start_external`` has the same signature and
writes the same configuration text into the current working directory, but
runs the server as a separate program (spec §13.2):

* ``zeod serve -C <file>`` (the binary is ``$ZEOD_BIN``, default
  ``target/release/zeod``), or
* ``python -m ZEO.runzeo -C <file>`` when ``ZEOD_SERVER=runzeo``: Python's own
  server launched the same way, the baseline that tells harness failures from
  server failures.

For zeod, a ``<mappingstorage>`` section becomes a new ``<filestorage>``
(zeod serves FileStorages only).

``install()`` puts it in place of the Python runner.  ``dialect`` selects the
wire encoding announced by every server started: ``"pickle"`` (Z5) or
``"msgpack"`` (M5, ``msgpack true`` in ``<zeo>``).
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

SERVER = os.environ.get("ZEOD_SERVER", "zeod")
ZEOD_BIN = os.environ.get(
    "ZEOD_BIN", os.path.join(ROOT, "target", "release", "zeod"))
# Server output (stdout+stderr) of every server started goes here, one file
# per start, so a failing test can show what the server said.
LOG_DIR = os.environ.get(
    "ZEOD_PY_LOGDIR", os.path.join(ROOT, "tests", ".work", "python-logs"))
START_TIMEOUT = float(os.environ.get("ZEOD_START_TIMEOUT", "30"))
STOP_TIMEOUT = 15

dialect = "pickle"
# Set by the test runner wrapper: names the server log files.
current_test = "adhoc"
# Every server log written for the current test, newest last.
current_logs = []
_running = []


def _free_port():
    # Two consecutive free ports, like ZEO.tests.forker.get_port: some tests
    # use port+1 for a second server.
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port < 65535 and not _can_connect(("127.0.0.1", port + 1)):
            return port
    raise RuntimeError("no free port")


def _can_connect(addr):
    family = socket.AF_UNIX if isinstance(addr, str) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        try:
            s.connect(addr)
        except OSError:
            return False
        return True


_MAPPING = re.compile(
    r"<mappingstorage(?:\s+([^>/\s]+))?\s*(?:/>|>(?:\s*name\s+\S+)?\s*"
    r"</mappingstorage>)", re.I)


def _mapping_as_file(storage_conf):
    """Serves a new FileStorage where a test asks for a ``<mappingstorage>``.

    zeod serves FileStorages only; the tests that use Python's in-memory
    MappingStorage want an empty storage without undo, which a new
    FileStorage is too (it only offers more)."""
    def repl(match):
        name = match.group(1)
        return "<filestorage%s>\npath MappingStorage-%s.fs\n</filestorage>" % (
            " " + name if name else "", name or "1")
    return _MAPPING.sub(repl, storage_conf)


def _greeting(addr):
    """The protocol id the server sends first (spec §2)."""
    family = socket.AF_UNIX if isinstance(addr, str) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(addr)
        data = b""
        while len(data) < 4 or len(data) < 4 + int.from_bytes(data[:4], "big"):
            chunk = s.recv(64)
            if not chunk:
                break
            data += chunk
        return data[4:]


# ZEO's tests of runzeo's default answer to a client whose last tid the
# invalidation queue no longer holds: None, the client drops its cache.
# zeod answers from the Data.fs instead unless `invalidation-age 0`
# (docs/OPERATIONS.md, test_cache_survival.py); these tests get that
# setting, unless their configuration sets invalidation-age itself.
RUNZEO_DEFAULT_INVALIDATIONS = frozenset({
    "testConnection.FileStorageInvqTests.checkVerificationWith2ClientsInvqOverflow",
    "testZEO.drop_cache_rather_than_verify_txt",
    "testZEO.invalidation-age_txt",
})


def _without_file_scan(conf):
    """Adds ``invalidation-age 0`` to the ``<zeo>`` section unless it says."""
    if re.search(r"^\s*invalidation-age\s", conf, re.M | re.I):
        return conf
    return re.sub(r"<zeo>\n", "<zeo>\ninvalidation-age 0\n", conf, count=1)


def _with_msgpack(conf):
    """Adds ``msgpack true`` to the ``<zeo>`` section unless it says."""
    if re.search(r"^\s*msgpack\s", conf, re.M | re.I):
        return conf
    return re.sub(r"<zeo>\n", "<zeo>\nmsgpack true\n", conf, count=1)


def server_command(conf_path, zeod_args=()):
    if SERVER == "runzeo":
        return [sys.executable, "-m", "ZEO.runzeo", "-C", conf_path]
    if SERVER == "zeod":
        return [ZEOD_BIN, "serve", "-C", conf_path, *zeod_args]
    raise ValueError(f"ZEOD_SERVER must be zeod or runzeo, not {SERVER!r}")


def storage_files(conf_text, cwd):
    """The files ``keep=False`` removes after the server stopped: what
    Python's runner removes with ``FileStorage.cleanup()``.  Blob
    directories stay, as there (a shared one is the client's too)."""
    paths = []
    for value in re.findall(r"^\s*path\s+(\S+)\s*$", conf_text, re.M | re.I):
        value = os.path.join(cwd, value)
        paths += [value + ext for ext in
                  ("", ".index", ".lock", ".tmp", ".old", ".pack")]
    return paths


def start_external(storage_conf=None, zeo_conf=None, port=None, keep=False,
                   path="Data.fs", protocol=None, blob_dir=None, log=None,
                   start_timeout=None, zeod_args=(), **ignored):
    """Same contract as ``ZEO._forker.start_zeo_server``: ``(addr, stop)``.

    ``zeod_args`` are extra command-line arguments for zeod only (runzeo has
    no equivalent options).  ``protocol`` (forcing an old protocol version,
    only ZEO's ``protocols.test``) and ``threaded`` are ignored."""
    from ZEO._forker import ZEOConfig

    if not storage_conf:
        storage_conf = "<filestorage>\npath %s\n</filestorage>" % path
    if blob_dir:
        storage_conf = (f"<blobstorage>\nblob-dir {blob_dir}\n"
                        f"{storage_conf}\n</blobstorage>")

    if zeo_conf is None or isinstance(zeo_conf, dict):
        if port is None:
            port = 0
        addr = ("127.0.0.1", port) if isinstance(port, int) else port
        z = ZEOConfig(addr, log=log)
        if zeo_conf:
            z.__dict__.update(zeo_conf)
        zeo_conf = z
    zeo_text = str(zeo_conf)
    # ZEO's SSLConnectionTests write `address HOST: PORT`; ZConfig (and
    # zeod) accept it, the port handling below wants it in one piece.
    zeo_text = re.sub(r"^(\s*address\s+\S*:)[ \t]+(\d+)", r"\1\2", zeo_text,
                      flags=re.M)
    if SERVER == "zeod":
        storage_conf = _mapping_as_file(storage_conf)
    if dialect == "msgpack":
        zeo_text = _with_msgpack(zeo_text)
    if (SERVER == "zeod" and
            current_test.split("-", 1)[-1] in RUNZEO_DEFAULT_INVALIDATIONS):
        zeo_text = _without_file_scan(zeo_text)
    address = re.search(r"^\s*address\s+(\S+)", zeo_text, re.M).group(1)
    if not address.endswith(":0"):
        return _launch(zeo_text, storage_conf, address, keep, zeod_args,
                       start_timeout)
    # Port 0: pick a free port. Another process may take it before the
    # server binds (any outgoing connection can get it as its local port),
    # so a server that fails to start there is tried again on another.
    for attempt in range(3):
        new = "127.0.0.1:%d" % _free_port()
        text = zeo_text.replace("address " + address, "address " + new, 1)
        try:
            return _launch(text, storage_conf, new, keep, zeod_args,
                           start_timeout)
        except ServerExited:
            if attempt == 2:
                raise


class ServerExited(RuntimeError):
    pass


class Restartable:
    """A server on a fixed port over ``directory``/Data.fs, restartable
    there (clients reconnect to the same address): ``start()``,
    ``restart()``, ``stop()``; ``addr`` once started."""

    def __init__(self, directory, zeo_conf=None):
        self.directory = directory
        self.zeo_conf = zeo_conf
        self.port = 0
        self.stop = None

    def start(self):
        old = os.getcwd()
        os.chdir(self.directory)
        try:
            self.addr, self.stop = start_external(
                port=self.port, keep=True, zeo_conf=self.zeo_conf)
        finally:
            os.chdir(old)
        self.port = self.addr[1]

    def restart(self):
        self.stop()
        self.start()


def _launch(zeo_text, storage_conf, address, keep, zeod_args, start_timeout):
    if "/" in address:
        addr = address
    else:
        host, _, p = address.rpartition(":")
        addr = (host or "127.0.0.1", int(p))

    text = zeo_text + "\n\n" + storage_conf
    cwd = os.getcwd()
    fd, conf_path = tempfile.mkstemp(".conf", prefix="ZEO_forker", dir=cwd)
    with os.fdopen(fd, "w") as f:
        f.write(text)

    os.makedirs(LOG_DIR, exist_ok=True)
    port_label = addr[1] if isinstance(addr, tuple) else "unix"
    log_path = os.path.join(
        LOG_DIR, "%s.%s.%s.log" % (
            re.sub(r"[^\w.-]", "_", current_test), port_label,
            len(current_logs)))
    eventlog = re.search(r"<logfile>\s*path\s+(\S+)", zeo_text)
    eventlog = eventlog and os.path.join(cwd, eventlog.group(1))
    command = server_command(conf_path, zeod_args)
    with open(log_path, "ab") as log_file:
        log_file.write(("# %s\n# cwd %s\n%s\n# ---\n" % (
            " ".join(command), cwd, text)).encode())
        log_file.flush()
        current_logs.append(log_path)
        proc = subprocess.Popen(
            command, cwd=cwd, stdin=subprocess.DEVNULL,
            stdout=log_file, stderr=subprocess.STDOUT)

    timeout = start_timeout or START_TIMEOUT
    deadline = time.monotonic() + timeout
    while not _can_connect(addr):
        if proc.poll() is not None:
            _forget_conf(conf_path)
            raise ServerExited(
                "server exited with %s before accepting connections:\n%s"
                % (proc.returncode, tail(log_path)))
        if time.monotonic() > deadline:
            _terminate(proc)
            _forget_conf(conf_path)
            raise RuntimeError(
                "server did not accept connections at %r within %ss:\n%s"
                % (addr, timeout, tail(log_path)))
        time.sleep(0.05)
    _running.append(proc)

    def stop(stop_timeout=STOP_TIMEOUT):
        if proc in _running:
            _running.remove(proc)
        _terminate(proc, stop_timeout)
        _forget_conf(conf_path)
        if eventlog and os.path.exists(eventlog):
            # The test's directory goes away with the test: keep a copy.
            with open(eventlog, "rb") as src, open(log_path, "ab") as dst:
                dst.write(b"# --- <eventlog> %s\n" % eventlog.encode())
                shutil.copyfileobj(src, dst)
        if not keep:
            for p in storage_files(storage_conf, cwd):
                if os.path.isdir(p):
                    shutil.rmtree(p, ignore_errors=True)
                elif os.path.exists(p):
                    os.remove(p)

    stop.process = proc
    stop.log_path = log_path

    # (Not over TLS: the probe speaks plain TCP.)
    tls = re.search(r"<ssl>|ssl-certificate", zeo_text)
    greeting = None if tls else _greeting(addr)
    want = b"M5" if dialect == "msgpack" else b"Z5"
    if greeting not in (None, want):
        stop()
        raise RuntimeError("server greets with %r, expected %r for %s"
                           % (greeting, want, dialect))
    return addr, stop


def _forget_conf(conf_path):
    if os.path.exists(conf_path):
        os.remove(conf_path)


def _terminate(proc, timeout=STOP_TIMEOUT):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            print("WARNING server pid %d ignored SIGTERM for %ss, killing"
                  % (proc.pid, timeout), file=sys.stderr)
            proc.kill()
            proc.wait(timeout)


def stop_all():
    """Kills servers a test forgot to stop (it failed before tearDown)."""
    for proc in list(_running):
        _running.remove(proc)
        _terminate(proc)


def tail(path, limit=6000):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return "(no server log)"
    return data[-limit:].decode("utf-8", "replace")


def install():
    """Replaces ZEO's server runner everywhere the tests look it up."""
    import ZEO._forker
    import ZEO.tests.forker
    import ZEO.tests.testConfig

    ZEO._forker.start_zeo_server = start_external
    ZEO.tests.forker.start_zeo_server = start_external
    ZEO.tests.testConfig.start_zeo_server = start_external
