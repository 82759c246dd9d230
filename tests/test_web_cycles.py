"""
Tests for L{llmux.web.cycles}: a finished stream, and a closed backend
connection, leave no reference cycle behind in llmux.
"""

from __future__ import annotations

import gc
import os
import sys
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.internet.utils import getProcessValue
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web._newclient import HTTPClientParser
from twisted.web.http import _ChunkedTransferDecoder

from llmux.config import parseConfig
from llmux.policies.fifo import FifoPolicy
from llmux.service import makeLlmuxService
from llmux.web.cycles import (
    ForgetfulChunkedDecoder,
    chunkedDecoderKeepsCallbacks,
    installChunkedDecoderFix,
    removeChunkedDecoderFix,
)

from .helpers import freePort

reactor: Any = _reactor

#: Types whose instances llmux's request path makes; none may be found in a
#: cycle after the requests are over.
REQUEST_PATH_TYPES = {
    "HTTPClientParser",
    "HTTP11ClientProtocol",
    "_ChunkedTransferDecoder",
    "ForgetfulChunkedDecoder",
    "Client",
    "Connector",
    "_WrappingFactory",
    "_ForgetfulWrappingFactory",
    "Request",
    "HTTPChannel",
    "LlmuxChannel",
    "LlmuxRequest",
    "_Exchange",
    "_Relay",
    "Slot",
}

#: Run as a separate process, so its objects are not counted: C{THREADS}
#: threads each send C{EACH} streamed completions over new connections.
CLIENT = r"""
import http.client, json, sys, threading
port, threads, each = (int(a) for a in sys.argv[1:4])
body = json.dumps({"model": "A", "stream": True, "messages": []})
def work():
    for _ in range(each):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        c.request("POST", "/v1/chat/completions", body,
                  {"Content-Type": "application/json"})
        response = c.getresponse()
        assert response.status == 200, response.status
        assert b"[DONE]" in response.read()
        c.close()
workers = [threading.Thread(target=work) for _ in range(threads)]
[w.start() for w in workers]
[w.join() for w in workers]
"""


class ChunkedDecoderTests(SynchronousTestCase):
    """
    L{ForgetfulChunkedDecoder} decodes as Twisted's does and lets go of its
    callbacks when it is done.
    """

    def test_decodesAndForgets(self) -> None:
        received: list[bytes] = []
        finished: list[bytes] = []
        decoder = ForgetfulChunkedDecoder(received.append, finished.append)
        decoder.dataReceived(b"3\r\nabc\r\n0\r\n\r\nrest")
        self.assertEqual((received, finished), ([b"abc"], [b"rest"]))
        self.assertNotEqual(decoder.finishCallback, finished.append)
        self.assertNotEqual(decoder.dataCallback, received.append)
        with self.assertRaises(RuntimeError):
            decoder.dataReceived(b"more")
        decoder.noMoreData()

    def test_installed(self) -> None:
        """
        Installed, the fix gives HTTP client parsers the forgetful decoder
        exactly when Twisted's own keeps its callbacks; removed, Twisted's
        decoder is back.
        """
        self.addCleanup(removeChunkedDecoderFix)
        needed = installChunkedDecoderFix()
        self.assertEqual(needed, chunkedDecoderKeepsCallbacks())
        expected = ForgetfulChunkedDecoder if needed else _ChunkedTransferDecoder
        self.assertIs(HTTPClientParser._transferDecoders[b"chunked"], expected)
        removeChunkedDecoderFix()
        self.assertIs(
            HTTPClientParser._transferDecoders[b"chunked"], _ChunkedTransferDecoder
        )


class _Backend(ProcessProtocol):
    """
    A fake backend process, ended when the test ends.
    """

    def __init__(self) -> None:
        self.ended: Deferred[None] = Deferred()

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(None)


class NoCyclesTests(TestCase):
    """
    Over loopback, with the backend and the clients in other processes:
    after many streamed completions, some on backend connections the pool
    closes, llmux's process holds no cyclic garbage from them.
    """

    timeout = 60

    async def test_streamsLeaveNoCycles(self) -> None:
        self.addCleanup(removeChunkedDecoderFix)
        installChunkedDecoderFix()
        backendPort = await self.startBackend()
        config = parseConfig(
            {
                "models": {
                    "A": {
                        "port": backendPort,
                        "wake": "true",
                        "sleep": "true",
                        "alive": "true",
                    }
                },
                "adopt_running": False,
                "alive_interval_secs": 0,
            }
        )
        service = makeLlmuxService(
            config, FifoPolicy(), "tcp:0:interface=127.0.0.1", reactor
        )
        service.startService()
        self.addCleanup(service.stopService)
        assert service.port is not None
        port = service.port.getHost().port
        await self.clients(port, threads=4, each=2)
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)
        self.addCleanup(gc.garbage.clear)
        self.addCleanup(gc.set_debug, 0)
        # More concurrent streams than the pool keeps idle connections
        # (64), so some backend connections are closed, not kept.
        await self.clients(port, threads=80, each=2)
        await deferLater(reactor, 0.2)
        gc.collect()
        found = sorted({type(o).__name__ for o in gc.garbage} & REQUEST_PATH_TYPES)
        self.assertEqual(found, [])

    async def clients(self, port: int, threads: int, each: int) -> None:
        code = await getProcessValue(
            sys.executable,
            ["-c", CLIENT, str(port), str(threads), str(each)],
            env=os.environ,
        )
        self.assertEqual(code, 0)

    async def startBackend(self) -> int:
        port = freePort()
        backend = _Backend()
        process = reactor.spawnProcess(
            backend,
            sys.executable,
            [
                sys.executable,
                "-m",
                "llmux.testing.fakebackend",
                "--port",
                str(port),
                "--model",
                "A",
                "--chunks",
                "4",
                "--chunk-delay",
                "0.05",
            ],
            env=os.environ,
        )

        async def stop() -> None:
            process.signalProcess("TERM")
            await backend.ended

        self.addCleanup(lambda: Deferred.fromCoroutine(stop()))
        await self.until(lambda: self.listening(port))
        return port

    def listening(self, port: int) -> bool:
        import socket

        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    async def until(self, condition: Any, limit: float = 10) -> None:
        deadline = reactor.seconds() + limit
        while not condition():
            if reactor.seconds() > deadline:
                self.fail("the backend did not start")
            await deferLater(reactor, 0.05)
