"""The legacy renderer's root page: which stack served this request."""

import platform
import socket

import pkg_resources
from Products.Five.browser import BrowserView


def _version(distribution):
    try:
        return pkg_resources.get_distribution(distribution).version
    except pkg_resources.DistributionNotFound:
        return "?"


def _address(storage):
    # ZEO 4's ClientStorage keeps the address it connected to as the str()
    # of a (host, port) pair (its canonical host name), or a socket path.
    connection = getattr(storage, "_connection", None)
    address = getattr(connection, "addr", None) or getattr(storage, "_server_addr", None)
    if isinstance(address, tuple) and len(address) == 2:
        return "%s:%s" % address
    return str(address or "?")


class RootPage(BrowserView):
    """Facts about this renderer, for people and for the e2e test."""

    def __call__(self, *args, **kw):
        self.request.response.setHeader("Cache-Control", "no-store")
        return self.index(*args, **kw)

    def info(self):
        storage = self.context._p_jar.db().storage
        is_connected = getattr(storage, "is_connected", None)
        connection = getattr(storage, "_connection", None)
        protocol = getattr(connection, "peer_protocol_version", None)
        return {
            "zope": _version("Zope2"),
            "zodb": _version("ZODB"),
            "zeo": _version("ZEO"),
            "python": platform.python_version(),
            "renderer": socket.gethostname(),
            # ClientStorage keeps the storage name it asked the server for.
            "storage": getattr(storage, "_storage", storage.getName()),
            "server": _address(storage),
            "protocol": protocol or "?",
            "connected": "yes" if is_connected is None or is_connected() else "no",
        }
