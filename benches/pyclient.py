"""One real Python ZEO client process for benches/compare.

    pyclient.py load   ADDRESS KEYS SECONDS   # ClientStorage.loadBefore, cache off
    pyclient.py commit ADDRESS OBJECTS SECONDS  # ZODB commits of OBJECTS objects
    pyclient.py btree  ADDRESS KEYS SECONDS   # inserts into one shared OOBTree
    pyclient.py pack   ADDRESS 0 0            # one ClientStorage.pack() to now

The process connects, prints "ready", waits for a line on stdin (so all
clients start together while the orchestrator samples the server's CPU),
runs for SECONDS, then prints one JSON line: operations, seconds, its own
CPU seconds, errors (and, for btree, the ConflictErrors retried).
"""

import json
import random
import sys
import time

from ZEO.ClientStorage import ClientStorage
from ZODB.utils import p64, u64


def connect(address):
    host, port = address.rsplit(":", 1)
    return ClientStorage((host, int(port)), wait=True, wait_timeout=60)


def ready():
    print("ready", flush=True)
    sys.stdin.readline()


def run_loads(address, keys, seconds):
    storage = connect(address)
    # "Client cache off": every load goes to the server, as for a client
    # whose cache is too small for its working set.
    storage._cache.loadBefore = lambda oid, tid: None
    storage._cache.store = lambda *args: None
    before = p64(u64(storage.lastTransaction()) + 1)
    oids = [p64(i) for i in range(1, keys + 1)]
    choice = random.Random().choice
    ops = errors = 0
    ready()
    cpu0, t0 = time.process_time(), time.perf_counter()
    deadline = t0 + seconds
    while time.perf_counter() < deadline:
        for _ in range(100):
            try:
                if storage.loadBefore(choice(oids), before) is None:
                    errors += 1
                else:
                    ops += 1
            except Exception:
                errors += 1
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    storage.close()
    return ops, errors, elapsed, cpu


def open_db(address):
    import ZODB
    from ZODB.POSException import ConflictError

    storage = connect(address)
    for attempt in range(20):
        # Several clients may race to create the root of a new database.
        try:
            return ZODB.DB(storage)
        except ConflictError:
            time.sleep(0.05 * (attempt + 1))
    raise RuntimeError("could not open the database")


def run_commits(address, objects, seconds):
    import transaction
    from persistent.mapping import PersistentMapping

    db = open_db(address)
    conn = db.open()
    mine = [PersistentMapping() for _ in range(objects)]
    for obj in mine:
        conn.add(obj)
    transaction.commit()
    ops = errors = 0
    value = b"x" * 200
    ready()
    cpu0, t0 = time.process_time(), time.perf_counter()
    deadline = t0 + seconds
    n = 0
    while time.perf_counter() < deadline:
        n += 1
        try:
            for obj in mine:
                obj["v"] = value + str(n).encode()
            transaction.commit()
            ops += 1
        except Exception:
            transaction.abort()
            errors += 1
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    conn.close()
    db.close()
    return ops, errors, elapsed, cpu


def run_btree(address, keys, seconds):
    """Conflict-heavy commits: every client inserts into the same OOBTree,
    so concurrent commits touch the same buckets and the server (or, if it
    hands conflicts back, the client) must resolve them."""
    import transaction
    from BTrees.OOBTree import OOBTree
    from ZODB.POSException import ConflictError

    db = open_db(address)
    conn = db.open()
    for attempt in range(50):
        try:
            root = conn.root()
            if "tree" not in root:
                root["tree"] = OOBTree()
                transaction.commit()
            break
        except ConflictError:
            transaction.abort()
            time.sleep(0.02 * (attempt + 1))
    pick = random.Random().randrange
    ops = errors = conflicts = 0
    ready()
    cpu0, t0 = time.process_time(), time.perf_counter()
    deadline = t0 + seconds
    while time.perf_counter() < deadline:
        try:
            conn.root()["tree"][f"k{pick(keys):08d}"] = b"x" * 200
            transaction.commit()
            ops += 1
        except ConflictError:
            transaction.abort()
            conflicts += 1
        except Exception:
            transaction.abort()
            errors += 1
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    conn.close()
    db.close()
    return ops, errors, elapsed, cpu, conflicts


def run_pack(address, _count, _seconds):
    """One pack to the current time with the server's GC, as zeopack does;
    returns when the server reports the pack done."""
    storage = connect(address)
    ready()
    cpu0, t0 = time.process_time(), time.perf_counter()
    storage.pack(time.time(), wait=True)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    storage.close()
    return 1, 0, elapsed, cpu


def main():
    mode, address, count, seconds = sys.argv[1:5]
    run = {"load": run_loads, "commit": run_commits, "btree": run_btree,
           "pack": run_pack}[mode]
    ops, errors, elapsed, cpu, *conflicts = run(address, int(count), float(seconds))
    print(json.dumps({"ops": ops, "errors": errors, "seconds": elapsed, "cpu": cpu,
                      "conflicts": sum(conflicts)}), flush=True)


if __name__ == "__main__":
    main()
