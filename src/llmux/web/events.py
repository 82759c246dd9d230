# -*- test-case-name: tests.test_web_events -*-
"""
C{GET /llmux/events}: llmux's structured events as Server-Sent Events (SPEC
section 12), for the dashboard and any other tool.

A subscriber first gets a C{status} event with the whole status document,
then every structured log event as it happens (C{event:} its name, C{data:}
its fields as JSON, C{id:} a sequence number), and a comment every
L{HEARTBEAT_SECS} so proxies and browsers keep the connection open.

With no subscriber the stream costs nothing: the hub listens to the log only
while someone is subscribed. A subscriber that stops reading is dropped once
L{MAX_PENDING_BYTES} are waiting for it, never buffered without bound.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import ILogObserver, LogEvent, LogPublisher
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from llmux.logs import eventAsDict
from llmux.settings import Settings
from llmux.web.auth import Denied, readAccess, renderDenied
from llmux.web.errors import MethodNotAllowed

__all__ = ["EventHub", "EventsResource"]

#: Seconds between two heartbeat comments.
HEARTBEAT_SECS = 15.0
#: What may wait for a subscriber that does not read before it is dropped.
MAX_PENDING_BYTES = 1024 * 1024
_HEARTBEAT = b": heartbeat\n\n"


def frame(name: str, data: object, number: int | None = None) -> bytes:
    """
    One Server-Sent Event: C{event:} C{name}, C{data:} C{data} as one line of
    JSON, and C{id:} C{number} if given.
    """
    text = json.dumps(data, default=str, separators=(",", ":"))
    head = f"id: {number}\n" if number is not None else ""
    return f"{head}event: {name}\ndata: {text}\n\n".encode()


@implementer(IPushProducer)
class _Subscriber:
    """
    One client of the stream: writes while it reads, queues (bounded) while
    its connection is paused.
    """

    def __init__(self, request: Request, hub: EventHub) -> None:
        self.request = request
        self.gone = False
        self._hub = hub
        self._paused = False
        self._pending: deque[bytes] = deque()
        self._pendingBytes = 0

    def send(self, data: bytes) -> None:
        if not self._paused:
            self.request.write(data)
            return
        self._pending.append(data)
        self._pendingBytes += len(data)
        if self._pendingBytes > MAX_PENDING_BYTES:
            self._hub.drop(self)

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        while self._pending and not self._paused:
            data = self._pending.popleft()
            self._pendingBytes -= len(data)
            self.request.write(data)

    def stopProducing(self) -> None:
        self._hub.drop(self)


@implementer(ILogObserver)
class EventHub:
    """
    Fans llmux's structured log events out to the subscribers of
    C{/llmux/events}.

    @param publisher: where log events are published (Twisted's global
        publisher); the hub observes it only while it has subscribers.
    """

    def __init__(self, publisher: LogPublisher, clock: IReactorTime) -> None:
        self._publisher = publisher
        self._clock = clock
        self._subscribers: list[_Subscriber] = []
        self._number = 0
        self._heartbeat: LoopingCall | None = None

    @property
    def subscribers(self) -> int:
        """
        How many clients are subscribed.
        """
        return len(self._subscribers)

    def subscribe(self, request: Request, status: dict[str, Any]) -> None:
        """
        Start C{request}'s stream with C{status}, and send it every event
        from now on.
        """
        subscriber = _Subscriber(request, self)
        request.registerProducer(subscriber, True)
        request.notifyFinish().addBoth(lambda _: self._left(subscriber))
        subscriber.send(frame("status", status, self._next()))
        if not self._subscribers:
            self._publisher.addObserver(self)
            self._heartbeat = LoopingCall(self._beat)
            self._heartbeat.clock = self._clock
            self._heartbeat.start(HEARTBEAT_SECS, now=False)
        self._subscribers.append(subscriber)

    def _left(self, subscriber: _Subscriber) -> None:
        subscriber.gone = True
        self.drop(subscriber)

    def drop(self, subscriber: _Subscriber) -> None:
        """
        Stop sending to C{subscriber} and close its stream (it left, or
        stopped reading).
        """
        if subscriber not in self._subscribers:
            return
        self._subscribers.remove(subscriber)
        if not subscriber.gone:
            subscriber.request.unregisterProducer()
            subscriber.request.loseConnection()
        if not self._subscribers:
            self._publisher.removeObserver(self)
            if self._heartbeat is not None and self._heartbeat.running:
                self._heartbeat.stop()
            self._heartbeat = None

    def __call__(self, event: LogEvent) -> None:
        """
        A log event: send it on if it is a structured one.
        """
        name = event.get("event")
        if not isinstance(name, str):
            return
        fields = eventAsDict(event)
        fields.pop("event", None)
        data = frame(name, fields, self._next())
        for subscriber in list(self._subscribers):
            subscriber.send(data)

    def _next(self) -> int:
        self._number += 1
        return self._number

    def _beat(self) -> None:
        for subscriber in list(self._subscribers):
            subscriber.send(_HEARTBEAT)


class EventsResource(Resource):
    """
    C{GET /llmux/events}.
    """

    isLeaf = True
    _notAllowed = MethodNotAllowed((b"GET",))

    def __init__(
        self,
        hub: EventHub,
        settings: Settings,
        status: Callable[[], dict[str, Any]],
    ) -> None:
        super().__init__()
        self._hub = hub
        self._settings = settings
        self._status = status

    def render(self, request: Request) -> bytes | int:
        if request.method != b"GET":
            return self._notAllowed.render(request)
        try:
            readAccess(self._settings.config.auth, request)
        except Denied as denied:
            return renderDenied(request, denied)
        request.setHeader(b"Content-Type", b"text/event-stream")
        request.setHeader(b"Cache-Control", b"no-cache")
        # Tell proxies such as nginx not to buffer the stream.
        request.setHeader(b"X-Accel-Buffering", b"no")
        self._hub.subscribe(request, self._status())
        return NOT_DONE_YET
