# -*- test-case-name: tests.test_simulation_engine -*-
"""
Simulated model backends: a request that holds an in-flight slot is served
for its service time, at most C{concurrency} at once per model, and then
gives its slot back.

This is what the proxy leaf and a real inference server do together in
llmux: the slot is taken when the switcher grants it and released when the
response is complete. Requests beyond the backend's concurrency wait inside
the backend (holding their slot, as they would in a real server's queue), so
a switch that drains the model waits for them too.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import attrs
from twisted.internet.interfaces import IReactorTime

from ..interfaces import ISlot

__all__ = ["SimulatedBackend"]


@attrs.frozen
class _Job:
    serviceSecs: float
    slot: ISlot
    onStarted: Callable[[], object]
    onFinished: Callable[[], object]


@attrs.define(eq=False)
class SimulatedBackend:
    """
    One model's inference server.

    @ivar concurrency: how many requests it works on at once.
    @ivar executing: requests being worked on now.
    """

    clock: IReactorTime
    model: str
    concurrency: int
    executing: int = 0
    _queue: deque[_Job] = attrs.field(factory=deque)

    def __attrs_post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"{self.model}: concurrency must be at least 1")

    @property
    def queued(self) -> int:
        """
        Requests holding a slot but waiting for a place on the backend.
        """
        return len(self._queue)

    def submit(
        self,
        serviceSecs: float,
        slot: ISlot,
        onStarted: Callable[[], object],
        onFinished: Callable[[], object],
    ) -> None:
        """
        Take a request whose slot was just granted: serve it for
        C{serviceSecs} as soon as a place is free, then release C{slot}.

        @param onStarted: called when work on it starts.
        @param onFinished: called when it is complete, after C{slot} was
            released.
        """
        self._queue.append(_Job(serviceSecs, slot, onStarted, onFinished))
        self._startWaiting()

    def _startWaiting(self) -> None:
        while self._queue and self.executing < self.concurrency:
            job = self._queue.popleft()
            self.executing += 1
            job.onStarted()
            self.clock.callLater(job.serviceSecs, self._done, job)

    def _done(self, job: _Job) -> None:
        self.executing -= 1
        self._startWaiting()
        job.slot.release()
        job.onFinished()
