"""ZeodLegacy: what the legacy renderer image adds to its Zope 2.13 instance.

- ``@@zeod-legacy`` of the root: names the legacy renderer, its Zope, ZEO
  and Python, and the ZEO storage and server it is a client of (the root's
  ``index_html`` shows it on a new site, see bootstrap.py);
- ``ok``: the health view the load balancer and Docker probe, as in the
  modern renderer's ZeodDemo.

A filesystem product in the instance home (``/app/Products``): Zope 2.13
imports it at startup and Five loads its configure.zcml.
"""


def initialize(context):
    pass
