"""
The baseline llmux is held to: a minimal Twisted + treq streaming proxy.

It is built the way llmux's proxy leaf is (see C{src/llmux/web/proxy.py}), minus
llmux's own logic: a twisted.web L{Site} without an access log whose root is
one leaf; for each request it reads the body, drops the hop-by-hop and
C{Host}/C{Content-Length}/C{Accept-Encoding} headers, sends the request with
treq (C{unbuffered=True}, C{allow_redirects=False}) through llmux's own
backend client (L{llmux.web.client}: the same pool, endpoints and body
producer), copies the response status and headers, and relays the body chunk
by chunk with the backend connection registered as the producer
(backpressure and disconnect propagation). Like llmux, it freezes its
start-up heap out of the garbage collector's sight. What it does not do, and
llmux does: find the model in the JSON body, route on it, take and release a
switcher slot, count and time requests, map errors to JSON answers. Its
L{Site} has llmux's settings (no access log, no form parsing). So the ratio
of the two is the cost of llmux's own logic.

The harness runs it with the llmux source tree first on C{PYTHONPATH}.
C{--backlog} sets its listen backlog (Twisted's default is 50); with
C{--gc-stats} it counts and times its full garbage collections and answers
C{GET /_bench/gc} with them (the scale benchmark, C{scale.py}, reads them).

Run::

    python benchmarks/treq_proxy.py --port 18910 --backend-port 18901
"""

from __future__ import annotations

import argparse
import gc
import json
import time

from twisted.internet import reactor
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IResponse
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from llmux.web.client import backendAgent, backendClient

__all__ = ["MinimalProxy", "main"]

_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
    }
)
_NOT_FORWARDED = _HOP_BY_HOP | {b"host", b"content-length", b"accept-encoding"}


class _Relay(Protocol):
    """
    Writes each chunk of the backend's body to the client as it arrives.
    """

    def __init__(self, request: Request, state: _State) -> None:
        self._request = request
        self._write = request.write
        self._state = state

    def connectionMade(self) -> None:
        self._request.registerProducer(IPushProducer(self.transport), True)

    def dataReceived(self, data: bytes) -> None:
        self._write(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._state.clientGone:
            return
        self._request.unregisterProducer()
        if reason.check(ResponseDone, PotentialDataLoss):
            self._request.finish()
        else:
            self._request.loseConnection()


class _State:
    """
    Whether the client went away.
    """

    clientGone = False


class MinimalProxy(Resource):
    """
    Forwards every request to one backend.
    """

    isLeaf = True

    def __init__(self, agent: IAgent, origin: str) -> None:
        super().__init__()
        self._agent = agent
        self._origin = origin

    def render(self, request: Request) -> int:
        """
        Forward C{request} to the backend and relay the answer.
        """
        content = request.content
        body = b""
        if content is not None:
            content.seek(0)
            body = content.read()
        headers = Headers()
        for name, values in request.requestHeaders.getAllRawHeaders():
            if name.lower() not in _NOT_FORWARDED:
                headers.setRawHeaders(name, values)
        request.defaultContentType = None
        state = _State()
        d = backendClient(self._agent).request(
            request.method.decode("ascii"),
            self._origin + request.uri.decode("ascii"),
            headers=headers,
            data=body or None,
            unbuffered=True,
            allow_redirects=False,
        )

        def clientGone(reason: Failure) -> None:
            state.clientGone = True
            d.cancel()

        def gotResponse(response: IResponse) -> None:
            request.setResponseCode(response.code, response.phrase)
            target = request.responseHeaders
            target.removeHeader(b"server")
            for name, values in response.headers.getAllRawHeaders():
                if name.lower() in _HOP_BY_HOP:
                    continue
                values = [value for value in values if value]
                if values:
                    target.setRawHeaders(name, values)
            request.write(b"")
            response.deliverBody(_Relay(request, state))

        def failed(reason: Failure) -> None:
            if state.clientGone:
                return
            request.setResponseCode(502)
            request.finish()

        request.notifyFinish().addErrback(clientGone)
        d.addCallbacks(gotResponse, failed)
        return NOT_DONE_YET


class GCStats:
    """
    Counts the process's full (generation 2) garbage collections and times
    each one, with a C{gc.callbacks} hook: the same figures llmux exposes in
    its C{/metrics} (C{python_gc_collections_total},
    C{llmux_gc_full_pause_seconds}), for the scale benchmark's baseline.
    """

    def __init__(self) -> None:
        self.pauses: list[tuple[float, float]] = []
        self._started = 0.0
        gc.callbacks.append(self._collecting)

    def _collecting(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append((time.time(), time.perf_counter() - self._started))

    def snapshot(self) -> dict[str, object]:
        """
        Collections so far per generation, and every full collection as
        C{[wall-clock end, pause seconds]}.
        """
        return {
            "collections": [stats["collections"] for stats in gc.get_stats()],
            "full_pauses": self.pauses,
        }


class GCStatsProxy(MinimalProxy):
    """
    L{MinimalProxy} that also answers C{GET /_bench/gc} with the JSON
    L{GCStats.snapshot} (C{--gc-stats}); without the flag the proxy does not
    pay even the path check.
    """

    def __init__(self, agent: IAgent, origin: str, stats: GCStats) -> None:
        super().__init__(agent, origin)
        self._stats = stats

    def render(self, request: Request) -> int:
        if request.path == b"/_bench/gc":
            request.setHeader(b"content-type", b"application/json")
            request.write(json.dumps(self._stats.snapshot()).encode())
            request.finish()
            return NOT_DONE_YET
        return super().render(request)


class QuietSite(Site):
    """
    A L{Site} set up like llmux's: no access log, no start/stop chatter, and
    no parsing of form bodies into C{request.args} (which would run every
    C{Content-Type} through the C{email} package, about 40 us a request).
    """

    noisy = False

    def __init__(self, resource: Resource) -> None:
        super().__init__(resource, parsePOSTFormSubmission=False)

    def log(self, request: Request) -> None:
        pass


def main() -> None:
    """
    Serve the minimal proxy until interrupted.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backend-port", type=int, required=True)
    parser.add_argument(
        "--backlog",
        type=int,
        default=50,
        help="listen backlog (default 50, Twisted's default)",
    )
    parser.add_argument(
        "--gc-stats",
        action="store_true",
        help="time full garbage collections; GET /_bench/gc answers them",
    )
    options = parser.parse_args()
    agent, _ = backendAgent(reactor)
    origin = f"http://127.0.0.1:{options.backend_port}"
    if options.gc_stats:
        root: MinimalProxy = GCStatsProxy(agent, origin, GCStats())
    else:
        root = MinimalProxy(agent, origin)
    site = QuietSite(root)
    reactor.listenTCP(
        options.port, site, backlog=options.backlog, interface="127.0.0.1"
    )
    gc.collect()
    gc.freeze()
    print(f"treq proxy on {options.port} -> {origin}", flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
