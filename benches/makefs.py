"""Writes the large Data.fs of benches/compare's start-up, memory and pack
phases with Python's own FileStorage (so neither server wrote it):

    makefs.py PATH OBJECTS

- OBJECTS `PersistentMapping`s of ~200 bytes, reachable from the root
  through one `IOBTree` (oids 1..=OBJECTS are all live objects: the tree,
  its buckets and the mappings), committed 1000 per transaction;
- then a fifth of them rewritten once (old revisions: what a pack drops);
- then OBJECTS/10 more mappings in a second tree that is unlinked from
  the root again (garbage: what a pack's GC removes).

Python closes the storage and writes `PATH.index`. Prints one JSON line.
"""

import json
import random
import sys
import time

import transaction
import ZODB
from BTrees.IOBTree import IOBTree
from persistent.mapping import PersistentMapping
from ZODB.FileStorage import FileStorage

BATCH = 1000


def fill(conn, tree, count, value):
    for start in range(0, count, BATCH):
        for i in range(start, min(start + BATCH, count)):
            tree[i] = PersistentMapping(v=value)
        transaction.commit()
        conn.cacheMinimize()


def main():
    path, objects = sys.argv[1], int(sys.argv[2])
    t0 = time.perf_counter()
    db = ZODB.DB(FileStorage(path), cache_size=5000)
    conn = db.open()
    root = conn.root()
    root["live"] = IOBTree()
    transaction.commit()
    fill(conn, root["live"], objects, b"x" * 200)

    rng = random.Random(13)
    changed = sorted(rng.sample(range(objects), objects // 5))
    tree = root["live"]
    for start in range(0, len(changed), BATCH):
        for i in changed[start:start + BATCH]:
            tree[i]["v"] = b"y" * 200
        transaction.commit()
        conn.cacheMinimize()

    root["junk"] = IOBTree()
    transaction.commit()
    fill(conn, root["junk"], objects // 10, b"z" * 200)
    del root["junk"]
    transaction.commit()
    conn.close()
    db.close()
    print(json.dumps({"objects": objects, "rewritten": len(changed),
                      "garbage": objects // 10, "seconds": time.perf_counter() - t0}))


if __name__ == "__main__":
    main()
