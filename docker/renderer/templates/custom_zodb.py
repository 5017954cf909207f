{#- For legacy Zope 2 instances (ZODB 3.8-3.10, Python 2), which look for
    custom_zodb.py in INSTANCE_HOME and use its `Storage`. zeod serves
    their Z308/Z309/Z310/Z3101 protocols. Variables: README.md. -#}
# Rendered by zeod init; edits here are overwritten.
# Zope 2 opens the main database on the `Storage` defined here.
from ZEO.ClientStorage import ClientStorage

_SERVERS = [
{%- for server in zeo.address %}
    "{{ server }}",
{%- endfor %}
]


def _address(server):
    # "host:port" becomes a (host, port) pair; anything else is a unix
    # socket path.
    host, sep, port = server.rpartition(":")
    if sep and port.isdigit():
        return (host, int(port))
    return server


def _storage():
    # ClientStorage takes one address, or a list to try in turn.
    addresses = [_address(s) for s in _SERVERS]
    options = dict(
        storage="{{ zeo.storage }}",
        name="{{ zeo.name }}",
        cache_size={{ zeo.cache_size | bytes }},
        read_only={{ "True" if zeo.read_only else "False" }},
        read_only_fallback={{ "True" if zeo.read_only_fallback else "False" }},
        drop_cache_rather_verify={{ "True" if zeo.drop_cache_rather_verify else "False" }},
        blob_dir="{{ zeo.blob_dir }}",
        shared_blob_dir={{ "True" if zeo.shared_blob_dir else "False" }},
{%- if zeo.client_name %}
        client="{{ zeo.client_name }}",
        var="{{ zeo.var_dir }}",
{%- endif %}
{%- if zeo.blob_cache_size and not zeo.shared_blob_dir %}
        blob_cache_size={{ zeo.blob_cache_size | bytes }},
{%- endif %}
    )
    return ClientStorage(addresses if len(addresses) > 1 else addresses[0], **options)


Storage = _storage()
