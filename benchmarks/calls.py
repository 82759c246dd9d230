"""
How much Python work llmux does per request, next to the minimal treq proxy:
a deterministic measure, where CPU time on a shared machine moves by 10-20%.

Both proxies serve the same keep-alive requests over in-memory transports,
in this process, in front of one fake agent that answers at once, so no
socket, no other process and no clock is involved. The profiler counts the
Python function calls each request makes; the difference between the two is
llmux's own logic (routing on the JSON body, the switcher's slot, metrics,
request limits, timers). Run from a checkout::

    PYTHONPATH=src python benchmarks/calls.py

It prints calls per request for each proxy and the functions whose call
counts differ most, and for llmux on a residency config too (two models
awake under a C{capacity:} table). C{serve llmux|treq N} instead only serves N requests,
for counting machine instructions with valgrind: the difference between two
counts, divided by the difference in requests, is the instructions per
request, start-up cancelled out::

    PYTHONPATH=src valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        python benchmarks/calls.py serve llmux 200     # then 1200
"""

from __future__ import annotations

import cProfile
import os
import pstats
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IBodyProducer, IResponse
from twisted.web.server import Site
from zope.interface import implementer

sys.path.insert(0, str(Path(__file__).resolve().parent))

import treq_proxy  # noqa: E402

REQUESTS = 2000
CONNECTIONS = 64
BODY = b'{"model":"bench","messages":[{"role":"user","content":"Say hello."}]}'
REQUEST = (
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
    % (len(BODY), BODY)
)
ANSWER = b'{"choices":[{"message":{"role":"assistant","content":"Hello."}}]}'
#: The API key of the C{auth} variant, and its requests, which present it.
KEY = "bench-key-0123456789abcdef"
AUTH_REQUEST = REQUEST.replace(
    b"Host: 127.0.0.1\r\n",
    b"Host: 127.0.0.1\r\nAuthorization: Bearer %s\r\n" % KEY.encode(),
)


@implementer(IResponse)
class _Answer:
    """
    A backend's 200 with a JSON body, delivered as soon as it is asked for.
    """

    version = (b"HTTP", 1, 1)
    code = 200
    phrase = b"OK"
    length = len(ANSWER)
    request = None
    previousResponse = None

    def __init__(self) -> None:
        self.headers = Headers({b"content-type": [b"application/json"]})

    def deliverBody(self, protocol: Any) -> None:
        protocol.makeConnection(StringTransport())
        protocol.dataReceived(ANSWER)
        protocol.connectionLost(Failure(ResponseDone()))

    def setPreviousResponse(self, response: IResponse) -> None:
        pass


@implementer(IAgent)
class _InstantAgent:
    """
    An agent whose backend takes the body and answers at once.
    """

    def request(
        self,
        method: bytes,
        uri: bytes,
        headers: Headers | None = None,
        bodyProducer: IBodyProducer | None = None,
    ) -> Deferred[IResponse]:
        if bodyProducer is not None:
            bodyProducer.startProducing(StringTransport())
        return succeed(_Answer())


HOOKS = {"wake": "true", "sleep": "true", "alive": "true"}


def llmuxSite(agent: IAgent) -> Site:
    """
    llmux's site with one model, adopted as awake (no hook runs).
    """
    return _llmuxSite(agent, {"models": {"bench": {"port": 9, **HOOKS}}})


def residencySite(agent: IAgent) -> Site:
    """
    llmux's site with a capacity table and two models, both adopted as
    awake: C{bench}, which serves, and another beside it.
    """
    return _llmuxSite(
        agent,
        {
            "capacity": {"gpu0": 80, "gpu1": 80},
            "models": {
                "bench": {"port": 9, "resources": {"gpu0": 30}, **HOOKS},
                "resident": {"port": 10, "resources": {"gpu1": 30}, **HOOKS},
            },
        },
    )


def authSite(agent: IAgent) -> Site:
    """
    llmux's site with one model and one API key (issue 13), which every
    request presents (L{AUTH_REQUEST}).
    """
    os.environ["LLMUX_BENCH_KEY"] = KEY
    return _llmuxSite(
        agent,
        {
            "models": {"bench": {"port": 9, **HOOKS}},
            "auth": {"api_keys": [{"name": "bench", "key_env": "LLMUX_BENCH_KEY"}]},
        },
    )


#: How many dashboards the C{dashboards} variant keeps connected.
DASHBOARDS = 10


def dashboardsSite(agent: IAgent) -> Site:
    """
    llmux's site with one model and L{DASHBOARDS} clients of
    C{/llmux/events} connected (issue 14), kept open while it serves.
    """
    site = llmuxSite(agent)
    for i in range(DASHBOARDS):
        channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 20000 + i))
        transport = StringTransport()
        channel.makeConnection(transport)
        channel.dataReceived(b"GET /llmux/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert b"event: status" in transport.value(), transport.value()
    return site


def _llmuxSite(agent: IAgent, data: dict[str, Any]) -> Site:
    from llmux.config import parseConfig
    from llmux.metrics import Metrics
    from llmux.policies import buildPolicy
    from llmux.switcher import Switcher
    from llmux.testing.hooks import FakeHookRunner
    from llmux.web.resource import buildRoot, makeSite

    config = parseConfig(data)
    metrics = Metrics()
    policy = buildPolicy("fifo", config.policy)
    switcher = Switcher(config, policy, FakeHookRunner(reactor), reactor, metrics)
    metrics.watch(switcher)
    switcher.start()
    for name in config.modelNames:
        switcher.adopt(name)
    try:
        from llmux.settings import Settings

        settings: Any = Settings(config)
    except ImportError:  # a tree from before issue 13 took the config itself
        settings = config
    root = buildRoot(switcher, settings, agent, metrics, reactor)
    return makeSite(root, metrics=metrics, clock=reactor)


def treqSite(agent: IAgent) -> Site:
    """
    The minimal treq proxy's site.
    """
    return treq_proxy.QuietSite(treq_proxy.MinimalProxy(agent, "http://127.0.0.1:9"))


def serve(site: Site, requests: int, request: bytes = REQUEST) -> None:
    """
    Send C{requests} copies of C{request} over L{CONNECTIONS} keep-alive
    connections, letting the reactor's timers run between rounds as it
    would.
    """
    connections = []
    for i in range(CONNECTIONS):
        channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 10000 + i))
        transport = StringTransport()
        channel.makeConnection(transport)
        connections.append((channel, transport))
    for i in range(requests):
        channel, transport = connections[i % CONNECTIONS]
        channel.dataReceived(request)
        if i % CONNECTIONS == CONNECTIONS - 1:
            reactor.runUntilCurrent()
            answer = transport.value()
            assert answer.startswith(b"HTTP/1.1 200 ") and ANSWER in answer, answer
            transport.clear()
    for channel, _ in connections:
        channel.connectionLost(Failure(ResponseDone()))


def callsPerFunction(
    makeSite: Callable[[IAgent], Site], request: bytes = REQUEST
) -> tuple[float, Counter[str]]:
    """
    Calls per request, in total and by function, once warmed up.
    """
    site = makeSite(_InstantAgent())
    serve(site, REQUESTS, request)
    profile = cProfile.Profile()
    profile.enable()
    serve(site, REQUESTS, request)
    profile.disable()
    stats = pstats.Stats(profile)
    byFunction: Counter[str] = Counter()
    for (path, _, name), row in stats.stats.items():  # type: ignore[attr-defined]
        byFunction[f"{Path(path).name}:{name}"] += row[0]
    return stats.total_calls / REQUESTS, byFunction  # type: ignore[attr-defined]


def main() -> None:
    """
    Print calls per request for both proxies, and where they differ.
    """
    treqCalls, treqByFunction = callsPerFunction(treqSite)
    llmuxCalls, llmuxByFunction = callsPerFunction(llmuxSite)
    residentCalls, _ = callsPerFunction(residencySite)
    print(f"minimal treq proxy: {treqCalls:.0f} Python calls per request")
    print(
        f"llmux:              {llmuxCalls:.0f} Python calls per request"
        f" ({llmuxCalls / treqCalls:.2f}x)"
    )
    print(
        f"llmux, capacity:    {residentCalls:.0f} Python calls per request"
        f" ({residentCalls / treqCalls:.2f}x)"
    )
    if _hasEvents():
        watchedCalls, _ = callsPerFunction(dashboardsSite)
        print(
            f"llmux, {DASHBOARDS} dashboards:"
            f" {watchedCalls:.0f} Python calls per request"
            f" ({watchedCalls / treqCalls:.2f}x)"
        )
    if _hasAuth():
        authCalls, _ = callsPerFunction(authSite, AUTH_REQUEST)
        print(
            f"llmux, one API key: {authCalls:.0f} Python calls per request"
            f" ({authCalls / treqCalls:.2f}x)"
        )
    print("\ncalls per request, llmux minus the minimal proxy, largest first:")
    difference = Counter(llmuxByFunction)
    difference.subtract(treqByFunction)
    for function, calls in difference.most_common(20):
        print(f"  {calls / REQUESTS:+6.1f}  {function}")


def _hasEvents() -> bool:
    """
    Whether the llmux tree measured has C{/llmux/events} (issue 14).
    """
    try:
        import llmux.web.events  # noqa: F401
    except ImportError:
        return False
    return True


def _hasAuth() -> bool:
    """
    Whether the llmux tree measured has keys (issue 13).
    """
    try:
        import llmux.accessconfig  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        variant = sys.argv[2]
        makeSite = {
            "llmux": llmuxSite,
            "capacity": residencySite,
            "auth": authSite,
            "dashboards": dashboardsSite,
            "treq": treqSite,
        }[variant]
        request = AUTH_REQUEST if variant == "auth" else REQUEST
        serve(makeSite(_InstantAgent()), int(sys.argv[3]), request)
    else:
        main()
