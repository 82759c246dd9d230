"""
Tests for L{llmux.web.limits} (what a client may send, and the JSON answers
when it sends something else) and for the proxy's upstream timeout.

The limits are tested on a raw channel: bytes are fed to the channel the
site builds, over an in-memory transport, on a L{Clock}, so every test can
say exactly how much of a request had arrived when llmux answered.
"""

from __future__ import annotations

import json
from typing import Any

import attrs
import treq
from prometheus_client import CollectorRegistry
from twisted.internet.defer import CancelledError
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import Agent, HTTPConnectionPool, ResponseNeverReceived
from twisted.web.resource import Resource
from twisted.web.server import Request
from zope.interface import implementer

from llmux.config import Config, ModelConfig, parseConfig
from llmux.metrics import Metrics
from llmux.settings import Settings
from llmux.web.errors import errorBody, errorResponse
from llmux.web.limits import (
    LINGER_SECS,
    LlmuxChannel,
    LlmuxRequest,
    RequestLimits,
)
from llmux.web.proxy import ProxyResource
from llmux.web.resource import LlmuxSite, makeSite
from tests.test_web_proxy import ProxyTestCase, reactor

from .test_switcher import CapturedEvents

LIMIT = 1000
TIMEOUT = 10.0


# --- helpers ------------------------------------------------------------------


@implementer(ITCPTransport)
class TCPStringTransport(StringTransport):
    """
    An in-memory transport that, like a TCP one, can close its sending side
    alone.

    @ivar writeClosed: whether L{loseWriteConnection} was called.
    @ivar aborted: whether L{abortConnection} was called.
    """

    writeClosed = False
    aborted = False

    def loseWriteConnection(self) -> None:
        self.writeClosed = True

    def setTcpNoDelay(self, enabled: bool) -> None:
        pass

    def getTcpNoDelay(self) -> bool:
        return True

    def setTcpKeepAlive(self, enabled: bool) -> None:
        pass

    def getTcpKeepAlive(self) -> bool:
        return False

    def abortConnection(self) -> None:
        self.aborted = True
        super().abortConnection()


class Recorder(Resource):
    """
    A leaf that records what it was asked and answers C{ok}.

    @ivar requests: each request rendered, with its body read.
    @ivar explode: whether to raise instead.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[Request, bytes]] = []
        self.explode = False

    def render(self, request: Request) -> bytes:
        assert request.content is not None
        self.requests.append((request, request.content.read()))
        if self.explode:
            request.setHeader(b"X-Half-Done", b"yes")
            raise ZeroDivisionError("boom")
        return b"ok"


def head(
    method: bytes = b"POST",
    path: bytes = b"/v1/chat/completions",
    headers: dict[bytes, bytes] | None = None,
) -> bytes:
    """
    A request head, ending with its blank line.
    """
    lines = [method + b" " + path + b" HTTP/1.1", b"Host: llmux"]
    lines += [name + b": " + value for name, value in (headers or {}).items()]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def chunk(data: bytes) -> bytes:
    """
    One chunk of a chunked body.
    """
    return b"%x\r\n%s\r\n" % (len(data), data)


def parseResponse(raw: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
    """
    The status, headers (lower-case names) and body of one HTTP response
    with a C{Content-Length}.
    """
    headPart, _, rest = raw.partition(b"\r\n\r\n")
    statusLine, *headerLines = headPart.split(b"\r\n")
    headers = {}
    for line in headerLines:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get(b"content-length", b"0"))
    return int(statusLine.split(b" ")[1]), headers, rest[:length]


class ChannelTestCase(SynchronousTestCase):
    """
    An L{LlmuxSite} with small limits over a L{Recorder}, on a L{Clock}.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.resource = Recorder()
        self.registry = CollectorRegistry()
        self.site = makeSite(
            self.resource,
            maxBodyBytes=LIMIT,
            bodyTimeoutSecs=TIMEOUT,
            metrics=Metrics(self.registry),
            clock=self.clock,
        )
        # Cleanups run last to first: this one after every disconnect.
        self.addCleanup(self.assertNoTimers)

    def assertNoTimers(self) -> None:
        """
        Every connection is gone, and no timer is left behind.
        """
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def connect(self, tcp: bool = True) -> tuple[LlmuxChannel, StringTransport]:
        """
        A new connection to the site.

        @param tcp: whether the transport can half-close, like TCP.
        """
        channel = self.site.buildProtocol(None)
        assert isinstance(channel, LlmuxChannel)
        transport = TCPStringTransport() if tcp else StringTransport()
        channel.makeConnection(transport)
        self.addCleanup(self.disconnect, channel)
        return channel, transport

    def disconnect(self, channel: LlmuxChannel) -> None:
        """
        Lose the connection, if it is still there.
        """
        if channel.transport is not None:
            channel.connectionLost(Failure(ConnectionError("test over")))

    def assertRefused(
        self, transport: StringTransport, status: int, message: str
    ) -> None:
        """
        The connection got exactly one answer, a JSON error that closes it.
        """
        code, headers, body = parseResponse(transport.value())
        self.assertEqual(code, status)
        self.assertEqual(headers[b"content-type"], b"application/json")
        self.assertEqual(headers[b"connection"], b"close")
        self.assertEqual(json.loads(body), json.loads(errorBody(message)))
        self.assertEqual(transport.value(), errorResponse(status, message))

    def answered(self, status: int) -> float:
        """
        Requests counted with model C{none} and C{status}.
        """
        value = self.registry.get_sample_value(
            "llmux_requests_total", {"model": "none", "status": str(status)}
        )
        return value or 0.0


# --- body size ------------------------------------------------------------------


class BodySizeTests(ChannelTestCase):
    """
    A body over C{maxBodyBytes} is refused with a 413 as soon as llmux knows,
    never read in full, never rendered.
    """

    def test_contentLengthOverLimit(self) -> None:
        """
        A C{Content-Length} over the limit is refused right after the head,
        before any body byte; the sending side closes and, after the linger
        time, the connection.
        """
        events = CapturedEvents(self)
        channel, transport = self.connect()
        channel.dataReceived(head(headers={b"Content-Length": b"%d" % (LIMIT + 1,)}))
        self.assertRefused(
            transport, 413, f"Request body too large: limit is {LIMIT} bytes"
        )
        [refused] = events.named("request_refused")
        peer = transport.getPeer()
        self.assertEqual(
            (refused["peer"], refused["status"]), (f"{peer.host}:{peer.port}", 413)
        )
        assert isinstance(transport, TCPStringTransport)
        self.assertTrue(transport.writeClosed)
        self.assertFalse(transport.aborted)
        self.assertEqual(self.resource.requests, [])
        self.assertEqual(self.answered(413), 1)
        self.clock.advance(LINGER_SECS)
        self.assertTrue(transport.aborted)

    def test_contentLengthHuge(self) -> None:
        """
        A 100 GB C{Content-Length} with a little body: answered at once; the
        body bytes that follow are dropped without a second answer.
        """
        channel, transport = self.connect()
        channel.dataReceived(
            head(headers={b"Content-Length": b"%d" % (100 << 30,)}) + b"x" * 500
        )
        channel.dataReceived(b"y" * 5000)
        channel.dataReceived(b"GET / HTTP/1.1\r\n\r\n")
        self.assertRefused(
            transport, 413, f"Request body too large: limit is {LIMIT} bytes"
        )
        self.assertEqual(self.resource.requests, [])

    def test_contentLengthAtLimit(self) -> None:
        """
        A body of exactly the limit is accepted and rendered.
        """
        channel, transport = self.connect()
        body = b"x" * LIMIT
        channel.dataReceived(head(headers={b"Content-Length": b"%d" % (LIMIT,)}) + body)
        [(request, received)] = self.resource.requests
        self.assertEqual(received, body)
        self.assertIn(b"200 OK", transport.value())

    def test_chunkedOverLimit(self) -> None:
        """
        A chunked body is refused when its bytes pass the limit, although
        its end has not arrived; the chunks within the limit were not
        enough to render it.
        """
        channel, transport = self.connect()
        channel.dataReceived(head(headers={b"Transfer-Encoding": b"chunked"}))
        channel.dataReceived(chunk(b"x" * (LIMIT - 10)))
        self.assertEqual(transport.value(), b"")
        channel.dataReceived(chunk(b"x" * 11))
        self.assertRefused(
            transport, 413, f"Request body too large: limit is {LIMIT} bytes"
        )
        channel.dataReceived(chunk(b"x" * 50) + b"0\r\n\r\n")
        self.assertEqual(self.resource.requests, [])
        self.assertEqual(self.answered(413), 1)

    def test_chunkedWithinLimit(self) -> None:
        """
        A chunked body within the limit is rendered whole.
        """
        channel, transport = self.connect()
        channel.dataReceived(head(headers={b"Transfer-Encoding": b"chunked"}))
        channel.dataReceived(chunk(b"a" * 600) + chunk(b"b" * 400) + b"0\r\n\r\n")
        [(request, received)] = self.resource.requests
        self.assertEqual(received, b"a" * 600 + b"b" * 400)

    def test_chunkedEndAfterRefusal(self) -> None:
        """
        A chunked body whose end arrives in the same read as the chunk that
        passed the limit is still not rendered.
        """
        channel, transport = self.connect()
        channel.dataReceived(
            head(headers={b"Transfer-Encoding": b"chunked"})
            + chunk(b"x" * (LIMIT + 1))
            + b"0\r\n\r\n"
        )
        self.assertRefused(
            transport, 413, f"Request body too large: limit is {LIMIT} bytes"
        )
        self.assertEqual(self.resource.requests, [])

    def test_expectContinue(self) -> None:
        """
        A client that asks whether to send a body too large is told 413, not
        C{100 Continue}.
        """
        channel, transport = self.connect()
        channel.dataReceived(
            head(
                headers={
                    b"Content-Length": b"%d" % (LIMIT * 10,),
                    b"Expect": b"100-continue",
                }
            )
        )
        self.assertNotIn(b"100 Continue", transport.value())
        self.assertRefused(
            transport, 413, f"Request body too large: limit is {LIMIT} bytes"
        )

    def test_expectContinueWithinLimit(self) -> None:
        """
        A client that asks whether to send a body within the limit is told
        to go on.
        """
        channel, transport = self.connect()
        channel.dataReceived(
            head(headers={b"Content-Length": b"10", b"Expect": b"100-continue"})
        )
        self.assertEqual(transport.value(), b"HTTP/1.1 100 Continue\r\n\r\n")
        channel.dataReceived(b"0123456789")
        self.assertEqual(self.resource.requests[0][1], b"0123456789")

    def test_notTCP(self) -> None:
        """
        Over a transport that cannot half-close, a refusal closes the
        connection after writing the answer.
        """
        channel, transport = self.connect(tcp=False)
        channel.dataReceived(head(headers={b"Content-Length": b"%d" % (LIMIT + 1,)}))
        self.assertRefused(
            transport, 413, f"Request body too large: limit is {LIMIT} bytes"
        )
        self.assertTrue(transport.disconnecting)

    def test_clientClosesWhileLingering(self) -> None:
        """
        A client that closes after reading the answer ends the linger early;
        no timer is left behind.
        """
        channel, transport = self.connect()
        channel.dataReceived(head(headers={b"Content-Length": b"%d" % (LIMIT + 1,)}))
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        channel.connectionLost(Failure(ConnectionError("client closed")))
        self.assertEqual(self.clock.getDelayedCalls(), [])


# --- body timeout -------------------------------------------------------------


class BodyTimeoutTests(ChannelTestCase):
    """
    A request whose head and body take longer than C{bodyTimeoutSecs} to
    arrive gets a 408.
    """

    def test_slowBody(self) -> None:
        """
        Headers and a few body bytes, then nothing: a 408 when the time is
        up, counted from the request line; nothing rendered.
        """
        channel, transport = self.connect()
        channel.dataReceived(head(headers={b"Content-Length": b"100"}))
        self.clock.advance(TIMEOUT / 2)
        channel.dataReceived(b'{"mod')
        self.clock.advance(TIMEOUT / 2 - 0.01)
        self.assertEqual(transport.value(), b"")
        self.clock.advance(0.01)
        self.assertRefused(transport, 408, "Request body not received within 10s")
        self.assertEqual(self.resource.requests, [])
        self.assertEqual(self.answered(408), 1)

    def test_slowHeaders(self) -> None:
        """
        A head that trickles in, a header at a time, is bounded too (the
        connection's idle timeout is reset by every byte).
        """
        channel, transport = self.connect()
        channel.dataReceived(b"POST /v1/completions HTTP/1.1\r\n")
        for n in range(9):
            self.clock.advance(1)
            channel.dataReceived(b"X-Slow-%d: yes\r\n" % (n,))
        self.clock.advance(1)
        self.assertRefused(transport, 408, "Request body not received within 10s")

    def test_slowRequestLine(self) -> None:
        """
        The deadline starts with a request's first byte: a request line that
        never ends gets a 408 too.
        """
        channel, transport = self.connect()
        channel.dataReceived(b"POST /v1/comp")
        self.clock.advance(TIMEOUT)
        self.assertRefused(transport, 408, "Request body not received within 10s")

    def test_silentMidRequest(self) -> None:
        """
        A client that falls silent mid-request, when the connection's idle
        timeout is shorter than the body timeout, gets a 408 saying so.
        """
        self.site.timeOut = 3
        channel, transport = self.connect()
        channel.dataReceived(head(headers={b"Content-Length": b"10"}) + b"12345")
        self.clock.advance(3)
        self.assertRefused(
            transport, 408, "Request body not received: nothing arrived for 3s"
        )
        self.assertEqual(self.answered(408), 1)

    def test_idleBetweenRequests(self) -> None:
        """
        A kept-alive connection idle between requests is closed without an
        answer, as twisted.web does.
        """
        self.site.timeOut = 3
        channel, transport = self.connect()
        channel.dataReceived(head(headers={b"Content-Length": b"2"}) + b"ok")
        transport.clear()
        self.clock.advance(3)
        self.assertEqual(transport.value(), b"")
        self.assertTrue(transport.disconnecting)
        channel.connectionLost(Failure(ConnectionError("closed")))
        self.assertEqual(self.answered(408), 0)

    def test_pipelined(self) -> None:
        """
        A second request sent right behind the first is timed from when
        llmux starts reading it, once the first is answered.
        """
        channel, transport = self.connect()
        second = head(headers={b"Content-Length": b"4"}) + b"bo"
        channel.dataReceived(head(headers={b"Content-Length": b"2"}) + b"ok" + second)
        self.assertEqual(len(self.resource.requests), 1)
        self.assertIn(b"200 OK", transport.value())
        self.clock.advance(TIMEOUT - 0.01)
        self.assertNotIn(b"408", transport.value())
        self.clock.advance(0.01)
        self.assertTrue(
            transport.value().endswith(
                errorResponse(408, "Request body not received within 10s")
            )
        )
        self.assertEqual(len(self.resource.requests), 1)

    def test_inTime(self) -> None:
        """
        A request that arrives in time is rendered, and its deadline
        cancelled.
        """
        channel, transport = self.connect()
        channel.dataReceived(head(headers={b"Content-Length": b"4"}))
        self.clock.advance(TIMEOUT - 1)
        channel.dataReceived(b"body")
        self.assertEqual(self.resource.requests[0][1], b"body")
        # Only the connection's idle timeout is left.
        assert self.site.timeOut is not None
        self.assertEqual(
            [call.getTime() for call in self.clock.getDelayedCalls()],
            [self.clock.seconds() + self.site.timeOut],
        )

    def test_eachRequestItsOwnDeadline(self) -> None:
        """
        On a kept-alive connection, each request's deadline starts with its
        own request line.
        """
        channel, transport = self.connect()
        for _ in range(3):
            channel.dataReceived(head(headers={b"Content-Length": b"2"}) + b"ok")
            self.clock.advance(TIMEOUT - 1)
        self.assertEqual(len(self.resource.requests), 3)
        self.assertEqual(transport.value().count(b"200 OK"), 3)

    def test_noTimeout(self) -> None:
        """
        With no body timeout, a slow body waits (as long as the idle
        timeout allows).
        """
        self.site.limits = attrs.evolve(self.site.limits, bodyTimeoutSecs=None)
        channel, transport = self.connect()
        channel.dataReceived(head(headers={b"Content-Length": b"4"}) + b"bo")
        self.clock.advance(TIMEOUT * 5)
        channel.dataReceived(b"dy")
        self.assertEqual(self.resource.requests[0][1], b"body")

    def test_disconnectCancels(self) -> None:
        """
        A client that goes away mid-body leaves no deadline behind.
        """
        channel, transport = self.connect()
        channel.dataReceived(head(headers={b"Content-Length": b"4"}) + b"bo")
        channel.connectionLost(Failure(ConnectionError("gone")))
        self.assertEqual(self.clock.getDelayedCalls(), [])


# --- malformed heads ----------------------------------------------------------


class MalformedHeadTests(ChannelTestCase):
    """
    What twisted.web refuses itself (with a bare 400, or by closing the
    connection) is answered in JSON.
    """

    def test_hugeHeader(self) -> None:
        """
        One 100 KB header line: 431, not a silently closed connection.
        """
        channel, transport = self.connect()
        channel.dataReceived(b"POST / HTTP/1.1\r\nX-Huge: " + b"a" * 100_000)
        self.assertRefused(
            transport,
            431,
            "Request headers too large: limit is 16384 bytes and 500 headers",
        )
        self.assertEqual(self.answered(431), 1)

    def test_headersTooLargeInTotal(self) -> None:
        """
        Headers each within the line limit but too large together: 431.
        """
        channel, transport = self.connect()
        lines = b"".join(b"X-H%d: %s\r\n" % (n, b"a" * 1000) for n in range(20))
        channel.dataReceived(b"POST / HTTP/1.1\r\n" + lines + b"\r\n")
        self.assertRefused(
            transport,
            431,
            "Request headers too large: limit is 16384 bytes and 500 headers",
        )

    def test_tooManyHeaders(self) -> None:
        """
        More headers than allowed: 431.
        """
        channel, transport = self.connect()
        lines = b"".join(b"X-%d: a\r\n" % (n,) for n in range(501))
        channel.dataReceived(b"GET / HTTP/1.1\r\n" + lines + b"\r\n")
        self.assertRefused(
            transport,
            431,
            "Request headers too large: limit is 16384 bytes and 500 headers",
        )

    def test_requestLineTooLong(self) -> None:
        """
        A request line over the line limit: 414.
        """
        channel, transport = self.connect()
        channel.dataReceived(b"GET /" + b"a" * 20_000)
        self.assertRefused(transport, 414, "Request line too long")

    def test_malformed(self) -> None:
        """
        Heads twisted.web cannot parse get a JSON 400, and nothing is
        rendered.
        """
        for raw in [
            b"NONSENSE\r\n\r\n",
            b"POST / HTTP/1.1\r\nNo colon here\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: ten\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        ]:
            channel, transport = self.connect()
            channel.dataReceived(raw)
            self.assertRefused(transport, 400, "Malformed request")
        self.assertEqual(self.resource.requests, [])
        self.assertEqual(self.answered(400), 4)

    def test_malformedMultipart(self) -> None:
        """
        A multipart body twisted.web cannot parse reaches the resource (it is
        not parsed into C{request.args}), so llmux, not twisted.web, answers.
        """
        channel, transport = self.connect()
        body = b"--nope\r\ngarbage"
        channel.dataReceived(
            head(
                headers={
                    b"Content-Type": b"multipart/form-data; boundary=xyz",
                    b"Content-Length": b"%d" % (len(body),),
                }
            )
            + body
        )
        [(request, received)] = self.resource.requests
        self.assertEqual((received, request.args), (body, {}))


# --- everything else ----------------------------------------------------------


class SiteTests(ChannelTestCase):
    """
    The site's defaults and its JSON answer to a resource that raises.
    """

    def test_defaults(self) -> None:
        """
        L{makeSite}'s defaults are the config's defaults.
        """
        config = parseConfig({"models": {"a": _modelTable()}})
        site = makeSite(Resource())
        self.assertEqual(
            site.limits,
            RequestLimits(
                maxBodyBytes=config.max_body_bytes,
                bodyTimeoutSecs=config.body_timeout_secs,
            ),
        )
        self.assertIs(site.requestFactory, LlmuxRequest)
        self.assertIsInstance(site.buildProtocol(None), LlmuxChannel)
        self.assertIsInstance(site, LlmuxSite)

    def test_resourceRaises(self) -> None:
        """
        A resource that raises gets a JSON 500, without the headers it set,
        and the failure is logged.
        """
        self.resource.explode = True
        channel, transport = self.connect()
        channel.dataReceived(head(method=b"GET"))
        code, headers, body = parseResponse(transport.value())
        self.assertEqual(code, 500)
        self.assertEqual(headers[b"content-type"], b"application/json")
        self.assertNotIn(b"x-half-done", headers)
        self.assertEqual(body, errorBody("Internal error"))
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)


def _modelTable() -> dict[str, Any]:
    return {"port": 1, "wake": "true", "sleep": "true", "alive": "true"}


# --- the upstream timeout -----------------------------------------------------


class ClockedProxyTestCase(ProxyTestCase):
    """
    L{ProxyTestCase}, with the proxy's timer on a L{Clock} and the
    upstream timeout set to C{upstreamTimeout}; the network is real
    (loopback).
    """

    upstreamTimeout: float | None = 5.0

    def setUp(self) -> None:
        super().setUp()
        self.clock = Clock()
        config = attrs.evolve(self.config, upstream_timeout_secs=self.upstreamTimeout)
        pool = HTTPConnectionPool(reactor, persistent=False)
        proxy = ProxyResource(
            self.switcher,
            Settings(config),
            Agent(reactor, pool=pool),
            self.metrics,
            self.clock,
        )
        self.port = self.listen(makeSite(proxy))


class UpstreamTimeoutTests(ClockedProxyTestCase):
    """
    A backend that sends no response headers within C{upstream_timeout_secs}
    gets a 504; the timer is disarmed on every other path.
    """

    async def test_noHeaders(self) -> None:
        """
        A backend that never answers: 504 with a message naming the limit
        once the clock passes it; the backend connection is closed and the
        slot released.
        """
        backend = self.backends["beta"]
        arrived = backend.hanging.wait()
        disconnected = backend.disconnects.wait()
        requesting = self.post("/hang", "beta")
        await arrived
        self.clock.advance(4.9)
        self.assertNoResult(requesting)
        self.clock.advance(0.1)
        response = await requesting
        code, body, contentTypes = await self.errorOf(response)
        self.assertEqual((code, contentTypes), (504, [b"application/json"]))
        self.assertEqual(body, errorBody("Backend timed out: no response within 5s"))
        await disconnected
        [slot] = self.switcher.slots
        await slot.released
        self.assertEqual(
            self.metrics.registry.get_sample_value(
                "llmux_requests_total", {"model": "beta", "status": "504"}
            ),
            1,
        )

    async def test_headersInTime(self) -> None:
        """
        Headers in time disarm the timer: a body that takes longer than the
        limit streams to its end.
        """
        response = await self.post("/stream?count=3&delay=0.05", "alpha")
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(60)
        body = await treq.content(response)
        self.assertTrue(body.endswith(b"data: [DONE]\n\n"))

    async def test_clientGone(self) -> None:
        """
        A client that goes away before the headers disarms the timer.
        """
        backend = self.backends["beta"]
        arrived = backend.hanging.wait()
        disconnected = backend.disconnects.wait()
        requesting = self.post("/hang", "beta")
        await arrived
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        requesting.cancel()
        await self.assertFailure(requesting, ResponseNeverReceived, CancelledError)
        await disconnected
        [slot] = self.switcher.slots
        await slot.released
        self.assertEqual(self.clock.getDelayedCalls(), [])

    async def test_refused(self) -> None:
        """
        A refused connection is still a 502, and disarms the timer.
        """
        response = await self.post("/v1/x", "ghost")
        code, body, _ = await self.errorOf(response)
        self.assertEqual(code, 502)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class NoUpstreamTimeoutTests(ClockedProxyTestCase):
    """
    With C{upstream_timeout_secs: null}, no timer is armed.
    """

    upstreamTimeout = None

    async def test_noHeaders(self) -> None:
        """
        A backend that never answers is waited for, until the client gives
        up.
        """
        backend = self.backends["beta"]
        arrived = backend.hanging.wait()
        disconnected = backend.disconnects.wait()
        requesting = self.post("/hang", "beta")
        await arrived
        self.assertEqual(self.clock.getDelayedCalls(), [])
        requesting.cancel()
        await self.assertFailure(requesting, ResponseNeverReceived, CancelledError)
        await disconnected
        [slot] = self.switcher.slots
        await slot.released

    def test_configDefault(self) -> None:
        """
        The config's default, which L{ProxyResource} reads, is 10 minutes.
        """
        config = Config(models=(ModelConfig("m", 1, "true", "true", "true"),))
        self.assertEqual(config.upstream_timeout_secs, 600.0)
