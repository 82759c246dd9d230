# -*- test-case-name: tests.test_web_resource -*-
"""
The root of llmux's web tree, its own endpoints, and the L{Site} serving them.

llmux answers four paths itself: C{/v1/models}, C{/health}, C{/metrics} and
C{/llmux/status}.
Every other request, whatever its method and path, goes to the proxy leaf
with its request target untouched. So the root does not use twisted.web's
segment-by-segment traversal: it is a leaf that looks the exact request path
up in a table and hands the request to the resource found there, or to the
proxy. One dictionary lookup per request, and C{/v1/models/foo},
C{/metrics/} or C{/} reach the backend exactly as the client sent them.

llmux's own endpoints serve C{GET} (and C{HEAD}, which twisted.web answers
from C{GET} without the body); any other method gets a JSON 405 with
C{Allow: GET, HEAD}. A C{POST /v1/models} is therefore refused, not proxied:
no OpenAI client sends one, and it names no model to route on.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Mapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from twisted.internet.interfaces import IReactorTime
from twisted.web.http import Request as HTTPRequest
from twisted.web.iweb import IAgent
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request, Site

from llmux import __version__
from llmux.config import Config
from llmux.interfaces import ISwitcher
from llmux.metrics import Metrics
from llmux.web.errors import MethodNotAllowed
from llmux.web.proxy import ProxyResource

__all__ = [
    "HealthResource",
    "LlmuxSite",
    "MetricsResource",
    "ModelsResource",
    "StatusResource",
    "buildRoot",
    "makeSite",
]

_JSON = b"application/json"


class _ReadOnlyEndpoint(Resource):
    """
    One of llmux's own endpoints: C{GET} and C{HEAD} only, JSON 405 otherwise.
    """

    isLeaf = True
    allowedMethods = (b"GET", b"HEAD")
    _notAllowed = MethodNotAllowed(allowedMethods)

    def render(self, request: Request) -> bytes | int:
        if request.method not in self.allowedMethods:
            return self._notAllowed.render(request)
        return self.renderGet(request)

    @abstractmethod
    def renderGet(self, request: Request) -> bytes:
        """
        The response body; set any headers on C{request}.
        """


class ModelsResource(_ReadOnlyEndpoint):
    """
    C{GET /v1/models}: the configured models in the OpenAI list form, sorted
    by id. The config does not change while llmux runs, so the body is made
    once.
    """

    def __init__(self, config: Config) -> None:
        super().__init__()
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "llmux"}
            for name in sorted(config.modelNames)
        ]
        self._body = json.dumps({"object": "list", "data": data}).encode("utf-8")

    def renderGet(self, request: Request) -> bytes:
        request.setHeader(b"Content-Type", _JSON)
        return self._body


class HealthResource(_ReadOnlyEndpoint):
    """
    C{GET /health}: llmux itself is up and serving (says nothing about the
    models).
    """

    _body = json.dumps({"status": "ok"}).encode("utf-8")

    def renderGet(self, request: Request) -> bytes:
        request.setHeader(b"Content-Type", _JSON)
        return self._body


class MetricsResource(_ReadOnlyEndpoint):
    """
    C{GET /metrics}: the registry in the Prometheus text format, collected
    in the reactor thread (no thread pool, unlike
    C{prometheus_client.twisted.MetricsResource}).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self._registry = registry

    def renderGet(self, request: Request) -> bytes:
        request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode("ascii"))
        return generate_latest(self._registry)


class StatusResource(_ReadOnlyEndpoint):
    """
    C{GET /llmux/status}: what the switcher is doing, as JSON: its state, the
    awake model and since when, each model's queue, in-flight requests and
    draining flag, the switch-cost estimates, the policy and its settings,
    the last switch error, and llmux's uptime and version.
    """

    def __init__(self, switcher: ISwitcher, clock: IReactorTime) -> None:
        super().__init__()
        self._switcher = switcher
        self._clock = clock
        self._started = clock.seconds()

    def renderGet(self, request: Request) -> bytes:
        status = {
            **self._switcher.status(),
            "uptime_secs": self._clock.seconds() - self._started,
            "version": __version__.public(),
        }
        request.setHeader(b"Content-Type", _JSON)
        return json.dumps(status).encode("utf-8")


class _Root(Resource):
    """
    Routes a request by its exact path to one of llmux's own endpoints, and
    every other request to the proxy leaf.
    """

    isLeaf = True

    def __init__(self, routes: Mapping[bytes, IResource], proxy: IResource) -> None:
        super().__init__()
        self._routes = dict(routes)
        self._proxy = proxy

    def render(self, request: Request) -> bytes | int:
        resource: IResource = self._routes.get(request.path, self._proxy)
        result: bytes | int = resource.render(request)
        return result


def buildRoot(
    switcher: ISwitcher,
    config: Config,
    agent: IAgent,
    metrics: Metrics,
    clock: IReactorTime,
) -> Resource:
    """
    The root resource of llmux's HTTP service.

    @param switcher: hands out slots on ready models.
    @param config: the configured models.
    @param agent: the agent backend requests go through (see
        L{ProxyResource}).
    @param metrics: counts requests; its registry is what C{/metrics}
        exposes.
    @param clock: tells the status page llmux's uptime.
    """
    routes: dict[bytes, IResource] = {
        b"/v1/models": ModelsResource(config),
        b"/health": HealthResource(),
        b"/metrics": MetricsResource(metrics.registry),
        b"/llmux/status": StatusResource(switcher, clock),
    }
    return _Root(routes, ProxyResource(switcher, config, agent, metrics))


class LlmuxSite(Site):
    """
    The L{Site} llmux serves: no tracebacks in error pages, no factory
    start/stop chatter, and no access log line per request unless asked
    for (at thousands of requests a second it is a cost, and twisted.web
    would otherwise send it to the global log).
    """

    displayTracebacks = False
    noisy = False

    def __init__(self, resource: IResource, accessLog: bool = False) -> None:
        super().__init__(resource, logPath=None)
        self._accessLog = accessLog

    def log(self, request: HTTPRequest) -> None:
        if self._accessLog:
            super().log(request)


def makeSite(root: IResource, accessLog: bool = False) -> LlmuxSite:
    """
    The L{Site} serving C{root}.

    @param accessLog: whether to log one line per request (to the global
        log, in the combined log format).
    """
    return LlmuxSite(root, accessLog=accessLog)
