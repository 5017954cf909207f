"""Regenerates extensions.txt: what ZODB stores as a transaction's extension
bytes for dicts a ZEO server received. Run with the pinned venv:
    $(bash tests/python/venv.sh) tests/protocol_support/make_extensions.py > tests/protocol_support/extensions.txt
"""
import io

from zodbpickle import fastpickle as fp
from zodbpickle.pickle import loads
from ZODB.Connection import TransactionMetaData


def wire(o):
    # As the server gets it: out of a fast (memo-less) protocol-3 message.
    f = io.BytesIO()
    p = fp.Pickler(f, 3)
    p.fast = 1
    p.dump(o)
    return loads(f.getvalue())


print("# TransactionMetaData(extension=d).extension_bytes from ZODB 6.4 / zodbpickle (py3.11),")
print("# d unpickled from a fast protocol-3 pickle as a ZEO server receives it.")
print("# One line per case: name, hex. Regenerate with make_extensions.py.")
exts = [
    ('note', {'note': 'first'}),
    ('n', {'n': 2}),
    ('mixed', {'user_name': 'admin', 'path': '/plone/front-page', 'x': 'x',
               'empty': '', 'b': b'', 'b1': b'\x00',
               'l': [1, 'x', 2**40, -5, 1.5, None, True], 't': ('a', 'bb'),
               'd': {'x': 'y'}, 'u': 'caf\u00e9 \u2603', 'big': 2**70}),
    ('k300', {'k%d' % i: i for i in range(300)}),
]
for name, e in exts:
    print(name, TransactionMetaData(extension=wire(e)).extension_bytes.hex())
