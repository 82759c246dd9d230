"""
Tests for C{GET /llmux/events} (L{llmux.web.events}).
"""

from __future__ import annotations

import json
from typing import Any

import treq
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.logger import Logger, LogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from llmux.web.events import HEARTBEAT_SECS, MAX_PENDING_BYTES, EventHub, frame

from .test_e2e import Harness


class FakeRequest:
    """
    What the hub uses of a request: writes, a producer, its end.
    """

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.producer: Any = None
        self.lost = False
        self._finished: list[Deferred[None]] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def loseConnection(self) -> None:
        self.lost = True

    def notifyFinish(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self._finished.append(d)
        return d

    def gone(self) -> None:
        for d in self._finished:
            d.errback(Failure(ConnectionError("gone")))


class HubTests(SynchronousTestCase):
    """
    The hub on a Clock and its own log publisher.
    """

    def setUp(self) -> None:
        self.publisher = LogPublisher()
        self.clock = Clock()
        self.hub = EventHub(self.publisher, self.clock)
        self.log = Logger(observer=self.publisher, namespace="test")

    def test_stream(self) -> None:
        """
        A subscriber gets the status first, then structured events with
        growing ids; events without a name are not sent.
        """
        request = FakeRequest()
        self.hub.subscribe(request, {"awake": []})  # type: ignore[arg-type]
        self.log.info("plain line")
        self.log.info("{model} woke", event="model_activated", model="A")
        self.assertEqual(
            request.written,
            [
                frame("status", {"awake": []}, 1),
                request.written[1],
            ],
        )
        head, data = request.written[1].decode().split("data: ")
        self.assertEqual(head, "id: 2\nevent: model_activated\n")
        fields = json.loads(data)
        self.assertEqual((fields["model"], fields["message"]), ("A", "A woke"))

    def test_costsNothingAlone(self) -> None:
        """
        Without subscribers the hub does not observe the log and arms no
        timer; it stops when the last one leaves.
        """
        self.assertNotIn(self.hub, self.publisher._observers)
        request = FakeRequest()
        self.hub.subscribe(request, {})  # type: ignore[arg-type]
        self.assertIn(self.hub, self.publisher._observers)
        request.gone()
        self.assertNotIn(self.hub, self.publisher._observers)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertFalse(request.lost)

    def test_heartbeat(self) -> None:
        """
        A comment every HEARTBEAT_SECS keeps the connection open.
        """
        request = FakeRequest()
        self.hub.subscribe(request, {})  # type: ignore[arg-type]
        self.clock.advance(HEARTBEAT_SECS)
        self.assertEqual(request.written[-1], b": heartbeat\n\n")
        request.gone()

    def test_slowReaderDropped(self) -> None:
        """
        While paused, events wait; past MAX_PENDING_BYTES the subscriber is
        dropped and its connection closed; after a resume, what waited is
        sent in order.
        """
        slow, quick = FakeRequest(), FakeRequest()
        self.hub.subscribe(slow, {})  # type: ignore[arg-type]
        self.hub.subscribe(quick, {})  # type: ignore[arg-type]
        quick.producer.pauseProducing()
        self.log.info("x", event="a")
        self.assertEqual(len(quick.written), 1)
        quick.producer.resumeProducing()
        self.assertEqual(len(quick.written), 2)
        slow.producer.pauseProducing()
        big = "x" * 1000
        for _ in range(MAX_PENDING_BYTES // 1000 + 1):
            self.log.info("{big}", event="b", big=big)
        self.assertTrue(slow.lost)
        self.assertEqual(self.hub.subscribers, 1)
        quick.gone()


class _Collect(Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.arrived: list[Deferred[None]] = []

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        waiting, self.arrived = self.arrived, []
        for d in waiting:
            d.callback(None)


class EndToEndTests(TestCase):
    """
    The stream over loopback from a running llmux.
    """

    timeout = 20

    async def test_switch(self) -> None:
        """
        A dashboard connected to /llmux/events sees the status, then the
        events of a switch.
        """
        h = Harness(self)
        base = h.start({"A": h.recordingModel(h.backend("A"))})
        response = await treq.get(base + "/llmux/events", pool=h.pool, unbuffered=True)
        self.assertEqual(
            response.headers.getRawHeaders(b"content-type"), [b"text/event-stream"]
        )
        collector = _Collect()
        response.deliverBody(collector)
        await h.chat(base, "A")
        await h.until(lambda: b"event: model_activated" in collector.data)
        text = collector.data.decode()
        self.assertTrue(text.startswith("id: 1\nevent: status\ndata: {"))
        self.assertIn("event: switch_started", text)
        # The dashboard goes away: its body transport stops.
        assert collector.transport is not None
        collector.transport.stopProducing()  # type: ignore[attr-defined]
