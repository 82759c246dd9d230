# -*- test-case-name: tests.test_web_cors -*-
"""
CORS: which web pages may call llmux from a browser (SPEC section 11,
C{cors: {origins: [...] | "*"}}).

L{CorsResource} wraps llmux's root leaf. With CORS off (no origins) it only
hands each request on. With CORS on it:

  - answers preflights (C{OPTIONS} with C{Origin} and
    C{Access-Control-Request-Method}) itself, without the root, the proxy or
    a backend: a 204 granting the methods and the requested headers for an
    allowed origin, a JSON 403 for any other;
  - marks every other request from an allowed origin as readable by its
    page (C{Access-Control-Allow-Origin}, C{Access-Control-Expose-Headers:
    Retry-After}) before the root sees it, so the headers are on whatever
    answer follows: a proxied or streamed response, a JSON error written
    later;
  - sends every other request on untouched otherwise: the browser then keeps
    the answer from the page.

The allowed origin is always echoed, never C{*}, even when the config says
C{"*"}: one code path, and an answer that stays right if credentials are
ever allowed (a browser refuses C{*} on a credentialed request). Since the
answer then depends on C{Origin}, every response carries C{Vary: Origin}
while CORS is on, whatever the origin (or none), so that a shared cache
never serves one page's answer to another.

An C{Origin} that is duplicated, longer than L{MAX_ORIGIN_BYTES} or not
printable ASCII is never allowed; it is only ever shown quoted and cut
short.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request

from llmux.accessconfig import CorsConfig
from llmux.web.errors import renderError

__all__ = [
    "ALLOWED_METHODS",
    "BAD_REQUEST_HEADERS",
    "MAX_AGE_SECS",
    "MAX_ORIGIN_BYTES",
    "MAX_REQUEST_HEADERS_BYTES",
    "ORIGIN_NOT_ALLOWED",
    "SHOWN_ORIGIN_CHARS",
    "CorsResource",
]

#: The methods a preflight grants: every method the proxy forwards.
ALLOWED_METHODS = (b"GET", b"POST", b"PUT", b"PATCH", b"DELETE", b"OPTIONS", b"HEAD")
#: How long a browser may cache a preflight's answer. Short, since a reload
#: can change the origins.
MAX_AGE_SECS = 600
#: The longest C{Origin} llmux considers (a real one is well under 300).
MAX_ORIGIN_BYTES = 1024
#: The longest C{Access-Control-Request-Headers} a preflight may send.
MAX_REQUEST_HEADERS_BYTES = 4096
#: How much of a refused origin an error message shows.
SHOWN_ORIGIN_CHARS = 200

#: What a refused preflight's message starts with.
ORIGIN_NOT_ALLOWED = "Origin not allowed: "
#: The message of the 400 for a preflight asking for malformed headers.
BAD_REQUEST_HEADERS = "Malformed Access-Control-Request-Headers"

_METHODS = b", ".join(ALLOWED_METHODS)
_MAX_AGE = b"%d" % (MAX_AGE_SECS,)
#: Response headers a page may read besides the CORS-safelisted ones:
#: C{Retry-After}, which every 503 carries.
_EXPOSED = b"Retry-After"
#: A header name (RFC 9110 5.1, C{token}).
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class CorsResource(Resource):
    """
    A leaf wrapping llmux's root leaf, adding CORS as the current config
    says (see the module docstring).
    """

    isLeaf = True

    def __init__(self, inner: IResource, cors: Callable[[], CorsConfig]) -> None:
        """
        @param inner: the leaf every request other than a preflight goes to.
        @param cors: returns the C{cors:} settings in force; called on every
            request, since a reload can change them.
        """
        super().__init__()
        self._inner = inner
        self._cors = cors

    def render(self, request: Request) -> bytes | int:
        """
        Hand the request on, with CORS applied if it is on.
        """
        cors = self._cors()
        if not cors.origins:
            result: bytes | int = self._inner.render(request)
            return result
        return self._renderCors(request, cors)

    def _renderCors(self, request: Request, cors: CorsConfig) -> bytes | int:
        """
        CORS is on: answer a preflight, or mark the response and hand it on.
        """
        request.responseHeaders.addRawHeader(b"Vary", b"Origin")
        requestHeaders = request.requestHeaders
        values = requestHeaders.getRawHeaders(b"origin")
        if values is not None:
            origin = _allowedOrigin(values, cors)
            if request.method == b"OPTIONS" and requestHeaders.hasHeader(
                b"access-control-request-method"
            ):
                return _preflight(request, values, origin)
            if origin is not None:
                _grant(request, origin)
                request.responseHeaders.setRawHeaders(
                    b"Access-Control-Expose-Headers", [_EXPOSED]
                )
        result: bytes | int = self._inner.render(request)
        return result


def _allowedOrigin(values: Sequence[bytes], cors: CorsConfig) -> bytes | None:
    """
    The request's origin if it is well formed and allowed, else C{None}.
    """
    if len(values) != 1:
        return None
    origin = values[0]
    if not 0 < len(origin) <= MAX_ORIGIN_BYTES or not _isVisibleAscii(origin):
        return None
    return origin if cors.allows(origin.decode("ascii")) else None


def _isVisibleAscii(value: bytes) -> bool:
    """
    Whether C{value} is all printable ASCII without spaces, as an origin is.
    """
    return value.isascii() and all(0x20 < c < 0x7F for c in value)


def _grant(request: Request, origin: bytes) -> None:
    """
    Let the page from C{origin} read the response.
    """
    request.responseHeaders.setRawHeaders(b"Access-Control-Allow-Origin", [origin])


def _preflight(
    request: Request, values: Sequence[bytes], origin: bytes | None
) -> bytes | int:
    """
    Answer a preflight: a 204 granting what the page asked for if its origin
    is allowed and its request well formed; a JSON error otherwise.
    """
    if origin is None:
        return renderError(request, 403, ORIGIN_NOT_ALLOWED + _shown(values))
    requested = _requestedHeaders(request)
    if requested is None:
        return renderError(request, 400, BAD_REQUEST_HEADERS)
    _grant(request, origin)
    headers = request.responseHeaders
    headers.setRawHeaders(b"Access-Control-Allow-Methods", [_METHODS])
    if requested:
        headers.setRawHeaders(b"Access-Control-Allow-Headers", [requested])
    headers.setRawHeaders(b"Access-Control-Max-Age", [_MAX_AGE])
    # Written here rather than returned: twisted.web would add a
    # Content-Length, which a 204 must not carry.
    request.setResponseCode(204)
    request.write(b"")
    request.finish()
    return NOT_DONE_YET


def _requestedHeaders(request: Request) -> bytes | None:
    """
    The header names a preflight asks for, as a list to send back (empty if
    none), or C{None} if its C{Access-Control-Request-Headers} is not a
    list of header names or is too long.
    """
    values = request.requestHeaders.getRawHeaders(b"access-control-request-headers")
    if not values:
        return b""
    joined = b",".join(values)
    if len(joined) > MAX_REQUEST_HEADERS_BYTES:
        return None
    names = [name.strip(b" \t") for name in joined.split(b",")]
    names = [name for name in names if name]
    if not all(_TOKEN.fullmatch(name) for name in names):
        return None
    return b", ".join(names)


def _shown(values: Sequence[bytes]) -> str:
    """
    The C{Origin} values of a request as an error message may show them:
    printable ASCII (anything else escaped), cut to L{SHOWN_ORIGIN_CHARS}.
    """
    raw = b", ".join(values)
    cut = raw[:SHOWN_ORIGIN_CHARS]
    text = "".join(
        chr(c) if 0x20 <= c < 0x7F and c != 0x5C else f"\\x{c:02x}" for c in cut
    )
    return text + ("..." if len(raw) > len(cut) else "")
