"""Conflict cases made by real ZODB + BTrees, for tests/conflict_python.rs.

`generate N SEED`: for every BTrees family and kind (Bucket, Set, BTree and
TreeSet with one inline bucket, buckets inside multi-bucket trees) and
BTrees.Length, makes N (old, committed, new) triples the way two ZODB
connections would: both start from the committed `old`, one commits its
changes (`committed`), the other's changed object is serialized by ZODB's
ObjectWriter (`new`, exactly what it would store). A quarter of the triples
are rewritten as Python 2 ZODB wrote records (protocol 1 or 2, py2 `str`).
Python's answer comes from ZODB's own `tryToResolveConflict` (resolved
bytes or ConflictError), and the BTreesConflictError reason from
`_p_resolveConflict`. One JSON object per line on stdout.

`compare`: reads JSON lines `{"a": hex, "b": hex}` (two resolved records)
and prints one line per pair: `same` when both unpickle (meta, state) to
equal values, persistent references compared by their pickled id.
"""

import io
import json
import logging
import random
import struct
import sys

import BTrees
import transaction
from BTrees.Length import Length
from persistent.mapping import PersistentMapping
from ZODB import DB
from ZODB._compat import PersistentUnpickler
from ZODB.ConflictResolution import PersistentReferenceFactory
from ZODB.ConflictResolution import find_global
from ZODB.ConflictResolution import state as load_state
from ZODB.ConflictResolution import tryToResolveConflict
from ZODB.MappingStorage import MappingStorage
from ZODB.POSException import ConflictError
from ZODB.serialize import ObjectWriter

FAMILIES = ['OO', 'OI', 'OU', 'OL', 'OQ', 'IO', 'II', 'IU', 'IF', 'UO', 'UI',
            'UU', 'UF', 'LO', 'LL', 'LQ', 'LF', 'QO', 'QL', 'QQ', 'QF']


class Records:
    """What tryToResolveConflict needs from a storage."""

    def __init__(self, old, committed):
        self.data = {b'old': old, b'com': committed}

    def loadSerial(self, oid, serial):
        return self.data[serial]

    def _crs_untransform_record_data(self, d):
        return d

    _crs_transform_record_data = _crs_untransform_record_data


def python_answer(oid, old, committed, new):
    """(resolved bytes or None, reason code or exception name or None)."""
    try:
        resolved = tryToResolveConflict(
            Records(old, committed), oid, b'com', b'old', new)
    except ConflictError:
        resolved = None
    reason = None
    if resolved is None:
        try:
            reason = why_unresolved(oid, old, committed, new)
        except Exception as e:  # noqa: B902 e.g. a py2 str that isn't ASCII
            reason = type(e).__name__
    return resolved, reason


def why_unresolved(oid, old, committed, new):
    """The same steps as tryToResolveConflict, with the class's own
    exception visible: the BTreesConflictError reason, or its type name."""
    prf = PersistentReferenceFactory()
    up = PersistentUnpickler(find_global, prf.persistent_load,
                             io.BytesIO(new))
    meta = up.load()
    klass = meta[0] if isinstance(meta, tuple) else meta
    if isinstance(klass, tuple):
        klass = find_global(*klass)
    newstate = up.load()
    storage = Records(old, committed)
    try:
        klass.__new__(klass)._p_resolveConflict(
            load_state(storage, oid, b'old', prf, old),
            load_state(storage, oid, b'com', prf, committed),
            newstate)
        return 'resolved-directly'
    except BTrees.Interfaces.BTreesConflictError as e:
        return e.reason
    except Exception as e:  # noqa: B902 any failure is an answer
        return type(e).__name__


class Py2Record:
    """Re-writes a protocol-3 record the way Python 2 ZODB wrote it:
    protocol 1 or 2, `str` as SHORT_BINSTRING/BINSTRING (bytes too: py2 had
    no other), `(oid, class)` references as MARK...TUPLE + BINPERSID."""

    def __init__(self, protocol):
        self.protocol = protocol
        self.out = io.BytesIO()

    def convert(self, data):
        refs = []
        up = PersistentUnpickler(find_global, lambda pid: ('PID', pid),
                                 io.BytesIO(data))
        meta, state = up.load(), up.load()
        for v in (meta, state):
            if self.protocol >= 2:
                self.w(b'\x80' + bytes([self.protocol]))
            self.save(v)
            self.w(b'.')
        return self.out.getvalue()

    def w(self, b):
        self.out.write(b)

    def text(self, b):
        self.w(b'U' + bytes([len(b)]) + b if len(b) < 256
               else b'T' + len(b).to_bytes(4, 'little') + b)

    def save(self, v):
        if isinstance(v, tuple) and len(v) == 2 and v[0] == 'PID':
            self.save(v[1])
            self.w(b'Q')
        elif v is None:
            self.w(b'N')
        elif v is True or v is False:
            self.w((b'\x88' if v else b'\x89') if self.protocol >= 2
                   else (b'I01\n' if v else b'I00\n'))
        elif isinstance(v, int):
            if 0 <= v < 256:
                self.w(b'K' + bytes([v]))
            elif -2**31 <= v < 2**31:
                self.w(b'J' + v.to_bytes(4, 'little', signed=True))
            elif self.protocol >= 2:
                n = (v.bit_length() + 8) // 8
                self.w(b'\x8a' + bytes([n]) + v.to_bytes(n, 'little', signed=True))
            else:
                self.w(b'L%dL\n' % v)
        elif isinstance(v, float):
            self.w(b'G' + struct.pack('>d', v))
        elif isinstance(v, bytes):
            self.text(v)
        elif isinstance(v, str):
            if v.isascii():
                self.text(v.encode('ascii'))
            else:
                b = v.encode('utf-8')
                self.w(b'X' + len(b).to_bytes(4, 'little') + b)
        elif isinstance(v, type):
            self.w(b'c%s\n%s\n' % (v.__module__.encode(), v.__name__.encode()))
        elif isinstance(v, tuple):
            if self.protocol >= 2 and 1 <= len(v) <= 3:
                for x in v:
                    self.save(x)
                self.w(bytes([0x84 + len(v)]))
            else:
                self.w(b'(')
                for x in v:
                    self.save(x)
                self.w(b't')
        elif isinstance(v, list):
            self.w(b'(')
            for x in v:
                self.save(x)
            self.w(b'l')
        elif isinstance(v, dict):
            self.w(b'(')
            for k, x in v.items():
                self.save(k)
                self.save(x)
            self.w(b'd')
        else:
            raise TypeError(type(v))


class Keys:
    """Random keys and values of one family; small ranges make collisions."""

    def __init__(self, rnd, family):
        self.rnd = rnd
        self.key_slot, self.value_slot = family[0], family[1]
        if self.key_slot == 'O':
            self.okind = rnd.choice(['str', 'bytes', 'int', 'tuple', 'num'])

    def int_of(self, slot, n):
        big = {'I': 0, 'L': 2**40, 'U': 2**31, 'Q': 2**63}[slot]
        return big + n if self.rnd.random() < 0.5 or slot == 'I' else n

    def key(self):
        n = self.rnd.randrange(12)
        if self.key_slot != 'O':
            v = self.int_of(self.key_slot, n)
            return -v if self.key_slot in 'IL' and self.rnd.random() < 0.2 else v
        k = self.okind
        if k == 'str':
            return 'k%02d' % n if n % 3 else 'é%d' % n
        if k == 'bytes':
            return b'b\x00\xff'[: 1 + n % 3] + bytes([n])
        if k == 'int':
            return n - 4 if n % 4 else 2**70 + n
        if k == 'tuple':
            return ('t', n % 4, n)
        return n / 2 if n % 2 else n // 2

    def value(self, refs):
        n = self.rnd.randrange(5)
        s = self.value_slot
        if s == 'F':
            return self.rnd.choice([0.5, 1.25, n * 0.1, float(n)])
        if s != 'O':
            return self.int_of(s, n)
        return self.rnd.choice([
            n, 'v%d' % n, None, (n, 'x'), b'\x00' * n, 1.5 * n,
            refs[n % len(refs)], [n], {'n': n},
        ])


def split_key(family, n):
    return 'k%05d' % n if family[0] == 'O' else n


def mutate(rnd, obj, keys, refs, mapping, ops):
    for _ in range(ops):
        present = list(obj.keys())
        r = rnd.random()
        if present and r < 0.35:
            if mapping:
                del obj[rnd.choice(present)]
            else:
                obj.remove(rnd.choice(present))
        elif present and mapping and r < 0.6:
            obj[rnd.choice(present)] = keys.value(refs)
        elif mapping:
            obj[keys.key()] = keys.value(refs)
        else:
            obj.add(keys.key())


def cases(rnd, n):
    db = DB(MappingStorage())
    tm1, tm2 = transaction.TransactionManager(), transaction.TransactionManager()
    c1, c2 = db.open(tm1), db.open(tm2)
    root1 = c1.root()
    root1['refs'] = refs = [PersistentMapping({'i': i}) for i in range(3)]
    tm1.commit()
    serial = 0
    specs = []
    for family in FAMILIES:
        module = getattr(BTrees, family + 'BTree')
        for kind in ['Bucket', 'Set', 'BTree', 'TreeSet', 'Split']:
            specs.append((family, module, kind))
    specs.append((None, None, 'Length'))
    for family, module, kind in specs:
        for _ in range(n):
            serial += 1
            name = 'o%d' % serial
            keys = Keys(rnd, family) if family else None
            mapping = kind in ('Bucket', 'BTree', 'Split')
            if kind == 'Length':
                obj = Length(rnd.randrange(100))
            elif kind == 'Split':
                obj = getattr(module, family + 'BTree')()
                # Enough keys for several buckets: the target is a bucket
                # with a next pointer.
                for i in range(200):
                    obj[split_key(family, i * 7 + 3)] = keys.value(refs)
            else:
                obj = getattr(module, family + kind)()
                mutate(rnd, obj, keys, refs, mapping, rnd.randrange(9))
            root1[name] = obj
            tm1.commit()
            target1 = obj._firstbucket if kind == 'Split' else obj
            if kind == 'Split' and target1 is None:
                continue
            tm2.begin()
            obj2 = c2.root()[name]
            refs2 = c2.root()['refs']
            target2 = obj2._firstbucket if kind == 'Split' else obj2
            target2._p_activate()
            oid = target1._p_oid
            old = c1._storage.load(oid)[0]
            ops = (rnd.randrange(4), rnd.randrange(4))
            if kind == 'Length':
                obj.change(rnd.randrange(-5, 6))
                obj2.change(rnd.randrange(-5, 6))
            elif kind == 'Split':
                # Change the first bucket through its tree.
                for t, b, nops, rs in ((obj, target1, ops[0], refs),
                                       (obj2, target2, ops[1], refs2)):
                    for _ in range(nops):
                        present = list(b.keys())
                        r = rnd.random()
                        if present and r < 0.4:
                            del t[rnd.choice(present)]
                        elif present and r < 0.7:
                            t[rnd.choice(present)] = keys.value(rs)
                        else:
                            n = rnd.randrange(25)
                            t[split_key(family, n)] = keys.value(rs)
            else:
                mutate(rnd, obj, keys, refs, mapping, ops[0])
                mutate(rnd, obj2, keys, refs2, mapping, ops[1])
            tm1.commit()
            committed = c1._storage.load(oid)[0]
            new = ObjectWriter(target2).serialize(target2)
            tm2.abort()
            if committed == old:
                continue
            form = 'py3'
            if rnd.random() < 0.25:
                protocol = rnd.choice([1, 2])
                form = 'py2-protocol%d' % protocol
                old, committed, new = (Py2Record(protocol).convert(d)
                                       for d in (old, committed, new))
            resolved, reason = python_answer(oid, old, committed, new)
            yield {
                'class': '%s.%s' % (type(target1).__module__, type(target1).__name__),
                'kind': kind,
                'form': form,
                'oid': oid.hex(),
                'old': old.hex(),
                'committed': committed.hex(),
                'new': new.hex(),
                'resolved': resolved.hex() if resolved is not None else None,
                'reason': reason,
            }
    db.close()


def compare():
    def load(hexdata):
        up = PersistentUnpickler(find_global, lambda pid: ('REF', repr(pid)),
                                 io.BytesIO(bytes.fromhex(hexdata)))
        return up.load(), up.load()

    for line in sys.stdin:
        pair = json.loads(line)
        try:
            same = load(pair['a']) == load(pair['b'])
            print('same' if same else 'different', flush=True)
        except Exception as e:  # noqa: B902 report, don't die
            print('error %s: %s' % (type(e).__name__, e), flush=True)


def main():
    # tryToResolveConflict logs every unexpected failure with a traceback.
    logging.disable(logging.CRITICAL)
    if sys.argv[1] == 'generate':
        rnd = random.Random(int(sys.argv[3]))
        for case in cases(rnd, int(sys.argv[2])):
            print(json.dumps(case), flush=True)
    elif sys.argv[1] == 'compare':
        compare()


if __name__ == '__main__':
    main()
