"""Two real ZODB clients (ZEO ClientStorage) conflict on a BTrees.Length, an
OOBTree holding one inline bucket and a bucket of a bigger OOBTree, through
the server at 127.0.0.1:PORT. The clients' own conflict resolution is
disabled, so both commits can only succeed if the server resolves; the
loser must then see the merged state (the server returned the oids from
vote, the client invalidated them). Prints "ok" on success.
"""

import sys
import time

import transaction
import ZEO
from BTrees.Length import Length
from BTrees.OOBTree import OOBTree
from ZEO.ClientStorage import ClientStorage
from ZODB.POSException import ConflictError


def no_client_resolution(self, oid, committed, read, data, *args):
    raise ConflictError(oid=oid, serials=(committed, read), data=data)


ClientStorage.tryToResolveConflict = no_client_resolution


def caught_up(seen_by, committer):
    """ZEO clients learn of others' commits asynchronously (their sync()
    is a no-op): wait until `seen_by` has the invalidation of the last
    commit of `committer`, as a user's next request eventually would."""
    tid = committer.lastTransaction()
    deadline = time.monotonic() + 10
    while seen_by.lastTransaction() < tid:
        if time.monotonic() > deadline:
            raise AssertionError('no invalidation for %r within 10 s' % tid)
        time.sleep(0.01)


def main(port):
    addr = ('127.0.0.1', port)
    db1, db2 = ZEO.DB(addr, wait_timeout=10), ZEO.DB(addr, wait_timeout=10)
    tm1, tm2 = transaction.TransactionManager(), transaction.TransactionManager()
    c1, c2 = db1.open(tm1), db2.open(tm2)
    r1 = c1.root()
    r1['len'] = Length(5)
    r1['small'] = OOBTree({'m': 0})
    r1['big'] = big = OOBTree()
    for i in range(0, 400, 2):
        big['k%04d' % i] = i
    tm1.commit()
    caught_up(db2, db1)

    tm2.begin()
    r2 = c2.root()
    for name in ('len', 'small', 'big'):
        r2[name]._p_activate()
    bucket2 = r2['big']._firstbucket
    bucket2._p_activate()

    r1['len'].change(3)
    r1['small']['a'] = 1
    r1['big']['k0005'] = 'one'
    tm1.commit()

    r2['len'].change(1)
    r2['small']['z'] = 2
    r2['big']['k0007'] = 'two'
    tm2.commit()

    tm2.begin()
    r2 = c2.root()
    assert r2['len']() == 9, r2['len']()
    assert dict(r2['small']) == {'m': 0, 'a': 1, 'z': 2}, dict(r2['small'])
    big2 = r2['big']
    assert big2['k0005'] == 'one' and big2['k0007'] == 'two'
    assert len(big2) == 202, len(big2)
    caught_up(db1, db2)
    tm1.begin()
    assert c1.root()['len']() == 9

    # A real conflict (both change the same key) stays a ConflictError.
    r1 = c1.root()
    r1['small']['m'] = 10
    tm1.commit()
    r2['small']['m'] = 20
    try:
        tm2.commit()
    except ConflictError:
        tm2.abort()
    else:
        raise AssertionError('conflicting changes were merged')
    db1.close()
    db2.close()
    print('ok')


if __name__ == '__main__':
    main(int(sys.argv[1]))
