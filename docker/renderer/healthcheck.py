"""Docker HEALTHCHECK of a renderer: exit 0 if Zope answers GET /ok with 200.

/ok is the ZeodDemo health view: it answers 503 while the ZEO client is
disconnected, so a renderer that lost its storage leaves the balancer.
"""

import os
import sys
import urllib.error
import urllib.request

PORT = os.environ.get("LISTEN_PORT", "8080")
URL = f"http://127.0.0.1:{PORT}/ok"

try:
    with urllib.request.urlopen(URL, timeout=3) as response:
        sys.exit(0 if response.status == 200 else 1)
except (urllib.error.URLError, OSError) as error:
    print(f"{URL}: {error}", file=sys.stderr)
    sys.exit(1)
