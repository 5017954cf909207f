"""ZeodDemo: the appliance's demo portal, an old-style Zope product.

It lives on the add-ons volume that every renderer mounts (one copy for all
of them) and provides:

- ``DemoPortal``: a page rendered from ZODB content (notes kept in a BTree)
  that names the renderer which served it, with a form that stores a note;
- ``@@ok``: the health view the load balancer and Docker probe.
"""

from Products.ZeodDemo.portal import DemoPortal
from Products.ZeodDemo.portal import manage_addDemoPortal
from Products.ZeodDemo.portal import manage_addDemoPortalForm


def initialize(context):
    context.registerClass(
        DemoPortal,
        constructors=(manage_addDemoPortalForm, manage_addDemoPortal),
    )
