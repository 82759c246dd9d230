"""
Tests for L{llmux.web.resource}: the root's routing, llmux's own endpoints
and the L{Site}.
"""

from __future__ import annotations

import json
from typing import Any

import treq
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter
from treq.client import HTTPClient
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.resource import Resource
from twisted.web.server import Site

from llmux.config import Config, ModelConfig
from llmux.metrics import Metrics
from llmux.settings import Settings
from llmux.web.resource import LlmuxSite, buildRoot, makeSite
from tests.test_web_proxy import Backend, FakeSwitcher, TrackingFactory, portOf, reactor


def _model(name: str, port: int) -> ModelConfig:
    return ModelConfig(name=name, port=port, wake="true", sleep="true", alive="true")


class RootTests(TestCase):
    """
    llmux's own endpoints answer by exact path; every other request goes to
    the proxy, with its target unchanged.
    """

    timeout = 10

    def setUp(self) -> None:
        self.backend = Backend("alpha")
        backendPort = self.listen(Site(self.backend))
        # Config order is not sorted order.
        self.config = Config(
            models=(_model("zeta", 1), _model("alpha", backendPort), _model("mid", 2))
        )
        self.switcher = FakeSwitcher({"alpha"}, self.config.modelNames)
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "llmux_test_requests", "Requests seen by the test", registry=self.registry
        )
        backendPool = HTTPConnectionPool(reactor, persistent=True)
        self.addCleanup(backendPool.closeCachedConnections)
        root = buildRoot(
            self.switcher,
            Settings(self.config),
            Agent(reactor, pool=backendPool),
            Metrics(self.registry),
            reactor,
        )
        self.port = self.listen(makeSite(root))
        self.http = HTTPClient(
            Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))
        )

    def listen(self, site: Site) -> int:
        tracker = TrackingFactory(site)
        port = reactor.listenTCP(0, tracker, interface="127.0.0.1")
        self.addCleanup(tracker.closeAll)
        self.addCleanup(port.stopListening)
        return portOf(port)

    def request(self, method: str, path: str, **kwargs: Any) -> Deferred[Any]:
        return self.http.request(
            method, f"http://127.0.0.1:{self.port}{path}", **kwargs
        )

    async def test_models(self) -> None:
        """
        C{GET /v1/models} lists the configured models in OpenAI's form,
        sorted by id.
        """
        response = await self.request("GET", "/v1/models")
        self.assertEqual(response.code, 200)
        self.assertEqual(
            response.headers.getRawHeaders(b"content-type"), [b"application/json"]
        )
        self.assertEqual(
            json.loads(await treq.content(response)),
            {
                "object": "list",
                "data": [
                    {
                        "id": name,
                        "object": "model",
                        "created": 0,
                        "owned_by": "llmux",
                        "aliases": [],
                        "status": {"value": status},
                    }
                    for name, status in (
                        ("alpha", "loaded"),
                        ("mid", "unloaded"),
                        ("zeta", "unloaded"),
                    )
                ],
            },
        )
        self.assertEqual(self.switcher.calls, [])

    async def test_modelsWithQuery(self) -> None:
        """
        A query string does not change the route.
        """
        response = await self.request("GET", "/v1/models?limit=1")
        body = json.loads(await treq.content(response))
        self.assertEqual(len(body["data"]), 3)

    async def test_health(self) -> None:
        """
        C{GET /health} says llmux is up.
        """
        response = await self.request("GET", "/health")
        self.assertEqual(response.code, 200)
        self.assertEqual(
            response.headers.getRawHeaders(b"content-type"), [b"application/json"]
        )
        self.assertEqual(json.loads(await treq.content(response)), {"status": "ok"})

    async def test_headHealth(self) -> None:
        """
        C{HEAD} on an own endpoint is answered like C{GET}, without the body.
        """
        response = await self.request("HEAD", "/health")
        self.assertEqual(response.code, 200)
        self.assertEqual(await treq.content(response), b"")

    async def test_metrics(self) -> None:
        """
        C{GET /metrics} exposes the given registry in the Prometheus text
        format.
        """
        self.requests.inc(3)
        response = await self.request("GET", "/metrics")
        self.assertEqual(response.code, 200)
        self.assertEqual(
            response.headers.getRawHeaders(b"content-type"),
            [CONTENT_TYPE_LATEST.encode()],
        )
        body = await treq.content(response)
        self.assertIn(b"\nllmux_test_requests_total 3.0\n", body)

    async def test_wrongMethod(self) -> None:
        """
        Other methods on llmux's own endpoints get a JSON 405 with C{Allow}.
        """
        for method, path in [
            ("POST", "/v1/models"),
            ("DELETE", "/health"),
            ("PUT", "/metrics"),
        ]:
            response = await self.request(method, path, data=b'{"model": "alpha"}')
            self.assertEqual(response.code, 405, path)
            self.assertEqual(
                response.headers.getRawHeaders(b"allow"), [b"GET, HEAD"], path
            )
            self.assertEqual(
                response.headers.getRawHeaders(b"content-type"),
                [b"application/json"],
            )
            self.assertEqual(
                json.loads(await treq.content(response)),
                {
                    "error": {
                        "message": f"Method not allowed: {method}",
                        "type": "llmux_error",
                    }
                },
            )
        self.assertEqual(self.switcher.calls, [])

    async def test_otherPathsAreProxied(self) -> None:
        """
        Every other path, near misses of llmux's own included, goes to the
        backend with the request target exactly as sent.
        """
        for path in [
            "/",
            "/v1/chat/completions",
            "/v1/models/foo",
            "/v1/models/",
            "/health/",
            "/metrics/x",
            "/anything?x=1&y=%2F",
            "/a%2Fb//c",
        ]:
            response = await self.request("POST", path, data=b'{"model": "alpha"}')
            echo = json.loads(await treq.content(response))
            self.assertEqual((echo["backend"], echo["uri"]), ("alpha", path))
        self.assertEqual(self.switcher.calls, ["alpha"] * 8)

    async def test_unknownModelOnProxiedPath(self) -> None:
        """
        The proxy's errors come through the root unchanged.
        """
        response = await self.request("POST", "/v1/x", data=b'{"model": "zzz"}')
        self.assertEqual(response.code, 404)
        self.assertEqual(
            json.loads(await treq.content(response))["error"]["message"],
            "Model not found: zzz",
        )


class SiteTests(SynchronousTestCase):
    """
    L{makeSite} builds a quiet L{Site}.
    """

    def test_quiet(self) -> None:
        """
        No tracebacks in error pages, no factory chatter, and no access log
        line per request unless asked for.
        """
        site = makeSite(Resource())
        self.assertIsInstance(site, LlmuxSite)
        self.assertFalse(site.displayTracebacks)
        self.assertFalse(site.noisy)
        logged: list[object] = []
        site._logFormatter = lambda timestamp, request: "line"
        site._logFile = _ListFile(logged)
        site.log(object())  # type: ignore[arg-type]
        self.assertEqual(logged, [])

    def test_accessLog(self) -> None:
        """
        With C{accessLog=True}, the site logs requests as L{Site} does.
        """
        site = makeSite(Resource(), accessLog=True)
        calls: list[object] = []
        site._logFormatter = lambda timestamp, request: "line"
        site._logFile = _ListFile(calls)
        site.log(object())  # type: ignore[arg-type]
        self.assertEqual(calls, ["line\n"])


class _ListFile:
    def __init__(self, lines: list[object]) -> None:
        self.lines = lines

    def write(self, line: str) -> None:
        self.lines.append(line)

    def close(self) -> None:
        pass
