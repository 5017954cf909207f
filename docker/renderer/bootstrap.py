"""One-shot setup of a site, run before any renderer starts.

1. Copies the add-ons this image ships (Products/ZeodDemo) onto the shared
   add-ons volume, replacing older copies, so every renderer imports the
   same code.
2. Starts Zope once against the storage: on an empty storage that creates
   the root application. Doing it here, alone, avoids the race of several
   renderers creating it at once (all but one die with a ConflictError).
3. Adds the demo portal at /demo and, when ZEOD_ADMIN_PASSWORD is set, a
   Manager "admin" (ZEOD_ADMIN_USER) in the root user folder.

Idempotent: a second run changes nothing that is already there.
Run as: zeod init -- python bootstrap.py [/app/etc/zope.conf]
"""

import filecmp
import os
import shutil
import sys
import tempfile

SHIPPED = "/usr/local/share/zeod/Products"
ADDONS = "/app/lib/python/Products"
ZOPE_CONF = sys.argv[1] if len(sys.argv) > 1 else "/app/etc/zope.conf"
DEMO_ID = "demo"


def log(message):
    print(f"bootstrap: {message}", file=sys.stderr, flush=True)


def same_tree(left, right):
    if not os.path.isdir(right):
        return False
    comparison = filecmp.dircmp(left, right, ignore=["__pycache__"])
    if comparison.left_only or comparison.right_only or comparison.diff_files:
        return False
    if comparison.funny_files:
        return False
    return all(
        same_tree(os.path.join(left, sub), os.path.join(right, sub))
        for sub in comparison.common_dirs
    )


def sync_addons():
    """Replaces each shipped product on the volume unless it is identical."""
    os.makedirs(ADDONS, exist_ok=True)
    for name in sorted(os.listdir(SHIPPED)):
        source, target = os.path.join(SHIPPED, name), os.path.join(ADDONS, name)
        if same_tree(source, target):
            continue
        # Copy next to the target, then swap, so a renderer never imports a
        # half-written product.
        staging = tempfile.mkdtemp(prefix=f".{name}-", dir=ADDONS)
        shutil.copytree(source, os.path.join(staging, name))
        if os.path.exists(target):
            old = tempfile.mkdtemp(prefix=f".{name}-old-", dir=ADDONS)
            os.rename(target, os.path.join(old, name))
            os.rename(os.path.join(staging, name), target)
            shutil.rmtree(old)
        else:
            os.rename(os.path.join(staging, name), target)
        os.rmdir(staging)
        log(f"installed add-on {name} into {ADDONS}")


def setup_site():
    import transaction
    import Zope2
    from AccessControl.SecurityManagement import newSecurityManager
    from AccessControl.users import system
    from Zope2.Startup.run import make_wsgi_app

    # Zope's startup opens the database and creates the root on first use.
    make_wsgi_app({}, ZOPE_CONF)
    app = Zope2.app()
    newSecurityManager(None, system)
    try:
        if DEMO_ID not in app.objectIds():
            from Products.ZeodDemo.portal import DemoPortal

            app._setObject(DEMO_ID, DemoPortal(DEMO_ID, "zeod demo portal"))
            log(f"created /{DEMO_ID}")
        password = os.environ.get("ZEOD_ADMIN_PASSWORD")
        user = os.environ.get("ZEOD_ADMIN_USER", "admin")
        if password and app.acl_users.getUserById(user) is None:
            app.acl_users._doAddUser(user, password, ["Manager"], [])
            log(f"created Manager {user!r}")
        transaction.commit()
    finally:
        app._p_jar.close()
    log("site ready")


def main():
    sync_addons()
    setup_site()


if __name__ == "__main__":
    main()
