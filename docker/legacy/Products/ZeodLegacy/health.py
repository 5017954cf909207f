"""The renderer's health view: is this Zope connected to its storage?"""

from Products.Five.browser import BrowserView


class Health(BrowserView):
    """Answers 200 "OK" while the database's storage is reachable, else 503.

    A ZEO client that lost its server still serves what its cache holds,
    but commits fail: the balancer should prefer renderers that can commit.
    """

    def __call__(self):
        response = self.request.response
        response.setHeader("Content-Type", "text/plain; charset=utf-8")
        response.setHeader("Cache-Control", "no-store")
        storage = self.context._p_jar.db().storage
        is_connected = getattr(storage, "is_connected", None)
        if is_connected is not None and not is_connected():
            response.setStatus(503)
            return "ZEO storage disconnected\n"
        return "OK\n"
