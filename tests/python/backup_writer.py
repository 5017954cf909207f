"""A ZEO client process that commits until told to stop (test_backup.py).

Usage: backup_writer.py HOST PORT NAME BLOB_CACHE STOP_FILE

Each writer owns one PersistentMapping under the root, so writers never
conflict after setup; every third transaction also adds a Blob of random
bytes (sometimes empty, sometimes larger than one ZEO blob chunk).  Prints
the number of transactions it committed when it stops.
"""
import os
import random
import sys
import time

import transaction
import ZEO
from persistent.mapping import PersistentMapping
from ZODB.blob import Blob
from ZODB.POSException import ConflictError


def main():
    host, port, name, blob_cache, stop_file = sys.argv[1:6]
    # The first commit of a new database creates its root: racing writers
    # conflict on it, and the losers simply open the database again.
    for _ in range(20):
        try:
            db = ZEO.DB((host, int(port)), blob_dir=blob_cache,
                        shared_blob_dir=False, wait_timeout=30)
            break
        except ConflictError:
            time.sleep(random.random() / 10)
    else:
        raise SystemExit(name + ": could not open the database")
    conn = db.open()
    for _ in range(100):
        try:
            root = conn.root()
            if name not in root:
                root[name] = PersistentMapping()
                transaction.get().note("setup " + name)
            transaction.commit()
            break
        except ConflictError:
            transaction.abort()
            time.sleep(random.random() / 10)
    else:
        raise SystemExit(name + ": could not create its container")
    mine = conn.root()[name]
    rnd = random.Random(name)
    n = 0
    while not os.path.exists(stop_file):
        mine["k%02d" % (n % 20)] = n
        if n % 3 == 0:
            size = rnd.choice([0, 10, 1000, 70000, 300000])
            blob = Blob()
            with blob.open("w") as f:
                f.write(os.urandom(size))
            mine["b%d" % n] = blob
        transaction.get().note("%s-%d" % (name, n))
        transaction.commit()
        n += 1
    conn.close()
    db.close()
    print(n)


if __name__ == "__main__":
    main()
