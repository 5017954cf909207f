"""`zeod backup` / `zeod restore` against the real repozo and fstest.

A live `zeod serve` with a blob directory takes commits from four Python ZEO
client processes while backups are taken.  Every restored Data.fs must be
accepted by Python's fstest, be byte-for-byte the prefix of the live file
that ends at the backup's transaction (so it holds every transaction up to
that tid and none after), be the same whether repozo or zeod restored it,
and have every blob it references present and identical to the live one.

Run: `tests/python/run` (with the pytest stage), or by hand with the venv
python: `$(bash tests/python/venv.sh) -m pytest tests/python/test_backup.py`
(ZEOD_BIN names the zeod binary; default target/release/zeod, else debug).
"""
import os
import shutil
import subprocess
import sys
import time

import pytest
from ZODB.blob import is_blob_record
from ZODB.FileStorage import FileStorage
from ZODB.utils import tid_repr

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def zeod_bin():
    env = os.environ.get("ZEOD_BIN")
    if env:
        return env
    for profile in ("release", "debug"):
        p = os.path.join(ROOT, "target", profile, "zeod")
        if os.path.exists(p):
            return p
    raise RuntimeError("no zeod binary; run cargo build")


def run(*args, ok=True):
    p = subprocess.run(args, capture_output=True, text=True, timeout=300)
    print("$", " ".join(map(str, args)), "->", p.returncode)
    print(p.stdout[-3000:], p.stderr[-3000:])
    if ok:
        assert p.returncode == 0, p.stderr
    return p


def zeod(*args, ok=True):
    return run(zeod_bin(), *args, ok=ok)


def repozo(*args, ok=True):
    return run(sys.executable, "-m", "ZODB.scripts.repozo", *args, ok=ok)


def fstest(path):
    run(sys.executable, "-m", "ZODB.scripts.fstest", path)


class Site:
    """`zeod serve` over a Data.fs with blobs, and four writer processes."""

    def __init__(self, tmp, env=None):
        self.tmp = tmp
        self.data = os.path.join(tmp, "live", "Data.fs")
        self.blobs = os.path.join(tmp, "live", "blobs")
        os.makedirs(self.blobs)
        addr_file = os.path.join(tmp, "address")
        self.log = open(os.path.join(tmp, "server.log"), "w")
        self.server = subprocess.Popen(
            [zeod_bin(), "serve", "-a", "127.0.0.1:0", "--address-file",
             addr_file, "-f", self.data, "-b", self.blobs],
            stdout=self.log, stderr=subprocess.STDOUT,
            env=dict(os.environ, **(env or {})))
        deadline = time.time() + 30
        while not os.path.exists(addr_file) or not open(addr_file).read():
            assert self.server.poll() is None, "zeod serve exited"
            assert time.time() < deadline, "zeod serve did not start"
            time.sleep(0.05)
        self.host, self.port = open(addr_file).read().strip().rsplit(":", 1)
        self.writers = []
        self.stop_file = os.path.join(tmp, "stop-writers")

    def start_writers(self, n=4):
        if os.path.exists(self.stop_file):
            os.unlink(self.stop_file)
        for i in range(n):
            cache = os.path.join(self.tmp, "cache-w%d-%d" % (i, len(self.writers)))
            self.writers.append(subprocess.Popen(
                [sys.executable, os.path.join(HERE, "backup_writer.py"),
                 self.host, self.port, "w%d" % i, cache, self.stop_file],
                stdout=subprocess.PIPE, text=True))

    def stop_writers(self):
        open(self.stop_file, "w").close()
        counts = []
        for w in self.writers:
            out, _ = w.communicate(timeout=60)
            assert w.returncode == 0, "a writer failed"
            counts.append(int(out.strip()))
        self.writers = []
        return counts

    def wait_for_growth(self, nbytes):
        start = os.path.getsize(self.data)
        deadline = time.time() + 60
        while os.path.getsize(self.data) < start + nbytes:
            assert time.time() < deadline, "writers make no progress"
            for w in self.writers:
                assert w.poll() is None, "a writer died"
            time.sleep(0.05)

    def close(self):
        if self.writers:
            self.stop_writers()
        self.server.terminate()
        self.server.wait(timeout=30)
        self.log.close()


@pytest.fixture
def site(tmp_path):
    s = Site(str(tmp_path))
    yield s
    s.close()


def transactions(path):
    """[(tid, end position)] of a Data.fs, via ZODB's own iterator."""
    fs = FileStorage(path, read_only=True)
    try:
        return [t.tid for t in fs.iterator()]
    finally:
        fs.close()


def manifest_tid(repo, stem):
    with open(os.path.join(repo, "blobs", stem + ".blobs")) as f:
        head = f.readline().split()
    return bytes.fromhex(head[3])


def check_restored(restored, blob_dir, live_data, live_blobs, tid):
    """The restored file is the live file's prefix ending at `tid`, passes
    fstest, and every blob it references is there and identical."""
    fstest(restored)
    with open(restored, "rb") as f:
        got = f.read()
    with open(live_data, "rb") as f:
        live = f.read()
    assert live[:len(got)] == got, "restored file is not a prefix of the live file"
    tids = transactions(restored)
    assert tids and tids[-1] == tid, "restored file does not end at the backup's tid"
    live_tids = transactions(live_data)
    assert tids == [t for t in live_tids if t <= tid], "a transaction is missing or extra"
    fs = FileStorage(restored, read_only=True, blob_dir=blob_dir)
    blobs = 0
    try:
        for txn in fs.iterator():
            for rec in txn:
                if not is_blob_record(rec.data):
                    continue
                path = fs.loadBlob(rec.oid, rec.tid)
                rel = os.path.relpath(path, blob_dir)
                with open(path, "rb") as a, open(os.path.join(live_blobs, rel), "rb") as b:
                    assert a.read() == b.read(), "blob %s differs" % rel
                blobs += 1
    finally:
        fs.close()
    return len(tids), blobs


def stems(repo):
    return sorted(n.split(".")[0] for n in os.listdir(repo)
                  if n.endswith((".fs", ".fsz", ".deltafs", ".deltafsz")))


def next_second():
    # Backup files are named to the second, as repozo names them.
    time.sleep(1.1)


def test_live_backup_restored_by_repozo_and_zeod(site, tmp_path):
    repo = str(tmp_path / "repo")
    os.makedirs(repo)
    site.start_writers()
    site.wait_for_growth(200_000)
    zeod("backup", "-B", "-r", repo, "-f", site.data, "--blob-dir", site.blobs)
    # Commits keep coming after the backup: none of them may be in it.
    site.wait_for_growth(100_000)
    site.stop_writers()
    [stem] = stems(repo)
    tid = manifest_tid(repo, stem)

    out = tmp_path / "zeod-restore"
    zeod("restore", "-r", repo, "-o", str(out / "Data.fs"), "--blob-dir", str(out / "blobs"))
    os.makedirs(tmp_path / "repozo-restore")
    py_out = str(tmp_path / "repozo-restore" / "Data.fs")
    repozo("-R", "-r", repo, "-o", py_out)
    with open(py_out, "rb") as a, open(out / "Data.fs", "rb") as b:
        assert a.read() == b.read(), "repozo and zeod restored different files"
    assert os.path.exists(py_out + ".index")

    ntx, nblobs = check_restored(str(out / "Data.fs"), str(out / "blobs"), site.data, site.blobs, tid)
    print("restored %d transactions, %d blob revisions, up to tid %s" % (ntx, nblobs, tid_repr(tid)))
    assert nblobs > 0
    assert len(transactions(site.data)) > ntx, "no commits after the backup: the test proves nothing"
    # repozo's file with the blobs zeod restored: the same check.
    check_restored(py_out, str(out / "blobs"), site.data, site.blobs, tid)
    zeod("backup", "-V", "-r", repo)
    repozo("-V", "-r", repo)


def test_incrementals_restore_to_each_point_in_time(site, tmp_path):
    repo = str(tmp_path / "repo")
    os.makedirs(repo)
    site.start_writers()
    points = []
    for i, gzip in enumerate([False, False, True, False]):
        site.wait_for_growth(100_000)
        extra = ["-z"] if gzip else []
        if i == 3:
            extra.append("-Q")
        zeod("backup", "-B", "-r", repo, "-f", site.data, "--blob-dir", site.blobs, *extra)
        points.append(stems(repo)[-1])
        next_second()
    site.stop_writers()
    names = sorted(os.listdir(repo))
    assert sum(n.endswith(".fs") for n in names) == 1
    assert sum(n.endswith((".deltafs", ".deltafsz")) for n in names) == 3
    # Incremental blob backups hold only the new revisions.
    per_backup = [len(open(os.path.join(repo, "blobs", p + ".blobs")).readlines()) - 1 for p in points]
    assert all(n > 0 for n in per_backup)

    previous = 0
    for p in points:
        tid = manifest_tid(repo, p)
        out = tmp_path / ("at-" + p)
        zeod("restore", "-r", repo, "-D", p, "-o", str(out / "Data.fs"), "--blob-dir", str(out / "blobs"))
        ntx, nblobs = check_restored(str(out / "Data.fs"), str(out / "blobs"), site.data, site.blobs, tid)
        assert ntx > previous
        previous = ntx
        py_out = str(tmp_path / ("repozo-at-" + p + ".fs"))
        repozo("-R", "-r", repo, "-D", p, "-o", py_out)
        with open(py_out, "rb") as a, open(out / "Data.fs", "rb") as b:
            assert a.read() == b.read()
        print("%s: %d transactions, %d blob revisions" % (p, ntx, nblobs))
    zeod("backup", "-V", "-r", repo)
    repozo("-V", "-r", repo)

    # A forced full backup links the blob files it already has.
    p = zeod("backup", "-B", "-F", "-k", "-r", repo, "-f", site.data, "--blob-dir", site.blobs)
    assert "blobs_linked=0" not in p.stderr
    assert len(stems(repo)) == 1
    zeod("backup", "-V", "-r", repo)


def test_repozo_backups_restored_by_zeod(site, tmp_path):
    repo = str(tmp_path / "repo")
    os.makedirs(repo)
    site.start_writers()
    site.wait_for_growth(100_000)
    site.stop_writers()
    repozo("-B", "-r", repo, "-f", site.data)
    next_second()
    site.start_writers()
    site.wait_for_growth(100_000)
    site.stop_writers()
    repozo("-B", "-z", "-r", repo, "-f", site.data)
    next_second()
    site.start_writers()
    site.wait_for_growth(100_000)
    site.stop_writers()
    # zeod continues repozo's chain with an incremental.
    zeod("backup", "-B", "-r", repo, "-f", site.data)
    assert sum(n.endswith(".fs") for n in os.listdir(repo)) == 1
    out = str(tmp_path / "Data.fs")
    zeod("restore", "-r", repo, "-o", out)
    fstest(out)
    with open(out, "rb") as a, open(site.data, "rb") as b:
        assert a.read() == b.read()
    py_out = str(tmp_path / "repozo.fs")
    repozo("-R", "-r", repo, "-o", py_out)
    with open(out, "rb") as a, open(py_out, "rb") as b:
        assert a.read() == b.read()
    zeod("backup", "-V", "-r", repo)


def damage_cases(repo):
    full = [n for n in os.listdir(repo) if n.endswith(".fs")][0]
    delta = [n for n in os.listdir(repo) if n.endswith(".deltafsz")][0]
    blob_dir = os.path.join(repo, "blobs", full.split(".")[0])
    some_blob = None
    for d, _, files in os.walk(blob_dir):
        for f in files:
            if f.endswith(".blob") and os.path.getsize(os.path.join(d, f)) > 0:
                some_blob = os.path.join(d, f)
    assert some_blob

    def truncate(path):
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) - 10)

    def flip(path, at=None):
        with open(path, "r+b") as f:
            size = os.path.getsize(path)
            at = size // 2 if at is None else at
            f.seek(at)
            b = f.read(1)
            f.seek(at)
            f.write(bytes([b[0] ^ 0x01]))

    return [
        ("truncated full backup", os.path.join(repo, full), truncate, "bytes, should be"),
        ("flipped byte in full backup", os.path.join(repo, full), flip, "checksum"),
        ("missing incremental", os.path.join(repo, delta), os.unlink, "is missing"),
        ("truncated gzip incremental", os.path.join(repo, delta), truncate, os.path.join(repo, delta)),
        ("flipped byte in a blob", some_blob, lambda p: flip(p, 0), "checksum"),
        ("missing blob", some_blob, os.unlink, "is missing"),
    ]


def test_verify_detects_damage(site, tmp_path):
    pristine = str(tmp_path / "pristine")
    os.makedirs(pristine)
    site.start_writers()
    site.wait_for_growth(100_000)
    zeod("backup", "-B", "-r", pristine, "-f", site.data, "--blob-dir", site.blobs)
    next_second()
    site.wait_for_growth(100_000)
    zeod("backup", "-B", "-z", "-r", pristine, "-f", site.data, "--blob-dir", site.blobs)
    site.stop_writers()
    zeod("backup", "-V", "-r", pristine)
    for i, (what, _, damage, message) in enumerate(damage_cases(pristine)):
        repo = str(tmp_path / ("damaged-%d" % i))
        shutil.copytree(pristine, repo)
        # The same case against the copy.
        _, path, damage, message = damage_cases(repo)[i]
        damage(path)
        p = zeod("backup", "-V", "-r", repo, ok=False)
        print(what, "->", p.stderr.strip().splitlines()[-1])
        assert p.returncode != 0, what
        assert "verification failed" in p.stderr and message in p.stderr, what
        if "blob" not in what:
            # repozo agrees that the data files are damaged.
            assert repozo("-V", "-r", repo, ok=False).returncode != 0, what
            # And a restore refuses to produce a file from them.
            out = str(tmp_path / ("out-%d.fs" % i))
            assert zeod("restore", "-r", repo, "-o", out, ok=False).returncode != 0
            assert not os.path.exists(out)


def small_data_fs(path):
    import transaction
    from ZODB import DB
    db = DB(FileStorage(path))
    try:
        with db.transaction() as conn:
            conn.root()["x"] = 1
    finally:
        db.close()
    transaction.abort()


def test_a_fresh_backup_is_in_repozos_default_chain(tmp_path):
    """`repozo -R` without -D restores "as of now", its now truncated to
    the second (time.gmtime()).  A backup named by rounding its time to
    the nearest second instead is named up to half a second in the future,
    and a recover started in that half second found no files at all.

    Each backup here starts just past a half second and repozo's own
    find_files() runs the moment it returns, in the same second: with the
    rounded name every round fails."""
    from ZODB.scripts import repozo as rz

    data = str(tmp_path / "Data.fs")
    small_data_fs(data)
    for i, frac in enumerate([0.5, 0.6, 0.7]):
        repo = tmp_path / ("repo-%d" % i)
        os.makedirs(repo)
        deadline = time.time() + 5
        while not frac <= time.time() % 1 < frac + 0.05:
            assert time.time() < deadline
            time.sleep(0.005)
        zeod("backup", "-B", "-r", str(repo), "-f", data)
        found = rz.find_files(rz.parseargs(["-R", "-r", str(repo)]))
        print("backup started at +%.2fs: %s; repozo's chain now: %s"
              % (frac, stems(str(repo)), [os.path.basename(f) for f in found]))
        assert found, "repozo does not see a backup that just finished"
        out = str(tmp_path / ("restored-%d.fs" % i))
        repozo("-R", "-r", str(repo), "-o", out)
        with open(out, "rb") as a, open(data, "rb") as b:
            assert a.read() == b.read()


def scheduled_runs(log_path):
    with open(log_path) as f:
        return [l for l in f if "scheduled backup finished" in l]


def test_scheduled_backups_with_retention(tmp_path):
    """`backup-schedule` every 2 s while four clients commit, chains of 2
    backups (`backup-full-every 2`), `backup-keep 2`: after the third full
    backup the oldest chain is gone, blobs included, and what is left
    restores with repozo and zeod and verifies with both."""
    repo = str(tmp_path / "repo")
    os.makedirs(repo)
    s = Site(str(tmp_path), env={
        "ZEOD_STORAGE_1_BACKUP_SCHEDULE": "2s",
        "ZEOD_STORAGE_1_BACKUP_REPOSITORY": repo,
        "ZEOD_STORAGE_1_BACKUP_KEEP": "2",
        "ZEOD_STORAGE_1_BACKUP_FULL_EVERY": "2",
    })
    log_path = os.path.join(str(tmp_path), "server.log")
    try:
        s.start_writers()
        deadline = time.time() + 120
        while sum("full=true" in l for l in scheduled_runs(log_path)) < 3:
            assert time.time() < deadline, open(log_path).read()[-3000:]
            assert s.server.poll() is None
            time.sleep(0.2)
        s.stop_writers()
        # No more scheduled runs while the repository is checked.
        s.server.terminate()
        s.server.wait(timeout=60)
        runs = scheduled_runs(log_path)
        for line in runs:
            print(line.strip())
        assert any("removed_old=2" in l for l in runs), "retention removed no chain"
        names = stems(repo)
        fulls = [n for n in os.listdir(repo) if n.endswith(".fs")]
        assert len(fulls) == 2, sorted(os.listdir(repo))
        # Every data file left belongs to a kept chain, and so does every
        # blob directory and manifest.
        assert names[0] + ".fs" in fulls
        blob_stems = sorted(n.split(".")[0] for n in os.listdir(os.path.join(repo, "blobs")))
        assert set(blob_stems) <= set(names), (blob_stems, names)
        zeod("backup", "-V", "-r", repo)
        repozo("-V", "-r", repo)
        [last] = names[-1:]
        tid = manifest_tid(repo, last)
        out = tmp_path / "restored"
        zeod("restore", "-r", repo, "-o", str(out / "Data.fs"), "--blob-dir", str(out / "blobs"))
        ntx, nblobs = check_restored(str(out / "Data.fs"), str(out / "blobs"), s.data, s.blobs, tid)
        py_out = str(tmp_path / "repozo.fs")
        repozo("-R", "-r", repo, "-o", py_out)
        with open(py_out, "rb") as a, open(out / "Data.fs", "rb") as b:
            assert a.read() == b.read()
        print("scheduled: %d backups run, %s kept; restored %d transactions, %d blobs"
              % (len(runs), names, ntx, nblobs))
    finally:
        s.close()
