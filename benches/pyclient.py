"""One real Python ZEO client process for benches/compare.

    pyclient.py load   ADDRESS KEYS SECONDS   # ClientStorage.loadBefore, cache off
    pyclient.py commit ADDRESS OBJECTS SECONDS  # ZODB commits of OBJECTS objects

The process connects, prints "ready", waits for a line on stdin (so all
clients start together while the orchestrator samples the server's CPU),
runs for SECONDS, then prints one JSON line: operations, seconds, its own
CPU seconds, errors.
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


def run_commits(address, objects, seconds):
    import transaction
    import ZODB
    from persistent.mapping import PersistentMapping
    from ZODB.POSException import ConflictError

    storage = connect(address)
    for attempt in range(20):
        # Several clients may race to create the root of a new database.
        try:
            db = ZODB.DB(storage)
            break
        except ConflictError:
            time.sleep(0.05 * (attempt + 1))
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


def main():
    mode, address, count, seconds = sys.argv[1:5]
    run = {"load": run_loads, "commit": run_commits}[mode]
    ops, errors, elapsed, cpu = run(address, int(count), float(seconds))
    print(json.dumps({"ops": ops, "errors": errors, "seconds": elapsed, "cpu": cpu}),
          flush=True)


if __name__ == "__main__":
    main()
