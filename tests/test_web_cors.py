"""
Tests for L{llmux.web.cors}: CORS headers and preflights, served over
loopback.
"""

from __future__ import annotations

import json

import treq
from treq.client import HTTPClient
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.iweb import IResponse
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from llmux.accessconfig import CorsConfig
from llmux.web.cors import MAX_ORIGIN_BYTES, SHOWN_ORIGIN_CHARS, CorsResource
from llmux.web.errors import writeError
from tests.test_web_proxy import TrackingFactory, portOf, reactor

APP = "https://app.example"
OTHER = "https://other.example"
METHODS = b"GET, POST, PUT, PATCH, DELETE, OPTIONS, HEAD"
OFF = CorsConfig()
ONE = CorsConfig((APP,))
ANY = CorsConfig("*")


class Recorder(Resource):
    """
    A leaf that records the requests it gets and answers them with a 200.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[bytes, bytes]] = []

    def render(self, request: Request) -> bytes:
        self.calls.append((request.method, request.uri))
        request.setHeader(b"X-Inner", b"yes")
        return b"inner"


class Later(Resource):
    """
    A leaf that leaves its requests open, for the test to answer later.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.arrived: Deferred[Request] = Deferred()

    def render(self, request: Request) -> int:
        self.arrived.callback(request)
        return NOT_DONE_YET


class CorsTests(TestCase):
    """
    L{CorsResource} in a L{Site} on a loopback port, in front of a
    L{Recorder}, with a config the test can change between requests.
    """

    timeout = 10

    def setUp(self) -> None:
        self.config = OFF
        self.reads = 0
        self.inner = Recorder()
        self.serve(self.inner)
        self.http = HTTPClient(
            Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))
        )

    def currentConfig(self) -> CorsConfig:
        self.reads += 1
        return self.config

    def serve(self, inner: Resource) -> None:
        site = Site(CorsResource(inner, self.currentConfig))
        site.displayTracebacks = False
        tracker = TrackingFactory(site)
        port = reactor.listenTCP(0, tracker, interface="127.0.0.1")
        self.addCleanup(tracker.closeAll)
        self.addCleanup(port.stopListening)
        self.port = portOf(port)

    async def request(
        self,
        method: str,
        origin: str | bytes | list[bytes] | None = None,
        path: str = "/v1/chat/completions",
        **headers: str | bytes,
    ) -> tuple[IResponse, bytes]:
        """
        Send a request with the given C{Origin} (a list: one header line
        each) and other headers (underscores for dashes); return the
        response and its body.
        """
        sent: dict[bytes, list[bytes]] = {}
        if origin is not None:
            values = origin if isinstance(origin, list) else [origin]
            sent[b"Origin"] = [_bytes(v) for v in values]
        for name, value in headers.items():
            sent[name.replace("_", "-").encode("ascii")] = [_bytes(value)]
        response = await self.http.request(
            method, f"http://127.0.0.1:{self.port}{path}", headers=sent
        )
        return response, await treq.content(response)

    async def preflight(
        self, origin: str | bytes | list[bytes], **headers: str | bytes
    ) -> tuple[IResponse, bytes]:
        return await self.request(
            "OPTIONS", origin, Access_Control_Request_Method="POST", **headers
        )

    def assertNoCors(self, response: IResponse) -> None:
        self.assertEqual(
            [
                name
                for name, _ in response.headers.getAllRawHeaders()
                if name.lower().startswith(b"access-control-")
            ],
            [],
        )

    def assertGranted(self, response: IResponse, origin: bytes) -> None:
        """
        The response lets the page from C{origin} read it, including its
        C{Retry-After}.
        """
        headers = response.headers
        self.assertEqual(
            headers.getRawHeaders(b"access-control-allow-origin"), [origin]
        )
        self.assertEqual(
            headers.getRawHeaders(b"access-control-expose-headers"), [b"Retry-After"]
        )
        self.assertEqual(headers.getRawHeaders(b"vary"), [b"Origin"])

    def assertJsonError(
        self, response: IResponse, body: bytes, status: int, message: str
    ) -> None:
        self.assertEqual(response.code, status)
        self.assertEqual(
            response.headers.getRawHeaders(b"content-type"), [b"application/json"]
        )
        self.assertEqual(
            json.loads(body), {"error": {"message": message, "type": "llmux_error"}}
        )

    # --- off ------------------------------------------------------------------

    async def test_off(self) -> None:
        """
        With no origins, requests go to the inner resource and nothing is
        added, not even C{Vary}.
        """
        response, body = await self.request("GET", APP)
        self.assertEqual((response.code, body), (200, b"inner"))
        self.assertNoCors(response)
        self.assertIsNone(response.headers.getRawHeaders(b"vary"))
        self.assertEqual(self.inner.calls, [(b"GET", b"/v1/chat/completions")])

    async def test_offPreflight(self) -> None:
        """
        With CORS off, llmux does not answer preflights: they go to the
        inner resource like any request.
        """
        response, body = await self.preflight(APP)
        self.assertEqual((response.code, body), (200, b"inner"))
        self.assertNoCors(response)
        self.assertEqual(self.inner.calls, [(b"OPTIONS", b"/v1/chat/completions")])

    # --- simple requests -----------------------------------------------------

    async def test_allowedOrigin(self) -> None:
        """
        A request from an allowed origin is answered by the inner resource,
        with the origin echoed, C{Vary: Origin} and C{Retry-After} exposed.
        """
        self.config = ONE
        response, body = await self.request("POST", APP)
        self.assertEqual((response.code, body), (200, b"inner"))
        self.assertGranted(response, APP.encode())
        self.assertEqual(response.headers.getRawHeaders(b"x-inner"), [b"yes"])
        self.assertEqual(self.inner.calls, [(b"POST", b"/v1/chat/completions")])

    async def test_anyOrigin(self) -> None:
        """
        With C{"*"}, every well-formed origin is allowed, and echoed rather
        than answered with C{*}.
        """
        self.config = ANY
        for origin in [APP, OTHER, "http://localhost:8080", "null"]:
            response, _ = await self.request("GET", origin)
            self.assertGranted(response, origin.encode())
        self.assertEqual(len(self.inner.calls), 4)

    async def test_disallowedOrigin(self) -> None:
        """
        A request from another origin is answered by the inner resource,
        without CORS headers: the browser keeps the answer from the page.
        """
        self.config = ONE
        response, body = await self.request("POST", OTHER)
        self.assertEqual((response.code, body), (200, b"inner"))
        self.assertNoCors(response)
        self.assertEqual(response.headers.getRawHeaders(b"vary"), [b"Origin"])
        self.assertEqual(len(self.inner.calls), 1)

    async def test_noOrigin(self) -> None:
        """
        A request without C{Origin} (not from a browser page) is answered
        by the inner resource, without CORS headers but with C{Vary:
        Origin}, so a cache does not hand it to a page.
        """
        self.config = ONE
        response, body = await self.request("GET")
        self.assertEqual((response.code, body), (200, b"inner"))
        self.assertNoCors(response)
        self.assertEqual(response.headers.getRawHeaders(b"vary"), [b"Origin"])

    async def test_delayedResponse(self) -> None:
        """
        The headers are set before the inner resource runs, so a response
        it finishes later carries them too: here a JSON 503 with
        C{Retry-After}, which the page may read.
        """
        self.config = ONE
        later = Later()
        self.serve(later)
        answered = Deferred.fromCoroutine(self.request("POST", APP))
        request = await later.arrived
        request.setHeader(b"Retry-After", b"5")
        writeError(request, 503, "Model not ready")
        response, body = await answered
        self.assertJsonError(response, body, 503, "Model not ready")
        self.assertGranted(response, APP.encode())
        self.assertEqual(response.headers.getRawHeaders(b"retry-after"), [b"5"])

    async def test_optionsWithoutRequestMethod(self) -> None:
        """
        An C{OPTIONS} without C{Access-Control-Request-Method} is not a
        preflight: it goes to the inner resource, with CORS headers for an
        allowed origin.
        """
        self.config = ONE
        response, body = await self.request("OPTIONS", APP)
        self.assertEqual((response.code, body), (200, b"inner"))
        self.assertGranted(response, APP.encode())
        self.assertEqual(self.inner.calls, [(b"OPTIONS", b"/v1/chat/completions")])

    # --- preflights ----------------------------------------------------------

    async def test_preflightAllowed(self) -> None:
        """
        A preflight from an allowed origin is answered by llmux: a 204
        without a body, granting the methods, the requested headers (as a
        clean list) and a C{Max-Age}.
        """
        self.config = ONE
        response, body = await self.preflight(
            APP, Access_Control_Request_Headers="content-type,Authorization , x-a"
        )
        self.assertEqual((response.code, body), (204, b""))
        headers = response.headers
        expected = {
            b"access-control-allow-origin": [APP.encode()],
            b"access-control-allow-methods": [METHODS],
            b"access-control-allow-headers": [b"content-type, Authorization, x-a"],
            b"access-control-max-age": [b"600"],
            b"vary": [b"Origin"],
        }
        for name, values in expected.items():
            self.assertEqual(headers.getRawHeaders(name), values, name)
        self.assertIsNone(headers.getRawHeaders(b"content-length"))
        self.assertEqual(self.inner.calls, [])

    async def test_preflightWithoutRequestHeaders(self) -> None:
        """
        A preflight asking for no headers is granted none, on any path.
        """
        self.config = ANY
        response, _ = await self.request(
            "OPTIONS", OTHER, path="/health", Access_Control_Request_Method="GET"
        )
        self.assertEqual(response.code, 204)
        self.assertEqual(
            response.headers.getRawHeaders(b"access-control-allow-origin"),
            [OTHER.encode()],
        )
        self.assertIsNone(
            response.headers.getRawHeaders(b"access-control-allow-headers")
        )
        self.assertEqual(self.inner.calls, [])

    async def test_preflightRefused(self) -> None:
        """
        A preflight from an origin that is not allowed gets a JSON 403
        naming it, without CORS headers, and never reaches the inner
        resource.
        """
        self.config = ONE
        response, body = await self.preflight(
            OTHER, Access_Control_Request_Headers="content-type"
        )
        self.assertJsonError(response, body, 403, f"Origin not allowed: {OTHER}")
        self.assertNoCors(response)
        self.assertEqual(self.inner.calls, [])

    async def test_badRequestHeaders(self) -> None:
        """
        A preflight asking for something that is not a list of header
        names, or a very long one, gets a JSON 400.
        """
        self.config = ONE
        for requested in [
            b"content-type, x y",
            b"a;b",
            b"a:b",
            b'"quoted"',
            b"x\x01y",
            b"caf\xe9",
            b"a," * 2500,
        ]:
            response, body = await self.preflight(
                APP, Access_Control_Request_Headers=requested
            )
            self.assertJsonError(
                response, body, 400, "Malformed Access-Control-Request-Headers"
            )
            self.assertIsNone(
                response.headers.getRawHeaders(b"access-control-allow-origin")
            )
        self.assertEqual(self.inner.calls, [])

    # --- malformed origins ---------------------------------------------------

    async def test_malformedOrigins(self) -> None:
        """
        An C{Origin} that is duplicated, empty, too long, not ASCII or not
        printable is never allowed, even with C{"*"}: a simple request goes
        on without CORS headers, a preflight gets a 403.
        """
        self.config = ANY
        longest = b"https://" + b"a" * (MAX_ORIGIN_BYTES - 8)
        self.assertEqual(len(longest), MAX_ORIGIN_BYTES)
        response, _ = await self.request("GET", longest)
        self.assertGranted(response, longest)
        malformed: list[bytes | list[bytes]] = [
            [APP.encode(), APP.encode()],
            [APP.encode(), OTHER.encode()],
            b"",
            longest + b"a",
            b"https://caf\xe9.example",
            b"https://a\x01.example",
            b"https://a .example",
        ]
        for origin in malformed:
            response, body = await self.request("GET", origin)
            self.assertEqual((response.code, body), (200, b"inner"), origin)
            self.assertNoCors(response)
            response, body = await self.preflight(origin)
            self.assertEqual(response.code, 403, origin)
            self.assertNoCors(response)
        self.assertEqual(len(self.inner.calls), 1 + len(malformed))

    async def test_refusedOriginShownSafely(self) -> None:
        """
        A refused origin is shown with anything unprintable escaped and cut
        short; two C{Origin} headers are both shown.
        """
        self.config = ONE
        response, body = await self.preflight(b"https://a\x01\\\xe9" + b"b" * 5000)
        shown = "https://a\\x01\\x5c\\xe9" + "b" * (SHOWN_ORIGIN_CHARS - 12) + "..."
        self.assertJsonError(response, body, 403, f"Origin not allowed: {shown}")
        response, body = await self.preflight([APP.encode(), OTHER.encode()])
        self.assertJsonError(response, body, 403, f"Origin not allowed: {APP}, {OTHER}")

    # --- reloads -------------------------------------------------------------

    async def test_configReadEveryRequest(self) -> None:
        """
        The config is asked for on every request, so a reload takes effect
        at once.
        """
        self.config = ONE
        response, _ = await self.request("GET", APP)
        self.assertGranted(response, APP.encode())
        self.config = OFF
        response, _ = await self.request("GET", APP)
        self.assertNoCors(response)
        self.config = CorsConfig((OTHER,))
        response, _ = await self.request("GET", APP)
        self.assertNoCors(response)
        response, _ = await self.preflight(OTHER)
        self.assertEqual(response.code, 204)
        self.assertEqual(self.reads, 4)
        self.assertEqual(len(self.inner.calls), 3)


def _bytes(value: str | bytes) -> bytes:
    return value.encode("latin-1") if isinstance(value, str) else value
