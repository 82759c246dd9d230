"""
Tests for L{llmux.web.client}: how llmux connects to backends and sends
request bodies.
"""

from __future__ import annotations

from treq.testing import RequestTraversalAgent
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
)
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import URI
from twisted.web.iweb import IBodyProducer
from twisted.web.resource import Resource
from twisted.web.server import Request
from zope.interface.verify import verifyObject

from llmux.web.client import (
    POOL_IDLE_PER_BACKEND,
    POOL_IDLE_SECS,
    BackendEndpoints,
    BytesProducer,
    backendAgent,
    backendClient,
)


class BackendEndpointsTests(SynchronousTestCase):
    """
    Backends named by IP address are connected to directly, with no name
    resolution (and so no resolver thread).
    """

    def endpointFor(self, url: bytes) -> object:
        return BackendEndpoints(MemoryReactorClock()).endpointForURI(URI.fromBytes(url))

    def test_ipv4(self) -> None:
        endpoint = self.endpointFor(b"http://127.0.0.1:8001/v1/models")
        assert isinstance(endpoint, TCP4ClientEndpoint)
        self.assertEqual((endpoint._host, endpoint._port), ("127.0.0.1", 8001))

    def test_ipv6(self) -> None:
        endpoint = self.endpointFor(b"http://[::1]:8001/v1/models")
        assert isinstance(endpoint, TCP6ClientEndpoint)
        self.assertEqual((endpoint._host, endpoint._port), ("::1", 8001))

    def test_hostname(self) -> None:
        """
        A host name is still resolved, by the usual endpoint.
        """
        endpoint = self.endpointFor(b"http://localhost:8001/")
        self.assertIsInstance(endpoint, HostnameEndpoint)

    def test_agentConnectsDirectly(self) -> None:
        """
        The backend agent opens a TCP connection to the URL's address
        straight away, on its pool's settings.
        """
        reactor = MemoryReactorClock()
        agent, pool = backendAgent(reactor)
        agent.request(b"GET", b"http://127.0.0.1:8001/health")
        [(host, port, *_)] = reactor.tcpClients
        self.assertEqual((host, port), ("127.0.0.1", 8001))
        self.assertEqual(pool.maxPersistentPerHost, POOL_IDLE_PER_BACKEND)
        self.assertEqual(pool.cachedConnectionTimeout, POOL_IDLE_SECS)
        self.assertTrue(pool.persistent)


class BytesProducerTests(SynchronousTestCase):
    """
    L{BytesProducer} writes the whole body at once.
    """

    def test_writesAtOnce(self) -> None:
        producer = BytesProducer(b'{"model": "a"}')
        verifyObject(IBodyProducer, producer)
        self.assertEqual(producer.length, 14)
        transport = StringTransport()
        done = producer.startProducing(transport)
        self.assertEqual(transport.value(), b'{"model": "a"}')
        self.assertIsNone(self.successResultOf(done))


class _CookieBackend(Resource):
    """
    Sets a cookie on every answer and records the cookies it was sent.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.cookies: list[bytes | None] = []
        self.bodies: list[bytes] = []

    def render_POST(self, request: Request) -> bytes:
        self.cookies.append(request.getHeader(b"cookie"))
        assert request.content is not None
        self.bodies.append(request.content.read())
        request.addCookie(b"session", b"backend-secret", path=b"/")
        return b"ok"


class BackendClientTests(SynchronousTestCase):
    """
    L{backendClient} sends bodies whole and keeps no cookies between requests.
    """

    def test_bodyAndNoCookiesCarried(self) -> None:
        """
        A cookie a backend set on one request is not sent with the next,
        though one client sends both (llmux has one for all requests). The
        body arrives whole.
        """
        backend = _CookieBackend()
        agent = RequestTraversalAgent(backend)
        client = backendClient(agent)
        for body in (b'{"model": "a"}', b'{"model": "b"}'):
            response = self.successResultOf(
                client.request(
                    "POST", "http://127.0.0.1:8001/v1/completions", data=body
                )
            )
            self.assertEqual(response.code, 200)
            agent.flush()
        self.assertEqual(backend.cookies, [None, None])
        self.assertEqual(backend.bodies, [b'{"model": "a"}', b'{"model": "b"}'])

    def test_clientCookieForwarded(self) -> None:
        """
        The Cookie header a client sent goes to the backend as it was.
        """
        backend = _CookieBackend()
        agent = RequestTraversalAgent(backend)
        self.successResultOf(
            backendClient(agent).request(
                "POST",
                "http://127.0.0.1:8001/v1/completions",
                headers={"Cookie": "theirs=1"},
                data=b"{}",
            )
        )
        self.assertEqual(backend.cookies, [b"theirs=1"])
