# -*- test-case-name: tests.test_web_client -*-
"""
How llmux reaches its backends: one persistent connection pool, an agent
that connects straight to the backend's IP address, and the treq client the
proxy leaf sends each request with.

The proxy leaf pays for all of this on every request, so each piece is the
cheap choice for a proxy in front of C{127.0.0.1}: no name resolution (and so
no resolver thread), no idle-connection logging, and the request body written
in the same segment as the headers.
"""

from __future__ import annotations

from http.cookiejar import Cookie
from typing import Any

from treq.client import HTTPClient
from treq.cookies import IndexableCookieJar
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import HostnameEndpoint, TCP6ClientEndpoint
from twisted.internet.interfaces import IConsumer, IStreamClientEndpoint
from twisted.web.client import URI, Agent, HTTPConnectionPool, _HTTP11ClientFactory
from twisted.web.iweb import IAgent, IAgentEndpointFactory, IBodyProducer
from zope.interface import implementer

from llmux.web.cycles import BackendTCPEndpoint

__all__ = [
    "POOL_IDLE_PER_BACKEND",
    "POOL_IDLE_SECS",
    "BackendEndpoints",
    "BytesProducer",
    "QuietConnectionPool",
    "backendAgent",
    "backendClient",
]

#: Idle backend connections are dropped before this many seconds, below the
#: 5 s keep-alive of uvicorn (vLLM, SGLang): a completion POST sent on a
#: connection the backend just closed would fail, and POSTs are not retried.
POOL_IDLE_SECS = 4
#: Idle backend connections kept per model, so bursts reuse connections.
POOL_IDLE_PER_BACKEND = 64


class _QuietFactory(_HTTP11ClientFactory):
    """
    The pool's connection factory, minus the "Starting factory" and
    "Stopping factory" lines it logs for every backend connection (an open
    Twisted issue, #9330).
    """

    noisy = False


class QuietConnectionPool(HTTPConnectionPool):
    """
    An L{HTTPConnectionPool} whose connections do not log their lifecycle.
    """

    _factory = _QuietFactory


@implementer(IAgentEndpointFactory)
class BackendEndpoints:
    """
    Connects straight to the IP address a backend URL names.

    L{Agent}'s default endpoint, L{HostnameEndpoint}, resolves even
    C{127.0.0.1} with C{getaddrinfo} in the reactor's thread pool: a thread
    round trip per new backend connection, and threads in a process that
    otherwise has none (which makes every growth of the descriptor table stall
    the process; see the performance notes). Host names still work.
    """

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        """
        A TCP endpoint for C{uri}'s host and port.
        """
        host = uri.host.decode("ascii")
        if isIPAddress(host):
            return BackendTCPEndpoint(self._reactor, host, uri.port)
        if isIPv6Address(host):
            return TCP6ClientEndpoint(self._reactor, host, uri.port)
        return HostnameEndpoint(self._reactor, uri.host, uri.port)


def backendAgent(reactor: Any) -> tuple[IAgent, HTTPConnectionPool]:
    """
    The agent every backend request goes through, and its pool (which the
    service closes on shutdown).
    """
    pool = QuietConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = POOL_IDLE_PER_BACKEND
    pool.cachedConnectionTimeout = POOL_IDLE_SECS
    agent = Agent.usingEndpointFactory(reactor, BackendEndpoints(reactor), pool=pool)
    return agent, pool


@implementer(IBodyProducer)
class BytesProducer:
    """
    A request body already in memory, written whole as soon as the agent
    asks.

    treq's default, L{twisted.web.client.FileBodyProducer}, writes from a
    L{twisted.internet.task.Cooperator} on a later turn of the reactor: one
    more reactor iteration, one more send and one more backend wake-up per
    request. Written at once, the body leaves with the request's headers.
    """

    def __init__(self, body: bytes) -> None:
        self.length = len(body)
        self._body = body

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:
        consumer.write(self._body)
        return succeed(None)

    def pauseProducing(self) -> None:
        """
        Nothing to pause: the body was written in one call.
        """

    def resumeProducing(self) -> None:
        """
        Nothing to resume: the body was written in one call.
        """

    def stopProducing(self) -> None:
        """
        Nothing to stop: the body was written in one call.
        """


class _NoCookies(IndexableCookieJar):
    """
    A cookie jar that keeps no cookie: what one client's backend sets must
    never be sent on another client's request, so llmux's one treq client
    remembers none (the client's own Cookie header is forwarded as it is).
    """

    def set_cookie(self, cookie: Cookie) -> None:
        pass

    def extract_cookies(self, response: Any, request: Any) -> None:
        pass


def backendClient(agent: IAgent) -> HTTPClient:
    """
    The treq client backend requests are sent with: one for the whole
    service, since it keeps no cookies (see L{_NoCookies}), instead of a
    client (and a cookie jar) per request.
    """
    return HTTPClient(
        agent, cookiejar=_NoCookies(), data_to_body_producer=BytesProducer
    )
