"""Black-box fuzzing of zeod's file readers: Data.fs, Data.fs.index, zeo.conf.

Run with the pinned venv's python::

    python tests/torture/fuzz_files.py                  # CI: 300 of each
    python tests/torture/fuzz_files.py --iterations 5000 --seed 7

A base Data.fs is written by Python's ZODB (several transactions, BTrees,
an undo, an extension, a deleted object) and closed, so it has a Python
``.index``; a base zeo.conf uses every section zeod knows. Each iteration
mutates one of them (bit flips, truncation, a length or status field
overwritten at a real record boundary, chunks deleted or repeated, lines
dropped or repeated, values replaced) and runs:

* ``zeod check`` on a mutated Data.fs,
* ``zeod serve --test`` on it, with and without the mutated ``.index``
  (open-time recovery: may truncate a damaged tail, must never panic),
* ``zeod serve -C zeo.conf --test`` on a mutated configuration.

Every run must end with exit status 0, 1 or 2 (clap's usage error) within
30 s, and never print "panicked". zeod check's verdict is also compared
with Python's fstest: a file fstest rejects but zeod check passes is a
failure (zeod must be at least as strict); the reverse is counted (zeod
also checks the prev/back pointers fstest ignores).

Failing inputs are kept in the work directory. Exit status 0 only if none.
"""
import argparse
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from crash import default_zeod, log  # noqa: E402

TIMEOUT = 30
CONF = """\
<zeo>
  address 127.0.0.1:8100
  read-only false
  invalidation-queue-size 100
  invalidation-age 3600
  transaction-timeout 300
  pid-filename zeod.pid
  msgpack false
  client-conflict-resolution false
</zeo>
%define DATA data
<filestorage 1>
  path $DATA.fs
  create false
  quota 2MB
  pack-gc true
  pack-keep-old false
</filestorage>
<blobstorage blobs>
  blob-dir blobdir
  <filestorage>
    path blobs.fs
  </filestorage>
</blobstorage>
<filestorage ro>
  path ro.fs
  read-only true
</filestorage>
<eventlog>
  level INFO
  <logfile>
    path server.log
  </logfile>
</eventlog>
"""
CONF_WORDS = [
    "<zeo>", "</zeo>", "<filestorage 1>", "</filestorage>", "<blobstorage>",
    "</blobstorage>", "<eventlog>", "<logfile>", "</logfile>", "%define",
    "%include", "address", "path", "read-only", "true", "false", "yes", "on",
    "0", "-1", "99999999999999999999", "1e400", "nan", "inf", "2MB", "1GB",
    "$DATA", "${DATA}", "$", "%", "<", ">", "#", "\\", "'", '"', "\t",
    "\u00e9", "\U0001F600", "\x00", "[::1]:8100", "localhost:0", "8100",
    "quota", "transaction-timeout", "invalidation-queue-size", "msgpack",
    "<ssl>", "</ssl>", "certificate", "key", "<zeo", "</", "<>",
]


def make_base_datafs(path):
    """A small Data.fs written and closed by Python ZODB."""
    import transaction
    import ZODB
    from BTrees.OOBTree import OOBTree
    from persistent.mapping import PersistentMapping
    from ZODB.FileStorage import FileStorage

    storage = FileStorage(path)
    db = ZODB.DB(storage)
    tm = transaction.TransactionManager()
    conn = db.open(tm)
    root = conn.root()
    root["tree"] = OOBTree()
    root["map"] = PersistentMapping(a=1)
    tm.get().note("setup")
    tm.get().setExtendedInfo("who", "fuzz")
    tm.commit()
    for i in range(30):
        root["tree"]["k%d" % i] = "v" * (i % 7)
        root["map"]["n"] = i
        if i % 5 == 0:
            root["x%d" % i] = PersistentMapping(i=i)
        tm.get().note("t%d" % i)
        tm.commit()
    del root["x5"]
    tm.commit()
    undo_id = db.undoLog(0, 3)[1]["id"]
    db.undo(undo_id)
    tm.commit()
    db.close()


def txn_offsets(data):
    """Transaction and data record positions of a Data.fs image."""
    txns, records = [], []
    pos = 4
    while pos + 23 <= len(data):
        tlen, = struct.unpack(">Q", data[pos + 8:pos + 16])
        ul, dl, el = struct.unpack(">HHH", data[pos + 17:pos + 23])
        txns.append(pos)
        end = pos + tlen
        rec = pos + 23 + ul + dl + el
        while rec + 42 <= end:
            records.append(rec)
            plen, = struct.unpack(">Q", data[rec + 34:rec + 42])
            rec += 42 + (plen or 8)
        pos = end + 8
    return txns, records


def mutate_datafs(data, rnd, txns, records):
    data = bytearray(data)
    kind = rnd.choice(["flip", "flip", "truncate", "field", "field",
                       "status", "chunk"])
    if kind == "flip":
        for _ in range(rnd.randint(1, 4)):
            i = rnd.randrange(len(data))
            data[i] ^= 1 << rnd.randrange(8)
    elif kind == "truncate":
        del data[rnd.randrange(len(data)):]
    elif kind == "field":
        # Overwrite a length/pointer field of a real header.
        value = rnd.choice([0, 1, 7, 23, 41, 42, 1 << 31, (1 << 63) - 1,
                            (1 << 64) - 1, len(data), len(data) + 1,
                            rnd.randrange(len(data))])
        if rnd.random() < 0.5 and txns:
            pos = rnd.choice(txns) + rnd.choice([0, 8])        # tid, tlen
        elif records:
            pos = rnd.choice(records) + rnd.choice([0, 8, 16, 24, 34])
        else:
            pos = 4
        data[pos:pos + 8] = struct.pack(">Q", value)[:len(data[pos:pos + 8])]
        if rnd.random() < 0.3 and txns:  # or a user/desc/ext length
            pos = rnd.choice(txns) + 17 + 2 * rnd.randrange(3)
            data[pos:pos + 2] = struct.pack(">H", rnd.randrange(1 << 16))
    elif kind == "status":
        pos = rnd.choice(txns) + 16
        data[pos] = rnd.choice(b" pucx\x00\xff")
    else:
        a = rnd.randrange(len(data))
        b = min(len(data), a + rnd.randint(1, 200))
        if rnd.random() < 0.5:
            del data[a:b]
        else:
            data[a:a] = data[a:b]
    return bytes(data), kind


def mutate_bytes(data, rnd):
    data = bytearray(data)
    if rnd.random() < 0.5 and data:
        del data[rnd.randrange(len(data)):]
    for _ in range(rnd.randint(1, 6)):
        if data:
            data[rnd.randrange(len(data))] = rnd.randrange(256)
    return bytes(data)


def mutate_conf(text, rnd):
    lines = text.split("\n")
    for _ in range(rnd.randint(1, 4)):
        kind = rnd.randrange(5)
        i = rnd.randrange(len(lines))
        if kind == 0:
            del lines[i]
        elif kind == 1:
            lines.insert(i, lines[rnd.randrange(len(lines))])
        elif kind == 2:
            words = lines[i].split()
            if words:
                words[rnd.randrange(len(words))] = rnd.choice(CONF_WORDS)
                lines[i] = "  " + " ".join(words)
        elif kind == 3:
            lines.insert(i, " ".join(rnd.choice(CONF_WORDS)
                                     for _ in range(rnd.randint(1, 3))))
        else:
            chars = list(lines[i])
            if chars:
                chars[rnd.randrange(len(chars))] = chr(rnd.randrange(32, 127))
                lines[i] = "".join(chars)
    return "\n".join(lines)


def names_outside(conf):
    """Whether a value could name a file outside the case directory."""
    for line in conf.split("\n"):
        words = line.split()
        if words and not words[0].startswith("<"):
            if any("/" in w or w.startswith("~") for w in words[1:]):
                return True
    return False


def run_zeod(cmd, cwd):
    """(verdict, status, output): verdict is None when acceptable, else
    why not."""
    try:
        p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return "hang (no exit within %d s)" % TIMEOUT, None, ""
    out = p.stdout.decode("utf-8", "replace")
    if "panicked" in out:
        return "panic", p.returncode, out
    if p.returncode not in (0, 1, 2):
        return "exit status %d" % p.returncode, p.returncode, out
    return None, p.returncode, out


def fstest_clean(path):
    from ZODB.scripts import fstest
    try:
        fstest.check(path)
        return True
    except (fstest.FormatError, OSError, ValueError, OverflowError):
        # fstest itself trips over some damage (a huge length makes its
        # seek fail): damaged all the same.
        return False


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iterations", type=int, default=300,
                    help="mutants of each kind (Data.fs, zeo.conf)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--zeod", default=default_zeod())
    args = ap.parse_args(argv)
    args.zeod = os.path.abspath(args.zeod)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rnd = random.Random(seed)
    work = tempfile.mkdtemp(prefix="zeod-fuzz-")
    failures = []
    stats = {"datafs": 0, "index": 0, "conf": 0, "runs": 0,
             "zeod_stricter": 0, "both_damaged": 0, "both_clean": 0}
    started = time.monotonic()

    def keep(name, data, why, out):
        path = os.path.join(work, "failure-%d-%s" % (len(failures), name))
        with open(path, "wb") as f:
            f.write(data)
        failures.append("%s: %s (input kept in %s)\n%s"
                        % (name, why, path, out[-1500:]))
        log("FAIL " + failures[-1][:400])

    base = os.path.join(work, "base.fs")
    make_base_datafs(base)
    with open(base, "rb") as f:
        base_data = f.read()
    with open(base + ".index", "rb") as f:
        base_index = f.read()
    txns, records = txn_offsets(base_data)
    log("fuzz: seed %d, base Data.fs %d bytes, %d transactions, %d records"
        % (seed, len(base_data), len(txns), len(records)))

    case = os.path.join(work, "case")
    for n in range(args.iterations):
        # Data.fs: check, then open (recovery) without an index.
        shutil.rmtree(case, ignore_errors=True)
        os.mkdir(case)
        path = os.path.join(case, "Data.fs")
        data, kind = mutate_datafs(base_data, rnd, txns, records)
        with open(path, "wb") as f:
            f.write(data)
        verdict, status, out = run_zeod([args.zeod, "check", path], case)
        stats["runs"] += 1
        if verdict:
            keep("check-%s.fs" % kind, data, verdict, out)
            continue
        zeod_clean = status == 0
        py_clean = fstest_clean(path)
        if py_clean and zeod_clean:
            stats["both_clean"] += 1
        elif not py_clean and not zeod_clean:
            stats["both_damaged"] += 1
        elif zeod_clean:
            keep("lenient-%s.fs" % kind, data,
                 "fstest rejects the file, zeod check passes it", "")
        else:
            stats["zeod_stricter"] += 1
        verdict, _, out = run_zeod(
            [args.zeod, "serve", "-a", "127.0.0.1:0", "-f", path, "--test"],
            case)
        stats["runs"] += 1
        if verdict:
            keep("open-%s.fs" % kind, data, verdict, out)
        stats["datafs"] += 1

        # The untouched Data.fs with a mutated index.
        shutil.rmtree(case, ignore_errors=True)
        os.mkdir(case)
        path = os.path.join(case, "Data.fs")
        shutil.copy(base, path)
        index = mutate_bytes(base_index, rnd)
        with open(path + ".index", "wb") as f:
            f.write(index)
        verdict, _, out = run_zeod(
            [args.zeod, "serve", "-a", "127.0.0.1:0", "-f", path, "--test"],
            case)
        stats["runs"] += 1
        if verdict:
            keep("index.fs.index", index, verdict, out)
        elif not fstest_clean(path):
            keep("index-open-damaged.fs.index", index,
                 "opening with a mutated index damaged Data.fs", "")
        stats["index"] += 1

        # zeo.conf, in an empty directory (relative paths only).
        shutil.rmtree(case, ignore_errors=True)
        os.mkdir(case)
        conf = mutate_conf(CONF, rnd)
        if names_outside(conf):
            continue
        conf_path = os.path.join(case, "zeo.conf")
        with open(conf_path, "w", encoding="utf-8", errors="replace") as f:
            f.write(conf)
        verdict, _, out = run_zeod(
            [args.zeod, "serve", "-C", "zeo.conf", "--test"], case)
        stats["runs"] += 1
        if verdict:
            keep("zeo.conf", conf.encode("utf-8", "replace"), verdict, out)
        stats["conf"] += 1
        if (n + 1) % 100 == 0:
            log("%d iterations, %d zeod runs, %d failures"
                % (n + 1, stats["runs"], len(failures)))

    elapsed = time.monotonic() - started
    print("fuzz: %d Data.fs, %d index and %d zeo.conf mutants, %d zeod runs "
          "in %.0f s; check vs fstest: %d both clean, %d both damaged, %d "
          "only zeod damaged; %d failures; seed %d"
          % (stats["datafs"], stats["index"], stats["conf"], stats["runs"],
             elapsed, stats["both_clean"], stats["both_damaged"],
             stats["zeod_stricter"], len(failures), seed), flush=True)
    if failures:
        print("FAILED; inputs kept in %s" % work)
        return 1
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
