"""The demo portal: notes stored in the ZODB, shown with the renderer's name."""

import html
import itertools
import json
import os
import socket
import time
import uuid

from AccessControl.class_init import InitializeClass
from AccessControl.SecurityInfo import ClassSecurityInfo
from BTrees.Length import Length
from BTrees.OOBTree import OOBTree
from OFS.SimpleItem import SimpleItem
from Products.PageTemplates.PageTemplateFile import PageTemplateFile

# The container's hostname: what tells renderers apart behind the balancer.
RENDERER = socket.gethostname()
MAX_NOTE_LENGTH = 2000
# Note keys are this minus the time in ns: later notes sort first.
_FAR_FUTURE_NS = 10**20
SHOWN_NOTES = 50
ADD_PERMISSION = "Add ZeodDemo Portals"


class DemoPortal(SimpleItem):
    """A page of notes that any renderer can show and (if writable) extend."""

    meta_type = "ZeodDemo Portal"
    zmi_icon = "far fa-sticky-note"
    security = ClassSecurityInfo()

    def __init__(self, id, title=""):
        self.id = id
        self.title = title
        # Keys count down with time, so the newest notes come first and a
        # page reads only the buckets it shows.
        self.notes = OOBTree()
        self.note_count = Length()

    security.declarePublic("index_html")
    index_html = PageTemplateFile("www/index.pt", globals())

    security.declarePublic("renderer")

    def renderer(self):
        return RENDERER

    security.declarePublic("storage_info")

    def storage_info(self):
        """Which storage this renderer reads, and whether it may write."""
        storage = self._p_jar.db().storage
        return {
            # ClientStorage's name says "(connected)" or "(disconnected)".
            "name": storage.getName(),
            "server": os.environ.get("ZEO_ADDRESS", ""),
            "read_only": bool(self._p_jar.isReadOnly()),
        }

    security.declarePublic("recent_notes")

    def recent_notes(self, limit=SHOWN_NOTES):
        """The newest notes first (all of them if `limit` is 0), as dicts."""
        items = self.notes.items()
        if limit:
            items = itertools.islice(items, limit)
        return [dict(note, key=key) for key, note in items]

    security.declarePublic("number_of_notes")

    def number_of_notes(self):
        return self.note_count()

    security.declarePublic("add_note")

    def add_note(self, text="", REQUEST=None):
        """Stores a note (POST only), then sends the browser back to the page."""
        response = REQUEST.RESPONSE
        response.setHeader("X-Zeod-Renderer", RENDERER)
        response.setHeader("Cache-Control", "no-store")
        if REQUEST.get("REQUEST_METHOD") != "POST":
            response.setStatus(405)
            response.setHeader("Allow", "POST")
            return "add_note takes a POST\n"
        if self._p_jar.isReadOnly():
            # Said here, before the commit would fail with a bare
            # ReadOnlyError and a 500.
            response.setStatus(403)
            response.setHeader("Content-Type", "text/plain; charset=utf-8")
            return (
                f"Renderer {RENDERER} is a read-only ZEO client: it serves "
                "reads only. Send writes through the load balancer.\n"
            )
        text = (text or "").strip()
        if not text or len(text) > MAX_NOTE_LENGTH:
            response.setStatus(400)
            return f"a note has 1 to {MAX_NOTE_LENGTH} characters\n"
        key = f"{_FAR_FUTURE_NS - time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        self.note_count.change(1)
        self.notes[key] = {
            "text": text,
            "renderer": RENDERER,
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        response.setHeader("X-Zeod-Note", key)
        response.redirect(self.absolute_url() + "/", status=303)
        return ""

    security.declarePublic("notes_json")

    def notes_json(self, limit=0, REQUEST=None):
        """Every note (or the newest `limit`), oldest first, as JSON."""
        response = REQUEST.RESPONSE
        response.setHeader("Content-Type", "application/json")
        response.setHeader("Cache-Control", "no-store")
        response.setHeader("X-Zeod-Renderer", RENDERER)
        try:
            limit = max(0, int(limit or 0))
        except ValueError:
            response.setStatus(400)
            return json.dumps({"error": "limit must be a number"})
        notes = self.recent_notes(limit)
        notes.reverse()
        return json.dumps(
            {"renderer": RENDERER, "storage": self.storage_info(), "notes": notes}
        )


InitializeClass(DemoPortal)


def manage_addDemoPortalForm(self, REQUEST=None):
    """A minimal ZMI add form."""
    return (
        "<html><body><h2>Add ZeodDemo Portal</h2>"
        '<form action="manage_addDemoPortal" method="post">'
        'Id <input name="id" value="demo"> '
        'Title <input name="title"> <input type="submit" value="Add">'
        "</form></body></html>"
    )


def manage_addDemoPortal(self, id, title="", REQUEST=None):
    """Adds a DemoPortal to a folder."""
    self._setObject(id, DemoPortal(id, title))
    if REQUEST is not None:
        REQUEST.RESPONSE.redirect(self.absolute_url() + "/manage_main")
    return html.escape(id)
