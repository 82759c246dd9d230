# -*- test-case-name: tests.test_web_limits -*-
"""
The front door: what a client may send before llmux answers it.

twisted.web reads a request's whole head and body before it calls any
resource, so limits on the body cannot live in a resource: by then a 10 GB
upload has been written to a temporary file and a client that trickles its
body has held a connection for as long as it liked. They live here, in the
L{Request} and L{HTTPChannel} the L{llmux.web.resource.LlmuxSite} builds:

  - L{LlmuxRequest} refuses a body over the size limit with a JSON 413 as
    soon as it knows: when the head declares a larger C{Content-Length}, or
    when the bytes of a chunked body pass the limit;
  - L{LlmuxChannel} refuses a request that has not arrived in full within
    the body timeout, counted from its first byte, with a JSON 408 (a
    slowloris client, whether it trickles its request line, its headers or
    its body), and answers a client that falls silent mid-request with a
    408 too, instead of closing the connection without a word;
  - it answers a request head twisted.web cannot parse with a JSON 400,
    414 or 431 instead of twisted.web's bare C{400 Bad Request} or a
    silently closed connection.

A refused request never reaches a resource, so no hook runs and no slot is
taken for it. Refusing ends the connection: the error is written, the
sending side is closed, and whatever the client still sends is read and
dropped for L{LINGER_SECS}, so the client gets to read the answer instead of
a connection reset (the lingering close of RFC 9112 9.6).
"""

from __future__ import annotations

from functools import partial
from time import monotonic
from typing import Any

import attrs
from twisted.internet.interfaces import IDelayedCall, ITCPTransport
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.http_headers import Headers
from twisted.web.server import Request

from llmux.config import DEFAULT_BODY_TIMEOUT_SECS, DEFAULT_MAX_BODY_BYTES
from llmux.logs import addressText, observer
from llmux.metrics import NO_MODEL_LABEL, Metrics
from llmux.web.errors import (
    INTERNAL_ERROR,
    MALFORMED_REQUEST,
    REQUEST_LINE_TOO_LONG,
    bodyTimeoutMessage,
    bodyTooLargeMessage,
    errorResponse,
    headersTooLargeMessage,
    idleTimeoutMessage,
    writeError,
)

__all__ = [
    "LINGER_SECS",
    "LlmuxChannel",
    "LlmuxRequest",
    "RequestLimits",
]

_log = Logger(observer=observer)

#: How long a refused connection keeps reading (and dropping) what the client
#: still sends after the error, before it is closed outright.
LINGER_SECS = 2.0


@attrs.frozen
class RequestLimits:
    """
    What a client may send.

    @ivar maxBodyBytes: the largest request body accepted.
    @ivar bodyTimeoutSecs: how long a request may take to arrive, from its
        first byte to the end of its body; C{None} for no limit.
    """

    maxBodyBytes: int = DEFAULT_MAX_BODY_BYTES
    bodyTimeoutSecs: float | None = DEFAULT_BODY_TIMEOUT_SECS


_DEFAULT_LIMITS = RequestLimits()


def _siteLimits(channel: HTTPChannel) -> RequestLimits:
    """
    The limits of the site C{channel} belongs to, or the defaults (a channel
    built by a plain L{twisted.web.server.Site}, or none, has no limits).
    """
    limits = getattr(getattr(channel, "site", None), "limits", None)
    return limits if isinstance(limits, RequestLimits) else _DEFAULT_LIMITS


class LlmuxChannel(HTTPChannel):
    """
    An L{HTTPChannel} that times the arrival of each request, answers in
    JSON when it refuses one, and can refuse one before its body has been
    read.

    The site's C{limits} and C{metrics} are read from C{self.site}, which
    L{twisted.web.server.Site.buildProtocol} sets.

    @ivar refused: whether this connection has answered with an error and is
        closing; from then on everything the client sends is dropped.
    """

    refused = False
    _arriving = False
    _deadline: IDelayedCall | None = None
    _lingering: IDelayedCall | None = None

    @property
    def limits(self) -> RequestLimits:
        """
        The site's limits, or the defaults.
        """
        return _siteLimits(self)

    def dataReceived(self, data: bytes) -> None:
        """
        Parse C{data}, unless this connection was refused: then drop it.
        The first byte of a request starts its arrival deadline.

        No request object exists between requests (twisted.web creates one
        when the request line is complete, and forgets it once answered),
        and bytes received while one is being answered are buffered, not
        passed here, until it is done.
        """
        if self.refused:
            return
        if not self._arriving and not self.requests:
            self._arriving = True
            timeout = self.limits.bodyTimeoutSecs
            if timeout is not None:
                self._deadline = self.callLater(
                    timeout, partial(self._timedOut, timeout)
                )
        super().dataReceived(data)

    def allContentReceived(self) -> None:
        """
        The request has arrived in full, in time: stop timing it.
        """
        self._arriving = False
        self._cancelDeadline()
        super().allContentReceived()

    def _timedOut(self, timeout: float) -> None:
        self._deadline = None
        self.refuse(408, bodyTimeoutMessage(timeout), self._started())

    def timeoutConnection(self) -> None:
        """
        The connection has been idle for C{timeOut} seconds: between
        requests, close it, as twisted.web does; in the middle of one, say
        why with a 408.
        """
        if self._arriving and self.timeOut is not None:
            self.refuse(408, idleTimeoutMessage(self.timeOut), self._started())
        else:
            super().timeoutConnection()

    def refuse(self, status: int, message: str, started: float | None = None) -> None:
        """
        Answer with a JSON error and end the connection, whatever state the
        parser is in. Only the first refusal is written.

        @param started: when the refused request began (L{time.monotonic}),
            for its duration metric; C{None} if unknown.
        """
        transport = self.transport
        if self.refused or transport is None:
            return
        self.refused = True
        self._cancelDeadline()
        _log.info(
            "Refused a request from {peer}: {status} {message}",
            event="request_refused",
            peer=addressText(transport.getPeer()),
            status=status,
            message=message,
        )
        metrics: Metrics | None = getattr(getattr(self, "site", None), "metrics", None)
        if metrics is not None:
            elapsed = 0.0 if started is None else monotonic() - started
            metrics.requestAnswered(NO_MODEL_LABEL, status, elapsed)
        # Parse nothing more: LineReceiver stops when its buffer is empty,
        # and dataReceived drops what comes next.
        self.clearLineBuffer()
        self.setTimeout(None)
        transport.write(errorResponse(status, message))
        if ITCPTransport.providedBy(transport):
            # Close only our side: the answer goes out, followed by a FIN,
            # while the client's unread upload keeps being read (and dropped
            # by dataReceived). Closing both sides with bytes unread would
            # reset the connection, and a reset can destroy the answer
            # before the client reads it.
            transport.loseWriteConnection()
            self._lingering = self.callLater(LINGER_SECS, self._stopLingering)
        else:
            self.loseConnection()

    def _stopLingering(self) -> None:
        """
        The client has had its time to read the error: close for good.
        """
        self._lingering = None
        transport = ITCPTransport(self.transport, None)
        if transport is not None:
            transport.abortConnection()

    def _started(self) -> float | None:
        """
        When the request being received began, if known.
        """
        request = self.requests[-1] if self.requests else None
        return request.arrived if isinstance(request, LlmuxRequest) else None

    def lineLengthExceeded(self, line: bytes) -> None:
        """
        A request line or header line longer than C{MAX_LENGTH}: 414 or 431
        (L{LineReceiver} would close the connection without a word).

        No request object exists until the request line is complete, so an
        empty request list means the request line is the one too long.
        """
        if not self.requests:
            self.refuse(414, REQUEST_LINE_TOO_LONG)
        else:
            message = headersTooLargeMessage(self.totalHeadersSize, self.maxHeaders)
            self.refuse(431, message, self._started())

    def _respondToBadRequestAndDisconnect(self) -> None:
        """
        A request twisted.web cannot parse: answer in JSON.

        This overrides a private method of L{HTTPChannel}: it is the single
        place where twisted.web refuses a malformed request (bad request
        line, header, C{Content-Length} or chunk framing; too many or too
        large headers), and it writes a bare C{400 Bad Request} with no body.
        Should a later Twisted rename it, the override stops applying and
        clients get that bare 400 again: still no traceback, and the tests
        of this module say so. The header counters it reads are private too,
        read with defaults for the same reason.
        """
        headerBytes = getattr(self, "_receivedHeaderSize", 0)
        headerCount = getattr(self, "_receivedHeaderCount", 0)
        if headerBytes > self.totalHeadersSize or headerCount > self.maxHeaders:
            message = headersTooLargeMessage(self.totalHeadersSize, self.maxHeaders)
            self.refuse(431, message, self._started())
        else:
            self.refuse(400, MALFORMED_REQUEST, self._started())

    def _cancelDeadline(self) -> None:
        deadline, self._deadline = self._deadline, None
        if deadline is not None and deadline.active():
            deadline.cancel()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._cancelDeadline()
        if self._lingering is not None and self._lingering.active():
            self._lingering.cancel()
        self._lingering = None
        super().connectionLost(reason)


class LlmuxRequest(Request):
    """
    A request that enforces the site's body size limit while its body
    arrives, and answers a failure to render in JSON.

    @ivar arrived: when the request line arrived (L{time.monotonic}).
    """

    def __init__(self, channel: HTTPChannel, *args: Any, **kwargs: Any) -> None:
        super().__init__(channel, *args, **kwargs)
        self.arrived = monotonic()
        self._maxBodyBytes = _siteLimits(channel).maxBodyBytes
        self._bodyBytes = 0
        self._refused = False

    def gotLength(self, length: int | None) -> None:
        """
        The head has arrived: refuse a declared C{Content-Length} over the
        limit now, before any of the body is read.
        """
        limit = self._maxBodyBytes
        if length is not None and length > limit:
            # HTTPChannel.allHeadersReceived answers "Expect: 100-continue"
            # right after this call; the client must not be invited to send
            # a body that has been refused.
            self.requestHeaders.removeHeader(b"expect")
            self._refuse(413, bodyTooLargeMessage(limit))
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        """
        Store a piece of the body, or refuse the request once the body
        (chunked, so of unknown length) has passed the limit.
        """
        if self._refused:
            return
        self._bodyBytes += len(data)
        limit = self._maxBodyBytes
        if self._bodyBytes > limit:
            self._refuse(413, bodyTooLargeMessage(limit))
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        """
        The whole request has arrived: process it, unless it was refused.
        """
        if self._refused:
            return
        super().requestReceived(command, path, version)

    def _refuse(self, status: int, message: str) -> None:
        """
        Answer before the request was read in full, and end the connection.
        """
        self._refused = True
        content, self.content = self.content, None
        if content is not None:
            content.close()
        channel = self.channel
        if isinstance(channel, LlmuxChannel):
            channel.refuse(status, message, self.arrived)
        elif channel is not None:
            channel.write(errorResponse(status, message))
            channel.loseConnection()

    def processingFailed(self, reason: Failure) -> Failure:
        """
        A resource raised: log it and answer a JSON 500, instead of
        twisted.web's HTML error page.
        """
        _log.failure(
            "Rendering {method} {uri} failed",
            reason,
            method=self.method.decode("latin-1"),
            uri=self.uri.decode("latin-1"),
        )
        if self.channel is None or self.finished:
            return reason
        if self.startedWriting:
            self.loseConnection()
        else:
            # Whatever the resource set before it raised is not this answer's.
            self.responseHeaders = Headers()
            writeError(self, 500, INTERNAL_ERROR)
        return reason
