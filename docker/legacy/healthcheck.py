"""Docker HEALTHCHECK of a legacy renderer: exit 0 if Zope answers GET /ok
with 200 (the ZeodLegacy health view: 503 while ZEO is disconnected)."""

import os
import sys
import urllib2

URL = "http://127.0.0.1:%s/ok" % os.environ.get("LISTEN_PORT", "8080")

try:
    response = urllib2.urlopen(URL, timeout=3)
    sys.exit(0 if response.getcode() == 200 else 1)
except (urllib2.URLError, IOError) as error:
    sys.stderr.write("%s: %s\n" % (URL, error))
    sys.exit(1)
