# -*- test-case-name: tests.test_dashboard -*-
"""
C{GET /llmux/ui}: the dashboard (SPEC section 12), a static page shipped in
the package (C{llmux/web/ui/}) that draws itself from C{/llmux/status} and
C{/llmux/events}.

Only the three files below are served, looked up by their exact path in a
table: there is no directory listing and no path is ever joined onto the
file system, so nothing outside them can be reached. Any other path gets a
JSON 404. The page needs no key (it holds no data); the endpoints it reads
ask for one as usual.
"""

from __future__ import annotations

from importlib.resources import files

from twisted.web.resource import Resource
from twisted.web.server import Request

from llmux.web.errors import MethodNotAllowed, renderError

__all__ = ["UI_PATHS", "UiResource"]

#: The UI's URL paths, and the packaged file each one serves with its type.
_FILES: dict[bytes, tuple[str, bytes]] = {
    b"/llmux/ui": ("index.html", b"text/html; charset=utf-8"),
    b"/llmux/ui/": ("index.html", b"text/html; charset=utf-8"),
    b"/llmux/ui/dashboard.js": ("dashboard.js", b"text/javascript; charset=utf-8"),
    b"/llmux/ui/dashboard.css": ("dashboard.css", b"text/css; charset=utf-8"),
}
#: The paths to route to L{UiResource}.
UI_PATHS = tuple(_FILES)


def _read(name: str) -> bytes:
    return files("llmux.web").joinpath("ui").joinpath(name).read_bytes()


class UiResource(Resource):
    """
    Serves the dashboard's files from the package, read once and kept.
    """

    isLeaf = True
    allowedMethods = (b"GET", b"HEAD")
    _notAllowed = MethodNotAllowed(allowedMethods)

    def __init__(self) -> None:
        super().__init__()
        self._cache: dict[str, bytes] = {}

    def render(self, request: Request) -> bytes:
        if request.method not in self.allowedMethods:
            return self._notAllowed.render(request)
        found = _FILES.get(request.path)
        if found is None:
            return renderError(request, 404, "Not found")
        name, contentType = found
        body = self._cache.get(name)
        if body is None:
            body = self._cache[name] = _read(name)
        request.setHeader(b"Content-Type", contentType)
        request.setHeader(b"Cache-Control", b"no-cache")
        request.setHeader(b"X-Content-Type-Options", b"nosniff")
        return body
