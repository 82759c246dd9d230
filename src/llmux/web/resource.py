# -*- test-case-name: tests.test_web_resource -*-
"""
The root of llmux's web tree, its own endpoints, and the L{Site} serving them.

llmux answers these paths itself: C{/v1/models}, C{/health}, C{/metrics},
C{/llmux/status}, C{/llmux/events} (L{llmux.web.events}), the dashboard at
C{/llmux/ui} with its C{/llmux/ui/dashboard.js} and C{/llmux/ui/dashboard.css}
(L{llmux.web.ui}), and the admin API under C{/llmux/models/} and
C{/llmux/reload} (L{llmux.web.admin}).
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
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorTime
from twisted.logger import globalLogPublisher
from twisted.web.http import Request as HTTPRequest
from twisted.web.iweb import IAgent
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request, Site

from llmux import __version__
from llmux.config import (
    DEFAULT_BODY_TIMEOUT_SECS,
    DEFAULT_MAX_BODY_BYTES,
    ConfigError,
)
from llmux.interfaces import IBackendHealth, ISwitcher, ModelState, ModelView
from llmux.metrics import Metrics
from llmux.settings import Settings
from llmux.web.admin import ADMIN_PREFIX, RELOAD_PATH, AdminResource, Reloader
from llmux.web.auth import Denied, keyAccess, readAccess, renderDenied
from llmux.web.cors import CorsResource
from llmux.web.errors import MethodNotAllowed
from llmux.web.events import EventHub, EventsResource
from llmux.web.limits import (
    LlmuxChannel,
    LlmuxRequest,
    RequestLimits,
)
from llmux.web.proxy import ProxyResource
from llmux.web.ui import UI_PATHS, UiResource

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
    One of llmux's own endpoints: C{GET} and C{HEAD} only, JSON 405 otherwise;
    a C{Denied} access is answered with its JSON 401 or 403.
    """

    isLeaf = True
    allowedMethods = (b"GET", b"HEAD")
    _notAllowed = MethodNotAllowed(allowedMethods)

    def render(self, request: Request) -> bytes | int:
        if request.method not in self.allowedMethods:
            return self._notAllowed.render(request)
        try:
            return self.renderGet(request)
        except Denied as denied:
            return renderDenied(request, denied)

    @abstractmethod
    def renderGet(self, request: Request) -> bytes:
        """
        The response body; set any headers on C{request}.
        """


class ModelsResource(_ReadOnlyEndpoint):
    """
    C{GET /v1/models}: the configured models in the OpenAI list form, sorted
    by id, each once, with its C{aliases} and its C{status} in llama-swap's
    shape: C{loaded} while it is up, C{loading} while it wakes, C{unloaded}
    otherwise. With keys configured, only the models the caller's key may
    use.
    """

    def __init__(self, switcher: ISwitcher, settings: Settings) -> None:
        super().__init__()
        self._switcher = switcher
        self._settings = settings

    def renderGet(self, request: Request) -> bytes:
        settings = self._settings
        key = readAccess(settings.config.auth, request)
        data = [
            {
                "id": view.name,
                "object": "model",
                "created": 0,
                "owned_by": "llmux",
                "aliases": list(_aliases(settings, view.name)),
                "status": {"value": _loadStatus(view)},
            }
            for view in sorted(self._switcher.views(), key=lambda v: v.name)
            if key is None or key.allows(view.name)
        ]
        request.setHeader(b"Content-Type", _JSON)
        return json.dumps({"object": "list", "data": data}).encode("utf-8")


def _aliases(settings: Settings, model: str) -> tuple[str, ...]:
    config = settings.model(model)
    return () if config is None else config.aliases


def _loadStatus(view: ModelView) -> str:
    if view.up:
        return "loaded"
    if view.state is ModelState.WAKING:
        return "loading"
    return "unloaded"


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

    def __init__(self, registry: CollectorRegistry, settings: Settings) -> None:
        super().__init__()
        self._registry = registry
        self._settings = settings

    def renderGet(self, request: Request) -> bytes:
        auth = self._settings.config.auth
        if auth.protect_metrics:
            keyAccess(auth, request)
        request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode("ascii"))
        return generate_latest(self._registry)


class StatusResource(_ReadOnlyEndpoint):
    """
    C{GET /llmux/status}: what the switcher is doing, as JSON: its state, the
    awake model and since when, each model's queue, in-flight requests and
    draining flag, the switch-cost estimates, the policy and its settings,
    the last switch error, and llmux's uptime and version.
    """

    def __init__(
        self, switcher: ISwitcher, clock: IReactorTime, settings: Settings
    ) -> None:
        super().__init__()
        self._switcher = switcher
        self._clock = clock
        self._settings = settings
        self._started = clock.seconds()

    def renderGet(self, request: Request) -> bytes:
        readAccess(self._settings.config.auth, request)
        request.setHeader(b"Content-Type", _JSON)
        return json.dumps(self.document()).encode("utf-8")

    def document(self) -> dict[str, Any]:
        """
        The status document (also the first event of C{/llmux/events}).
        """
        return {
            **self._switcher.status(),
            "uptime_secs": self._clock.seconds() - self._started,
            "version": __version__.public(),
        }


_ADMIN_PREFIX_LENGTH = len(ADMIN_PREFIX)


class _Root(Resource):
    """
    Routes a request by its exact path to one of llmux's own endpoints, by
    its prefix to the admin API's per-model actions, and every other request
    to the proxy leaf.
    """

    isLeaf = True

    def __init__(
        self, routes: Mapping[bytes, IResource], admin: IResource, proxy: IResource
    ) -> None:
        super().__init__()
        self._routes = dict(routes)
        self._admin = admin
        self._proxy = proxy

    def render(self, request: Request) -> bytes | int:
        path = request.path
        resource = self._routes.get(path)
        if resource is None:
            # A slice, not startswith: no call on every proxied request.
            admin = path[:_ADMIN_PREFIX_LENGTH] == ADMIN_PREFIX
            resource = self._admin if admin else self._proxy
        result: bytes | int = resource.render(request)
        return result


def buildRoot(
    switcher: ISwitcher,
    settings: Settings,
    agent: IAgent,
    metrics: Metrics,
    clock: IReactorTime,
    health: IBackendHealth | None = None,
    reload: Reloader | None = None,
) -> Resource:
    """
    The root resource of llmux's HTTP service.

    @param switcher: hands out slots on ready models.
    @param settings: the configuration in force, read per request.
    @param agent: the agent backend requests go through (see
        L{ProxyResource}).
    @param metrics: counts requests; its registry is what C{/metrics}
        exposes.
    @param clock: tells the status page llmux's uptime, and times the
        proxy's wait for backend response headers.
    @param health: told of backends that fail under the proxy.
    @param reload: reloads the config for C{POST /llmux/reload}; without
        it, the reload answers that there is no file to reload.
    """
    routes: dict[bytes, IResource] = {
        b"/v1/models": ModelsResource(switcher, settings),
        b"/health": HealthResource(),
        b"/metrics": MetricsResource(metrics.registry, settings),
    }
    status = StatusResource(switcher, clock, settings)
    routes[b"/llmux/status"] = status
    hub = EventHub(globalLogPublisher, clock)
    routes[b"/llmux/events"] = EventsResource(hub, settings, status.document)
    ui = UiResource()
    for path in UI_PATHS:
        routes[path] = ui
    admin = AdminResource(switcher, settings, reload or _noReload)
    routes[RELOAD_PATH] = admin
    proxy = ProxyResource(switcher, settings, agent, metrics, clock, health)
    return CorsResource(_Root(routes, admin, proxy), lambda: settings.config.cors)


def _noReload() -> Deferred[dict[str, Any]]:
    return fail(ConfigError(None, "llmux was not started from a config file"))


class LlmuxSite(Site):
    """
    The L{Site} llmux serves: limits on what clients send (L{RequestLimits}),
    JSON for every error including the ones twisted.web would answer
    itself, no tracebacks, no factory start/stop chatter, and no access log
    line per request unless asked for (at thousands of requests a second it
    is a cost, and twisted.web would otherwise send it to the global log).

    Its connections are L{LlmuxChannel}s, built directly rather than through
    twisted.web's default protocol factory, whose only other job is to
    switch a TLS connection to HTTP/2 when ALPN negotiates it: llmux neither
    offers HTTP/2 nor installs its C{h2} dependency.

    Form bodies are not parsed into C{request.args}: llmux never reads them
    there, parsing a large upload costs memory, and a malformed multipart
    body would make twisted.web answer a bare 400 instead of llmux's 404.

    @ivar limits: what a client may send; read by its channels and
        requests.
    @ivar metrics: where requests refused before they reach a resource are
        counted, if anywhere.
    """

    displayTracebacks = False
    noisy = False
    protocol = LlmuxChannel  # type: ignore[assignment]
    requestFactory = LlmuxRequest

    def __init__(
        self,
        resource: IResource,
        limits: RequestLimits | None = None,
        accessLog: bool = False,
        metrics: Metrics | None = None,
        clock: IReactorTime | None = None,
    ) -> None:
        """
        @param clock: times connection and body timeouts; the global
            reactor if C{None}.
        """
        super().__init__(
            resource, logPath=None, reactor=clock, parsePOSTFormSubmission=False
        )
        self.limits = limits if limits is not None else RequestLimits()
        self.metrics = metrics
        self._accessLog = accessLog

    def log(self, request: HTTPRequest) -> None:
        if self._accessLog:
            super().log(request)


def makeSite(
    root: IResource,
    maxBodyBytes: int = DEFAULT_MAX_BODY_BYTES,
    bodyTimeoutSecs: float | None = DEFAULT_BODY_TIMEOUT_SECS,
    accessLog: bool = False,
    metrics: Metrics | None = None,
    clock: IReactorTime | None = None,
) -> LlmuxSite:
    """
    The L{Site} serving C{root}.

    @param maxBodyBytes: the largest request body accepted; a larger one is
        refused with a 413 before it is read (C{max_body_bytes}).
    @param bodyTimeoutSecs: how long a request may take to arrive, from its
        first byte to the end of its body, before it is refused with a 408;
        C{None} for no limit (C{body_timeout_secs}).
    @param accessLog: whether to log one line per request (to the global
        log, in the combined log format).
    @param metrics: counts the requests refused before they reach C{root}
        (with the model label C{none}).
    @param clock: times the body timeout and the connections' idle timeout;
        the global reactor if C{None}.
    """
    limits = RequestLimits(maxBodyBytes=maxBodyBytes, bodyTimeoutSecs=bodyTimeoutSecs)
    return LlmuxSite(
        root, limits=limits, accessLog=accessLog, metrics=metrics, clock=clock
    )
