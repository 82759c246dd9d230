# -*- test-case-name: tests.test_web_proxy -*-
"""
The proxy leaf: every request that is not for one of llmux's own endpoints.

For each request it reads the body, finds the model, asks the switcher for a
slot on that model (waking it if need be), forwards the request with treq to
the model's backend on C{127.0.0.1:<port>} and relays the response back as
it arrives, chunk by chunk, so token streams (Server-Sent Events) are never
buffered.

The slot is given back exactly once: when the response has been handed to
the client in full, when it had to be cut short, or when the client went
away, whichever comes first. A client that goes away also stops the work it
asked for: its wait for the switcher is cancelled, or its backend request is
cancelled, or (mid-stream) the backend connection is closed through the
producer chain, so the model stops generating for nobody.

A backend gets C{upstream_timeout_secs} to send its response headers (a
504 after that); once its body flows, it may take as long as it needs.

A streaming request that has to wait for its model may get its response
started at once, with loading feedback (L{llmux.web.feedback}); from then on
the backend's body is relayed into that stream and every error becomes an
error event in it.

The code on this path runs for every request and every token, so it is kept
lean: the per-request state is one small object, headers are copied in one
pass, and the relay writes each chunk as it came, with no parsing, logging or
counting per chunk.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from time import monotonic
from typing import Any, cast
from urllib.parse import quote, urlsplit

import attrs
from treq.client import HTTPClient
from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.error import (
    ConnectError,
    ConnectionClosed,
    ConnectionRefusedError,
    DNSLookupError,
)
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import (
    RequestGenerationFailed,
    RequestNotSent,
    RequestTransmissionFailed,
    ResponseDone,
    ResponseFailed,
)
from twisted.web.http import NO_BODY_CODES, PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IResponse
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from llmux.interfaces import IBackendHealth, ISlot, ISwitcher
from llmux.logs import observer
from llmux.metrics import NO_MODEL_LABEL, UNKNOWN_MODEL_LABEL, Metrics
from llmux.settings import Settings
from llmux.web.auth import Denied, apiKey, renderDenied, scopeDenied
from llmux.web.client import backendClient
from llmux.web.errors import (
    BODY_UNREADABLE,
    INTERNAL_ERROR,
    NO_MODEL,
    backendErrorMessage,
    backendTimeoutMessage,
    describeBackendFailure,
    renderError,
    statusForError,
    writeError,
)
from llmux.web.extract import extractModel
from llmux.web.feedback import Feedback, startFeedback
from llmux.web.routing import (
    UPSTREAM_PREFIX,
    BadUpstreamPath,
    rewriteModel,
    upstreamTarget,
)

__all__ = ["ProxyResource", "forwardedRequestHeaders", "copyResponseHeaders"]

_log = Logger(observer=observer)

#: Headers that describe one connection, not the message (RFC 9110 7.6.1).
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

#: Request headers never forwarded: hop-by-hop ones; C{Host}, which the agent
#: sets for the backend; C{Content-Length}, which the agent writes itself (a
#: second one makes backends answer 400); C{Accept-Encoding}, since treq asks
#: for gzip and decodes it whatever the client said; C{Expect}, since
#: twisted.web has already answered C{100-continue} and the whole body is
#: sent at once.
_NOT_FORWARDED = _HOP_BY_HOP | {
    b"host",
    b"content-length",
    b"accept-encoding",
    b"expect",
}

#: With keys configured, a key a client sent is llmux's, not the backend's
#: (an admin key must never reach a backend).
_NOT_FORWARDED_WITH_KEY = _NOT_FORWARDED | {b"authorization", b"x-api-key"}

_NO_TOKENS: frozenset[bytes] = frozenset()

#: Failures of the backend request that mean "the backend failed before it
#: answered" (a 502), as opposed to a bug in llmux (a 500).
_BACKEND_FAILURES = (
    ConnectError,
    ConnectionClosed,
    DNSLookupError,
    RequestGenerationFailed,
    RequestNotSent,
    RequestTransmissionFailed,
    ResponseFailed,
    TimeoutError,
)

#: Bytes left as they are when a request target that is not ASCII is
#: percent-encoded: every printable ASCII character.
_URI_SAFE = bytes(range(0x21, 0x7F))


def _connectionTokens(headers: Headers) -> frozenset[bytes]:
    """
    The header names a C{Connection} header lists, lower-cased.
    """
    values = headers.getRawHeaders(b"connection")
    if not values:
        return _NO_TOKENS
    return frozenset(
        token.strip().lower() for value in values for token in value.split(b",")
    )


def forwardedRequestHeaders(
    headers: Headers, withheld: frozenset[bytes] = _NOT_FORWARDED
) -> Headers:
    """
    The headers of a client's request as they go to the backend: all of
    them except C{withheld} (by default C{Host}, C{Content-Length},
    C{Accept-Encoding}, C{Expect} and the hop-by-hop headers) and any header
    named in C{Connection}.
    """
    forwarded = Headers()
    setRawHeaders = forwarded.setRawHeaders
    named = _connectionTokens(headers)
    for name, values in headers.getAllRawHeaders():
        lower = name.lower()
        if lower in withheld or lower in named:
            continue
        setRawHeaders(name, values)
    return forwarded


def copyResponseHeaders(source: Headers, target: Headers, cors: bool = False) -> None:
    """
    Copy a backend response's headers onto the client's response, minus the
    hop-by-hop ones and minus empty values; with C{cors} (llmux's own CORS
    is on, L{llmux.web.cors}), minus its C{Access-Control-*} headers, and
    its C{Vary} added to llmux's.

    The agent has already taken C{Connection}, C{Content-Length},
    C{Transfer-Encoding} and the like out of C{source} (and with them the
    list of names C{Connection} gave). Empty values are dropped because treq
    leaves an empty C{Content-Encoding} on every response that had none.
    """
    setRawHeaders = target.setRawHeaders
    for name, values in source.getAllRawHeaders():
        lower = name.lower()
        if lower in _HOP_BY_HOP:
            continue
        if b"" in values:
            values = [value for value in values if value]
            if not values:
                continue
        if cors and (lower == b"vary" or lower.startswith(b"access-control-")):
            _keepCors(target, lower, values)
            continue
        setRawHeaders(name, values)


def _keepCors(target: Headers, name: bytes, values: Sequence[bytes]) -> None:
    """
    llmux answers for CORS: a backend's own C{Access-Control-*} headers are
    dropped, and its C{Vary} is added to llmux's.
    """
    if name == b"vary":
        target.setRawHeaders(name, [*target.getRawHeaders(name, []), *values])


def _requestTarget(uri: bytes) -> str:
    """
    The path and query to ask the backend for, as the client sent them.

    @param uri: the request target of the client's request line.
    """
    if not uri.startswith(b"/"):
        # The absolute form (GET http://host/path HTTP/1.1): keep path+query.
        parts = urlsplit(uri)
        uri = (parts.path or b"/") + (b"?" + parts.query if parts.query else b"")
    try:
        return uri.decode("ascii")
    except UnicodeDecodeError:
        # Raw non-ASCII bytes in the request line: percent-encode just those.
        return quote(uri, safe=_URI_SAFE)


class ProxyResource(Resource):
    """
    The leaf that forwards a request to the backend of the model it names:
    in its body, or in its path under C{/upstream/<model>/}.
    """

    isLeaf = True

    def __init__(
        self,
        switcher: ISwitcher,
        settings: Settings,
        agent: IAgent,
        metrics: Metrics,
        clock: IReactorTime | None = None,
        health: IBackendHealth | None = None,
    ) -> None:
        """
        @param switcher: makes models ready and hands out slots on them.
        @param settings: the configured models, their ports and names, read
            per request.
        @param agent: the agent backend requests go through: an
            L{twisted.web.client.Agent} over a persistent
            L{twisted.web.client.HTTPConnectionPool} that the caller owns
            (and closes on shutdown).
        @param metrics: where requests are counted.
        @param clock: times the wait for a backend's response headers
            (C{upstream_timeout_secs}); the global reactor if C{None}.
        @param health: told of backends that refuse or drop connections
            before answering; without it, such a request simply fails.
        """
        super().__init__()
        if clock is None:
            from twisted.internet import reactor

            clock = cast(IReactorTime, reactor)
        self._switcher = switcher
        self._settings = settings
        self._health = health
        self._client = backendClient(agent)
        self._metrics = metrics
        self._clock = clock

    def render(self, request: Request) -> bytes | int:
        """
        Proxy a request of any method. Every answer llmux makes itself is a
        JSON error; nothing escapes to twisted.web's HTML error page.
        """
        try:
            return self._render(request)
        except Exception:
            _logFailure("Proxying", request)
            if request.startedWriting:
                request.loseConnection()
                return NOT_DONE_YET
            return renderError(request, 500, INTERNAL_ERROR)

    def _render(self, request: Request) -> bytes | int:
        started = monotonic()
        content = request.content
        if content is None:
            return self._refuse(request, started, 400, BODY_UNREADABLE)
        try:
            content.seek(0)
            body = content.read()
        except (OSError, ValueError):
            return self._refuse(request, started, 400, BODY_UNREADABLE)
        settings = self._settings
        auth = settings.config.auth
        try:
            key = apiKey(auth, request) if auth.api_keys else None
        except Denied as denied:
            return self._deny(request, started, denied)
        if request.path.startswith(UPSTREAM_PREFIX):
            try:
                name, target = upstreamTarget(request.uri, settings.names)
            except BadUpstreamPath as e:
                return self._refuse(request, started, e.status, e.message)
        else:
            found = extractModel(body, request.getHeader(b"content-type"))
            if found is None:
                return self._refuse(request, started, 404, NO_MODEL)
            name, target = found, _requestTarget(request.uri)
        config = settings.names.get(name)
        if config is None:
            model, origin, metricModel = name, None, UNKNOWN_MODEL_LABEL
        else:
            model, origin, metricModel = config.name, config.origin, config.name
            if config.served_model_name is not None:
                body = rewriteModel(body, config.served_model_name)
        if key is not None:
            outOfScope = scopeDenied(key, model)
            if outOfScope is not None:
                return self._deny(request, started, outOfScope)
            self._metrics.requestByKey(key.name)

        # The backend's headers are relayed as they are: no text/html default.
        request.defaultContentType = None
        exchange = _Exchange(
            request=request,
            switcher=self._switcher,
            health=self._health,
            client=self._client,
            model=model,
            origin=origin,
            target=target,
            body=body,
            metrics=self._metrics,
            metricModel=metricModel,
            withheld=_NOT_FORWARDED_WITH_KEY if auth.keyed else _NOT_FORWARDED,
            cors=settings.config.cors.origins != (),
            started=started,
            clock=self._clock,
            upstreamTimeout=settings.config.upstream_timeout_secs,
        )
        request.notifyFinish().addErrback(exchange.clientDisconnected)
        exchange.waiting = acquiring = self._switcher.acquire(model)
        if not acquiring.called:
            # The request waits for its model: the slow path.
            exchange.feedback = startFeedback(
                settings.config.loading_feedback,
                request,
                body,
                target,
                self._switcher,
                self._clock,
                model,
                name,
            )
        acquiring.addCallbacks(exchange.gotSlot, exchange.acquireFailed).addErrback(
            exchange.internalError
        )
        return NOT_DONE_YET

    def _deny(self, request: Request, started: float, denied: Denied) -> bytes:
        """
        Answer a request refused for who sent it.
        """
        self._metrics.requestAnswered(
            NO_MODEL_LABEL, denied.status, monotonic() - started
        )
        return renderDenied(request, denied)

    def _refuse(
        self, request: Request, started: float, status: int, message: str
    ) -> bytes:
        """
        Answer a request that names no model with a JSON error.
        """
        self._metrics.requestAnswered(NO_MODEL_LABEL, status, monotonic() - started)
        return renderError(request, status, message)


def _logFailure(doing: str, request: Request, failure: Failure | None = None) -> None:
    """
    Log C{failure} (by default, the exception being handled) as
    C{"<doing> <method> <uri> failed"}.
    """
    _log.failure(
        doing + " {method} {uri} failed",
        failure,
        method=request.method.decode("latin-1"),
        uri=request.uri.decode("latin-1"),
    )


@attrs.define(eq=False)
class _Exchange:
    """
    The state of one proxied request, from the wait for a slot to the end of
    the response.

    @ivar origin: the backend's C{http://127.0.0.1:<port>}, or C{None} if the
        model is not configured (the switcher then refuses it).
    @ivar target: the path and query the backend is asked for.
    @ivar health: told when the backend refuses or drops the connection
        before answering (passive health), if anyone listens.
    @ivar body: the request body, until the backend answers (a request the
        backend never saw may be sent again).
    @ivar slot: the slot on the model, while it is held.
    @ivar waiting: the L{Deferred} this request is waiting on (for a slot,
        then for the backend's response headers), so it can be cancelled
        when the client goes away.
    @ivar clientGone: whether the client's connection was lost. From then
        on nothing may be written to, finished on or unregistered from
        C{request}.
    @ivar ended: whether the response has been finished or cut off.
    @ivar metricModel: the C{model} label its metrics carry.
    @ivar withheld: the request headers not forwarded to the backend.
    @ivar cors: whether llmux's CORS is on (the backend's own CORS headers
        give way to llmux's).
    @ivar started: when the request arrived (L{time.monotonic}).
    @ivar clock: times the wait for the backend's response headers.
    @ivar upstreamTimeout: seconds the backend has to send its response
        headers, from the moment llmux starts connecting; C{None} for no
        limit. The body, once it flows, has no time limit: a long
        generation is not a hung backend.
    @ivar upstreamTimer: the pending L{upstreamTimedOut} call, if any.
    @ivar timedOut: whether the backend ran out of time, so the failure
        its cancellation causes is answered with a 504, not a 502.
    @ivar retried: whether the request was already sent again once.
    @ivar feedback: the loading feedback of a streaming request that had to
        wait for its model (L{llmux.web.feedback}), if it got one. Its
        response has started: status and headers are sent, and every error
        goes into the stream as an error event.
    """

    request: Request
    switcher: ISwitcher
    health: IBackendHealth | None
    client: HTTPClient
    model: str
    origin: str | None
    target: str
    body: bytes
    metrics: Metrics
    metricModel: str
    withheld: frozenset[bytes]
    cors: bool
    started: float
    clock: IReactorTime
    upstreamTimeout: float | None
    slot: ISlot | None = None
    waiting: Deferred[Any] | None = None
    clientGone: bool = False
    ended: bool = False
    upstreamTimer: IDelayedCall | None = None
    timedOut: bool = False
    retried: bool = False
    feedback: Feedback | None = None

    def gotSlot(self, slot: ISlot) -> None:
        """
        The model is ready: forward the request to its backend.
        """
        self.waiting = None
        if self.clientGone:
            slot.release()
            return
        self.slot = slot
        if self.feedback is not None:
            self.feedback.stop()
        if self.origin is None:
            raise RuntimeError(f"switcher gave a slot on unknown model {self.model!r}")
        request = self.request
        body = self.body
        # Armed first: if treq fails at once, requestFailed disarms it.
        if self.upstreamTimeout is not None:
            self.upstreamTimer = self.clock.callLater(
                self.upstreamTimeout, self.upstreamTimedOut
            )
        self.waiting = responding = self.client.request(
            request.method.decode("ascii"),
            self.origin + self.target,
            headers=forwardedRequestHeaders(request.requestHeaders, self.withheld),
            data=body or None,
            unbuffered=True,
            allow_redirects=False,
        )
        responding.addCallbacks(self.gotResponse, self.requestFailed).addErrback(
            self.internalError
        )

    def upstreamTimedOut(self) -> None:
        """
        The backend has not sent its response headers in time: give up on
        it. Cancelling the request closes the backend connection; the
        failure that follows reaches L{requestFailed}, which answers 504.
        """
        self.upstreamTimer = None
        self.timedOut = True
        waiting = self.waiting
        if waiting is not None:
            waiting.cancel()

    def disarmUpstreamTimer(self) -> None:
        """
        The wait for the backend's headers is over, one way or another.
        """
        timer, self.upstreamTimer = self.upstreamTimer, None
        if timer is not None and timer.active():
            timer.cancel()

    def acquireFailed(self, failure: Failure) -> Failure | None:
        """
        The switcher could not make the model ready: answer with its error.
        """
        self.waiting = None
        if self.clientGone:
            return None
        error = failure.value
        status = None if error is None else statusForError(error)
        if status is None:
            return failure
        retryAfter = getattr(error, "retryAfterSecs", None)
        if retryAfter is not None and self.feedback is None:
            self.request.setHeader(b"Retry-After", b"%d" % (math.ceil(retryAfter),))
        self.answerError(status, str(error))
        return None

    def gotResponse(self, response: IResponse) -> None:
        """
        The backend answered: send its status and headers, then relay its body.
        """
        self.waiting = None
        self.disarmUpstreamTimer()
        self.body = b""
        if self.feedback is not None:
            self.relayIntoFeedback(response, self.feedback)
            return
        request = self.request
        # treq's response proxies every attribute read: read each once.
        code, length = response.code, response.length
        try:
            request.setResponseCode(code, response.phrase)
            headers = request.responseHeaders
            headers.removeHeader(b"server")
            copyResponseHeaders(response.headers, headers, self.cors)
            if (
                isinstance(length, int)
                and request.method != b"HEAD"
                and code not in NO_BODY_CODES
            ):
                headers.setRawHeaders(b"content-length", [b"%d" % (length,)])
            self.answered(code)
            request.write(b"")
        except BaseException:
            response.deliverBody(_Discard())
            raise
        response.deliverBody(_Relay(self))

    def relayIntoFeedback(self, response: IResponse, feedback: Feedback) -> None:
        """
        The backend answered a request whose stream has started: relay its
        body into it if it succeeded; otherwise send its error as an error
        event. Its status and headers can no longer be sent.
        """
        code = response.code
        self.answered(code)
        if 200 <= code < 300:
            response.deliverBody(_Relay(self))
        else:
            response.deliverBody(feedback.errorReader(self, code, response.phrase))

    def requestFailed(self, failure: Failure) -> Failure | None:
        """
        The backend failed before it answered: a 502; a 504 if llmux gave up
        waiting for it; nothing if the client went away.

        A timeout shows up as whatever cancelling the agent's request
        produces (C{ResponseNeverReceived}, C{ConnectingCancelledError}),
        hence the C{timedOut} flag rather than a check of the failure.
        """
        self.waiting = None
        self.disarmUpstreamTimer()
        if self.clientGone:
            return None
        if self.timedOut:
            assert self.upstreamTimeout is not None
            message = backendTimeoutMessage(self.upstreamTimeout)
            _log.warn(
                "Backend of {model} sent no response within {timeout}s",
                event="backend_timeout",
                model=self.model,
                timeout=self.upstreamTimeout,
            )
            self.answerError(504, message)
            return None
        if not failure.check(*_BACKEND_FAILURES):
            return failure
        _log.warn(
            "Backend of {model} failed before answering: {reason}",
            event="backend_failed",
            model=self.model,
            reason=describeBackendFailure(failure),
        )
        self.metrics.backendFailed(self.metricModel)
        if self.health is None or self.retried:
            self.badGateway(failure)
            return None
        # Passive health: the model is checked before this request is
        # answered or sent again, so neither goes to a backend known dead.
        self.retried = True
        self.giveSlotBack()
        self.waiting = checking = self.health.suspect(self.model)
        checking.addCallbacks(
            self.checked,
            self.checkFailed,
            callbackArgs=(failure,),
            errbackArgs=(failure,),
        ).addErrback(self.internalError)
        return None

    def checked(self, alive: bool, failure: Failure) -> None:
        """
        The model was checked after its backend failed this request. Send
        the request again, once, if the backend never saw it (the
        connection was refused) or the model was found dead (it is being
        woken again, and the request waits for that); otherwise answer 502.
        """
        self.waiting = None
        if self.clientGone:
            return
        if failure.check(ConnectionRefusedError) or not alive:
            _log.info(
                "Sending a request for {model} again after its backend failed",
                event="request_retried",
                model=self.model,
            )
            self.waiting = acquiring = self.switcher.acquire(self.model)
            if self.feedback is not None and not acquiring.called:
                self.feedback.resume()
            acquiring.addCallbacks(self.gotSlot, self.acquireFailed).addErrback(
                self.internalError
            )
            return
        self.badGateway(failure)

    def checkFailed(self, reason: Failure, failure: Failure) -> None:
        """
        The check could not be made (or the client left meanwhile): answer
        the backend's failure.
        """
        self.waiting = None
        if not self.clientGone:
            self.badGateway(failure)

    def badGateway(self, failure: Failure) -> None:
        """
        Answer 502 for the backend's C{failure}.
        """
        self.answerError(502, backendErrorMessage(failure))

    def answerError(self, status: int, message: str) -> None:
        """
        Answer an error of llmux's own, with C{status}: a JSON error; or, if
        the stream has started, an error event that ends it.
        """
        self.answered(status)
        if self.feedback is None:
            writeError(self.request, status, message)
        else:
            self.feedback.fail(status, message)
        self.end()

    def bodyEnded(self, reason: Failure) -> None:
        """
        The backend's body ended: finish the response if it is complete,
        otherwise cut the client's connection, so the truncation shows.
        """
        if self.clientGone or self.ended:
            return
        request = self.request
        try:
            request.unregisterProducer()
            if reason.check(ResponseDone, PotentialDataLoss):
                request.finish()
            else:
                _log.warn(
                    "Backend of {model} failed mid-response: {reason}",
                    event="backend_cut_off",
                    model=self.model,
                    reason=describeBackendFailure(reason),
                )
                request.loseConnection()
        except Exception:
            _logFailure("Ending", request)
            request.loseConnection()
        finally:
            self.end()

    def clientDisconnected(self, reason: Failure) -> None:
        """
        The client's connection was lost: stop whatever this request is
        waiting for and give the slot back. Mid-stream, the producer chain
        has already closed the backend connection.
        """
        self.clientGone = True
        waiting, self.waiting = self.waiting, None
        if waiting is not None:
            waiting.cancel()
        self.end()

    def internalError(self, failure: Failure) -> None:
        """
        A bug: log it, and answer 500 if the response has not begun, or cut
        the connection if it has.
        """
        request = self.request
        _logFailure("Proxying", request, failure)
        if self.clientGone or self.ended:
            return
        try:
            if not request.startedWriting:
                self.answered(500)
                writeError(request, 500, INTERNAL_ERROR)
            elif self.feedback is not None and request.producer is None:
                self.answered(500)
                self.feedback.fail(500, INTERNAL_ERROR)
            else:
                if request.producer is not None:
                    request.unregisterProducer()
                request.loseConnection()
        except Exception:
            _logFailure("Answering", request)
            request.loseConnection()
        finally:
            self.end()

    def answered(self, status: int) -> None:
        """
        Count the response whose status is being sent.
        """
        self.metrics.requestAnswered(
            self.metricModel, status, monotonic() - self.started
        )

    def end(self) -> None:
        """
        The response is over for this request: release the slot, if held.
        """
        self.ended = True
        self.body = b""
        self.disarmUpstreamTimer()
        if self.feedback is not None:
            self.feedback.stop()
        self.giveSlotBack()

    def giveSlotBack(self) -> None:
        """
        Release the slot, if held: at the end, or before waiting again.
        """
        slot, self.slot = self.slot, None
        if slot is not None:
            try:
                slot.release()
            except Exception:
                _log.failure("Releasing a slot on {model} failed", model=self.model)


class _Relay(Protocol):
    """
    Relays a backend response body to the client, chunk by chunk.

    The backend connection is registered as the producer of the client's
    response: a client that reads slowly pauses the backend (backpressure),
    and a client that disconnects stops it (the backend connection closes).
    """

    def __init__(self, exchange: _Exchange) -> None:
        self._exchange = exchange
        self._write = exchange.request.write

    def connectionMade(self) -> None:
        producer = IPushProducer(self.transport)
        if self._exchange.clientGone:
            producer.stopProducing()
            return
        self._exchange.request.registerProducer(producer, True)

    def dataReceived(self, data: bytes) -> None:
        self._write(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._exchange.bodyEnded(reason)


class _Discard(Protocol):
    """
    Takes a backend response body that will not be relayed and closes its
    connection, so the connection neither stays paused forever nor returns
    to the pool with a body unread.
    """

    def connectionMade(self) -> None:
        IPushProducer(self.transport).stopProducing()
