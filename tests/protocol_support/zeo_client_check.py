"""Feeds frames zeod encodes to the real ZEO 6 client's receive path and
checks what the client makes of them: the exception it raises (through its
own exc_factories), the result it resolves, the callback it invokes.

Input (stdin): lines "<case> <Z5|M5> <hex payload>". Output: "ok <case>"
per case that behaved as the client expects; the first failure raises.
"""
import asyncio
import sys

import ZODB.POSException as P
from ZEO.asyncio import client, marshal
from ZEO.Exceptions import ServerException

Z = b'\x00' * 8


def p64(n):
    return n.to_bytes(8, 'big')


class Client:
    """Records the callbacks the protocol delegates to its client."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return lambda *args: self.calls.append((name, args))


class Proto:
    """Just what client.Protocol.message_received touches."""
    client_methods = client.Protocol.client_methods
    exception_type_type = type(Exception)
    name = 'zeod-check'

    def __init__(self, protocol_id, loop):
        self.decode = marshal.decoder(protocol_id)
        self.futures = {}
        self.client = Client()
        self.client.ready = True
        self.loop = loop


def is_exc(cls, args=None):
    def check(exc):
        assert type(exc) is cls, repr(exc)
        assert args is None or exc.args == args, exc.args
    return check


def conflict(cls, oid, serials, class_name):
    def check(exc):
        assert type(exc) is cls, repr(exc)
        assert exc.oid == oid and exc.serials == serials, (exc.oid,
                                                           exc.serials)
        assert exc.class_name == class_name, exc.class_name
    return check


def raises(check):
    def run(future, proto):
        exc = future.exception()
        assert exc is not None, future.result()
        check(exc)
        str(exc)  # the client logs it; formatting must not fail
    return run


def result(value):
    def run(future, proto):
        assert future.result() == value, (future.result(), value)
    return run


def tuples(v):
    """msgpack clients see arrays as tuples, pickle clients see lists."""
    if isinstance(v, (list, tuple)):
        return tuple(tuples(x) for x in v)
    return v


def called(name, args):
    def run(future, proto):
        assert not future.done(), 'a one-way call resolved a future'
        calls = [(n, tuples(a)) for n, a in proto.client.calls]
        assert calls == [(name, args)], calls
    return run


def multiple_undo(exc):
    assert type(exc) is P.MultipleUndoErrors, repr(exc)
    assert str(exc) == 'Undo error 0x01: first\nUndo error 0x02: second', \
        str(exc)


TID = p64(0x040d3e5ae1802ccc)
MINPO = 'ZODB.tests.MinPO.MinPO'
CASES = {
    'poskey': raises(is_exc(P.POSKeyError, (p64(7),))),
    'conflict': raises(conflict(P.ConflictError, p64(2), (TID, Z), MINPO)),
    'read_conflict': raises(conflict(P.ReadConflictError, p64(2), (TID, Z),
                                     None)),
    'read_only': raises(is_exc(P.ReadOnlyError)),
    'storage_txn': raises(is_exc(P.StorageTransactionError, (None, 12345))),
    'multiple_undo': raises(multiple_undo),
    'undo': raises(is_exc(ServerException)),
    'value_error': raises(is_exc(
        ServerException,
        ('builtins.ValueError', ('unknown storage: nope',)))),
    'type_error': raises(is_exc(TypeError, ('bad',))),
    'other': raises(is_exc(
        ServerException,
        ('ZODB.POSException.StorageSystemError', ('disk full',)))),
    'key_error': raises(is_exc(KeyError, (b'k',))),
    'z4_poskey': raises(is_exc(P.POSKeyError, (p64(7),))),
    'z4_conflict': raises(conflict(P.ConflictError, p64(2), (TID, Z),
                                   MINPO)),
    'z4_value_error': raises(is_exc(ValueError, ('x',))),
    'z4_other': raises(is_exc(P.StorageSystemError, ('disk full',))),
    'load_reply': result((b'data', TID, None)),
    'invalidate': called('invalidateTransaction', (TID, (Z, p64(1)))),
    'info': called('info', ({'length': 3, 'size': 571},)),
    'blob_chunk': called('receiveBlobChunk', (p64(3), TID, b'chunk')),
}


def main():
    loop = asyncio.new_event_loop()
    for line in sys.stdin:
        case, protocol_id, hexdata = line.split()
        data = bytes.fromhex(hexdata)
        proto = Proto(protocol_id.encode(), loop)
        msgid = proto.decode(data)[0]
        future = loop.create_future()
        proto.futures[msgid] = future
        client.Protocol.message_received(proto, data)
        CASES[case](future, proto)
        print('ok', case, protocol_id, flush=True)
    loop.close()


if __name__ == '__main__':
    main()
