"""Hostile and broken input on raw sockets (spec §1.2, §3.8).

For each kind of bad input, sent on its own connection to a server that
has data and a connected, working ZEO client:

* the bad connection is closed (or, where the spec allows, gets an error
  reply), and nothing the input asked for happens;
* the server writes a log line at warning level or above about it;
* Data.fs is byte for byte unchanged;
* the other client keeps working: it reads from the server, and a new
  client's commit reaches it as an invalidation.
"""
import os
import pickle
import re
import socket
import struct
import time

import pytest
import transaction
import ZEO
from ZEO.asyncio.marshal import encoder
from ZEO.ClientStorage import ClientStorage
from ZODB.utils import maxtid
from ZODB.utils import z64

import zeod_forker

MAX_FRAME_SIZE = 1 << 20
LOG_LEVEL = re.compile(r"\b(WARN|WARNING|ERROR|CRITICAL)\b", re.I)


class Raw:
    """A hand-driven ZEO connection."""

    def __init__(self, addr, protocol=None, register=True):
        self.sock = socket.create_connection(addr, timeout=10)
        self.greeting = self.recv_frame()
        self.protocol = protocol or self.greeting
        if protocol is not False:
            self.send_frame(self.protocol)
            self.encode = encoder(self.protocol)
            if register:
                reply = self.call(1, "register", "1", False)
                assert reply[1] == 0, reply

    def send_frame(self, payload, length=None):
        if length is None:
            length = len(payload)
        self.sock.sendall(struct.pack(">I", length) + payload)

    def recv_exactly(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def recv_frame(self):
        (length,) = struct.unpack(">I", self.recv_exactly(4))
        return self.recv_exactly(length)

    def decode(self, frame):
        if self.protocol.startswith(b"M"):
            import msgpack
            return msgpack.unpackb(frame, raw=False, use_list=False)
        return pickle.loads(frame)

    def is_error_reply(self, frame):
        try:
            msg = self.decode(frame)
        except Exception:
            return False
        return isinstance(msg, tuple) and len(msg) == 4 and msg[1] == 2

    def call(self, msgid, name, *args):
        self.send_frame(self.encode(msgid, False, name, args))
        while True:
            msg = self.decode(self.recv_frame())
            if msg[0] == msgid and msg[2] == ".reply":
                return msg

    def outcome(self, timeout=10):
        """("closed", frames) once the server closes the connection,
        ("error", frames) once it sends an error reply, or ("open", frames)
        if neither happened within ``timeout`` seconds."""
        frames = []
        self.sock.settimeout(timeout)
        try:
            while True:
                frames.append(self.recv_frame())
                if self.is_error_reply(frames[-1]):
                    return "error", frames
        except (EOFError, ConnectionResetError, BrokenPipeError):
            return "closed", frames
        except socket.timeout:
            return "open", frames
        finally:
            self.sock.close()


class EvilReduce:
    """Pickles as a call of an arbitrary global: what an attacker sends."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def pickled_call(func, *args):
    msg = (2, False, "loadBefore", (EvilReduce(func, *args), maxtid))
    return pickle.dumps(msg, 3)


class Site:
    """A server with data, a bystander client and a log to watch."""

    def __init__(self, directory, dialect):
        self.directory = directory
        self.dialect = dialect
        old = os.getcwd()
        os.chdir(directory)
        zeod_forker.dialect = dialect
        try:
            self.addr, self.stop = zeod_forker.start_external(
                keep=True, zeod_args=["--max-frame-size", str(MAX_FRAME_SIZE)])
        finally:
            zeod_forker.dialect = "pickle"
            os.chdir(old)
        self.data_fs = os.path.join(directory, "Data.fs")
        self.log_path = self.stop.log_path
        self.commit("counter", 0)
        self.bystander = ClientStorage(self.addr, wait_timeout=30)

    def commit(self, key, value):
        db = ZEO.DB(self.addr, wait_timeout=30)
        try:
            with db.transaction() as conn:
                conn.root()[key] = value
        finally:
            db.close()

    def close(self):
        self.bystander.close()
        self.stop()


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    zeod_forker.current_test = "test_bad_input"
    made = {}

    def site(dialect):
        if dialect not in made:
            made[dialect] = Site(str(tmp_path_factory.mktemp(dialect)),
                                 dialect)
        return made[dialect]

    yield site
    for s in made.values():
        s.close()


def after_register(payload):
    def attack(site):
        raw = Raw(site.addr)
        raw.send_frame(payload)
        return raw
    return attack


def as_handshake(payload):
    def attack(site):
        raw = Raw(site.addr, protocol=False)
        raw.send_frame(payload)
        return raw
    return attack


def call_frame(name, args, msgid=2, async_=False):
    def attack(site):
        raw = Raw(site.addr)
        raw.send_frame(raw.encode(msgid, async_, name, args))
        return raw
    return attack


def before_register(site):
    raw = Raw(site.addr, register=False)
    raw.send_frame(raw.encode(2, False, "loadBefore", (z64, maxtid)))
    return raw


def second_register(site):
    raw = Raw(site.addr)
    raw.send_frame(raw.encode(2, False, "register", ("1", False)))
    return raw


def oversized_frame(site):
    raw = Raw(site.addr)
    raw.sock.sendall(struct.pack(">I", 64 * MAX_FRAME_SIZE))
    # The server must refuse on the length word, not buffer the payload:
    # send at most 4 limits' worth and expect the close.
    chunk = b"\0" * 65536
    try:
        for _ in range(4 * MAX_FRAME_SIZE // len(chunk)):
            raw.sock.sendall(chunk)
    except (BrokenPipeError, ConnectionResetError, socket.timeout):
        pass
    return raw


PWNED = "pwned-by-bad-input"

# (name, dialects, attack, what the connection must see)
CASES = [
    ("garbage_frame", ["pickle", "msgpack"],
     after_register(b"salty"), "closed"),
    ("garbage_handshake", ["pickle", "msgpack"],
     as_handshake(b"\x80\x03garbage"), "closed"),
    ("empty_frame", ["pickle", "msgpack"],
     after_register(b""), "closed"),
    ("truncated_pickle", ["pickle"],
     after_register(pickle.dumps((2, False, "loadBefore", (z64, maxtid)),
                                 3)[:-7]), "closed"),
    ("not_a_message_tuple", ["pickle"],
     after_register(pickle.dumps((2, "loadBefore"), 3)), "closed"),
    ("msgpack_not_a_message", ["msgpack"],
     after_register(b"\x92\x02\xa3abc"), "closed"),
    ("unknown_method", ["pickle", "msgpack"],
     call_frame("no_such_method", ()), "closed or error"),
    ("private_method", ["pickle", "msgpack"],
     call_frame("__init__", ()), "closed or error"),
    ("wrong_argument_types", ["pickle", "msgpack"],
     call_frame("loadBefore", (12345, "not a tid")), "closed or error"),
    ("wrong_argument_count", ["pickle", "msgpack"],
     call_frame("lastTransaction", (1, 2, 3)), "closed or error"),
    ("store_outside_transaction", ["pickle", "msgpack"],
     call_frame("storea", (z64, z64, b"data", 42), msgid=0, async_=True),
     "closed"),
    ("method_before_register", ["pickle", "msgpack"],
     before_register, "closed"),
    ("second_register", ["pickle", "msgpack"], second_register, "closed"),
    ("forbidden_global_os_system", ["pickle"],
     after_register(pickled_call(os.system, "touch " + PWNED)),
     "closed or error"),
    ("forbidden_global_builtins_exec", ["pickle"],
     after_register(pickled_call(exec, "open(%r, 'w').close()" % PWNED)),
     "closed or error"),
    ("frame_over_size_limit", ["pickle", "msgpack"],
     oversized_frame, "closed"),
]


@pytest.mark.parametrize(
    "dialect,attack,expect",
    [pytest.param(d, attack, expect, id="%s-%s" % (d, name))
     for name, dialects, attack, expect in CASES for d in dialects])
def test_bad_input(sites, dialect, attack, expect):
    site = sites(dialect)
    with open(site.data_fs, "rb") as f:
        before = f.read()
    log_offset = os.path.getsize(site.log_path)

    raw = attack(site)
    state, frames = raw.outcome()
    if expect == "closed":
        assert state == "closed", (state, frames)
    else:
        assert state in ("closed", "error"), (state, frames)
    assert not os.path.exists(os.path.join(site.directory, PWNED))

    deadline = time.monotonic() + 10
    while True:
        with open(site.log_path, "rb") as f:
            f.seek(log_offset)
            new = f.read().decode("utf-8", "replace")
        if LOG_LEVEL.search(new) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert LOG_LEVEL.search(new), "no warning/error logged:\n" + new

    with open(site.data_fs, "rb") as f:
        assert f.read() == before, "Data.fs changed"

    # The bystander still reads from the server (not from its cache) ...
    assert site.bystander.is_connected()
    last = site.bystander._call("lastTransaction")
    data, tid = site.bystander._call("loadBefore", z64, maxtid)[:2]
    assert tid == last and data
    # ... and a new client's commit reaches it.
    site.commit("counter", time.time())
    deadline = time.monotonic() + 30
    while site.bystander.lastTransaction() == last:
        assert time.monotonic() < deadline, "no invalidation after commit"
        time.sleep(0.05)
    transaction.abort()
