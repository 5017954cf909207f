"""One-shot setup of a legacy (Zope 2.13) site, run before any renderer.

1. Starts Zope once against its storage: on an empty storage that creates
   the root application. Doing it here, alone, avoids the race of several
   renderers creating it at once (all but one die with a ConflictError).
2. When ZEOD_ADMIN_PASSWORD is set, adds a Manager "admin"
   (ZEOD_ADMIN_USER) to the root user folder.
3. While the root's index_html is still Zope's stock quick-start page,
   makes it show the legacy renderer's page (ZeodLegacy's @@zeod-legacy).
   A site's own index_html is never touched.

Idempotent: a second run changes nothing that is already there.
Run as: zeod init -- python2.7 bootstrap.py [/app/etc/zope.conf]
"""

from __future__ import print_function

import os
import sys

ZOPE_CONF = sys.argv[1] if len(sys.argv) > 1 else "/app/etc/zope.conf"
# The root index_html that Zope 2.13 creates, and what replaces it.
STOCK_INDEX = '<tal:text tal:replace="structure context/zope_quick_start" />'
LEGACY_INDEX = '<tal:page tal:replace="structure context/@@zeod-legacy" />\n'


def log(message):
    print("legacy bootstrap: %s" % message, file=sys.stderr)
    sys.stderr.flush()


def main():
    from Zope2.Startup.run import configure

    # Reads zope.conf as runzope would (logging, products, databases).
    configure(ZOPE_CONF)
    import transaction
    import Zope2

    # Zope2.app() runs the startup: it opens the database and, on an empty
    # storage, creates and commits the root application.
    app = Zope2.app()
    try:
        index = app._getOb("index_html", None)
        if index is not None and index.meta_type == "Page Template":
            if index.read().strip() == STOCK_INDEX:
                index.pt_edit(LEGACY_INDEX, "text/html")
                transaction.get().note("zeod legacy bootstrap: root page")
                transaction.commit()
                log("root index_html shows the legacy renderer page")
        password = os.environ.get("ZEOD_ADMIN_PASSWORD")
        user = os.environ.get("ZEOD_ADMIN_USER", "admin")
        if password and app.acl_users.getUserById(user) is None:
            app.acl_users._doAddUser(user, password, ["Manager"], [])
            transaction.get().note("zeod legacy bootstrap: add Manager %s" % user)
            transaction.commit()
            log("created Manager %r" % user)
        log("site ready: %s" % ", ".join(sorted(app.objectIds())))
    finally:
        transaction.abort()
        app._p_jar.close()


if __name__ == "__main__":
    main()
