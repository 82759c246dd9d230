# -*- test-case-name: tests.test_web_cycles -*-
"""
Breaking the reference cycles Twisted leaves behind for every backend
response and every backend connection.

Objects in a reference cycle outlive their last use until CPython's cyclic
garbage collector finds them. A proxy that finishes a thousand streams a
second then fills the oldest generation with dead parsers and connections,
and every full collection walks all of it with the reactor stopped: tens to
hundreds of milliseconds added to every open stream. Without the cycles,
reference counting frees a finished stream at once, and full collections
have nothing to do.

Two places in Twisted (26.10) keep such cycles; the upstream report, with a
reproducer and the proposed patches, is in docs/performance.md:

  - L{twisted.web.http._ChunkedTransferDecoder} keeps its C{finishCallback}
    (the client parser's bound method) after the last chunk, so the parser
    and the decoder hold each other, and with them the request and the
    response (L{twisted.web.http._IdentityTransferDecoder} lets go of its
    callbacks when it finishes). L{installChunkedDecoderFix} makes llmux's
    client parsers use L{ForgetfulChunkedDecoder}, which lets go.
  - A TCP connector (L{twisted.internet.base.BaseConnector}) keeps its
    C{transport} after the connection is lost while the transport keeps its
    C{connector}, and an endpoint's connection factory
    (L{twisted.internet.endpoints._WrappingFactory}) and the connector hold
    each other. L{BackendTCPEndpoint} connects with a factory that drops
    those references once the connection is over.

Both are checked by behaviour, not by version: a Twisted that no longer
keeps the cycle gets no shim.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.endpoints import TCP4ClientEndpoint, _WrappingFactory
from twisted.internet.interfaces import IConnector, IProtocolFactory
from twisted.python.failure import Failure
from twisted.web._newclient import HTTPClientParser
from twisted.web.http import _ChunkedTransferDecoder

__all__ = [
    "BackendTCPEndpoint",
    "ForgetfulChunkedDecoder",
    "chunkedDecoderKeepsCallbacks",
    "installChunkedDecoderFix",
    "removeChunkedDecoderFix",
]

_CHUNKED = b"chunked"


class ForgetfulChunkedDecoder(_ChunkedTransferDecoder):
    """
    A chunked body decoder that lets go of its callbacks once the body is
    over, as Twisted's identity decoder does.
    """

    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data)
        if self.state == "FINISHED":
            self.dataCallback = self.finishCallback = _finishedAlready


def _finishedAlready(data: bytes) -> None:
    """
    Stands in for the callbacks of a finished decoder: a finished decoder
    calls neither (it raises on more data instead).
    """


def chunkedDecoderKeepsCallbacks() -> bool:
    """
    Whether Twisted's own chunked decoder still holds its finish callback
    after the last chunk.
    """
    finished: list[bytes] = []
    decoder = _ChunkedTransferDecoder(lambda data: None, finished.append)
    decoder.dataReceived(b"0\r\n\r\n")
    return bool(finished) and decoder.finishCallback == finished.append


def installChunkedDecoderFix() -> bool:
    """
    Make HTTP client parsers decode chunked bodies with
    L{ForgetfulChunkedDecoder}, if Twisted's decoder needs it.

    This changes a class attribute of L{HTTPClientParser} for the whole
    process, so llmux does it only in the service twistd builds (and tests
    undo it with L{removeChunkedDecoderFix}).

    @return: whether the fix was needed (and is now installed).
    """
    if not chunkedDecoderKeepsCallbacks():
        return False
    decoders = dict(HTTPClientParser._transferDecoders)
    decoders[_CHUNKED] = ForgetfulChunkedDecoder
    HTTPClientParser._transferDecoders = decoders
    return True


def removeChunkedDecoderFix() -> None:
    """
    Give L{HTTPClientParser} Twisted's own chunked decoder back.
    """
    decoders = dict(HTTPClientParser._transferDecoders)
    decoders[_CHUNKED] = _ChunkedTransferDecoder
    HTTPClientParser._transferDecoders = decoders


class _ForgetfulWrappingFactory(_WrappingFactory):
    """
    An endpoint's connection factory that, once its connection is over,
    drops the references that tie it, its connector and the transport in a
    cycle.
    """

    def clientConnectionLost(self, connector: IConnector, reason: Failure) -> None:
        super().clientConnectionLost(connector, reason)
        self._forget(connector)

    def clientConnectionFailed(self, connector: IConnector, reason: Failure) -> None:
        super().clientConnectionFailed(connector, reason)
        self._forget(connector)

    def _forget(self, connector: Any) -> None:
        connector.transport = None
        self._connector = None


class BackendTCPEndpoint(TCP4ClientEndpoint):
    """
    A TCP client endpoint whose connections leave no reference cycle behind
    when they end.
    """

    def connect(self, protocolFactory: IProtocolFactory) -> Any:
        wrapping = _ForgetfulWrappingFactory(protocolFactory)
        self._reactor.connectTCP(
            self._host,
            self._port,
            wrapping,
            timeout=self._timeout,
            bindAddress=self._bindAddress,
        )
        connected: Any = wrapping._onConnection
        return connected
