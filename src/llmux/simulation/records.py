# -*- test-case-name: tests.test_simulation_engine -*-
"""
What a simulation run leaves behind: the fate of every request, every hook
run, and the observable state of the switcher after each instant at which
something happened.

These are raw observations; L{llmux.simulation.stats} turns them into the
numbers of the report and L{llmux.simulation.timeline} into a picture.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import attrs

from .hooks import HookRun
from .workloads import Request

__all__ = ["REFUSED", "TIMEOUT", "Outcome", "Run", "Sample"]

#: L{Outcome.error} of a request that timed out waiting for its model (504).
TIMEOUT = "timeout"
#: L{Outcome.error} of a request the switcher refused: its model's queue was
#: full (503).
REFUSED = "refused"


@attrs.define(eq=False)
class Outcome:
    """
    What became of one request.

    @ivar granted: when the switcher gave it an in-flight slot.
    @ivar started: when its backend started working on it.
    @ivar finished: when its backend was done with it.
    @ivar error: L{TIMEOUT} if it timed out waiting for its model,
        L{REFUSED} if the switcher turned it away, or the message of any
        other error it failed with; C{None} if it did not fail.
    """

    request: Request
    granted: float | None = None
    started: float | None = None
    finished: float | None = None
    error: str | None = None

    @property
    def served(self) -> bool:
        return self.finished is not None

    @property
    def done(self) -> bool:
        """
        Whether nothing more will happen to it: served or failed.
        """
        return self.finished is not None or self.error is not None

    @property
    def wait(self) -> float | None:
        """
        From arrival until its backend started on it, or C{None} if it never
        started: the time spent waiting for the model plus any time waiting
        for a free place on the backend.
        """
        return None if self.started is None else self.started - self.request.t

    @property
    def slotWait(self) -> float | None:
        """
        From arrival until the switcher granted its slot, or C{None}.
        """
        return None if self.granted is None else self.granted - self.request.t


@attrs.frozen
class Sample:
    """
    The state after everything that happened at time C{t}; it holds until
    the next sample.

    @ivar awake: the model whose backend is up (L{Switcher.awake}).
    @ivar switching: whether a C{sleep} or C{wake} hook is running.
    @ivar queued: requests waiting for their model, per model (in the
        scenario's model order).
    @ivar executing: requests being served, per model.
    """

    t: float
    awake: str | None
    switching: bool
    queued: tuple[int, ...]
    executing: tuple[int, ...]

    def sameState(self, other: Sample) -> bool:
        """
        Whether C{other} shows the same state, whatever its time.
        """
        return (self.awake, self.switching, self.queued, self.executing) == (
            other.awake,
            other.switching,
            other.queued,
            other.executing,
        )


@attrs.frozen
class Run:
    """
    One policy played through one scenario.

    @ivar policy: the policy's name.
    @ivar settings: what the policy reported of its settings (C{describe()}).
    @ivar models: the scenario's models, in config order.
    @ivar outcomes: one per request, in arrival order.
    @ivar hookRuns: every C{wake} and C{sleep} run, in the order they ended.
    @ivar samples: the state over time; consecutive samples differ.
    @ivar end: when the run stopped: when the last request was done, or the
        time limit.
    @ivar policyErrors: the messages of failures the switcher logged while
        calling the policy (a correct policy has none).
    """

    policy: str
    settings: Mapping[str, object]
    models: tuple[str, ...]
    outcomes: tuple[Outcome, ...]
    hookRuns: tuple[HookRun, ...]
    samples: tuple[Sample, ...]
    end: float
    policyErrors: tuple[str, ...] = ()

    def stretches(self) -> Iterator[tuple[Sample, float]]:
        """
        Each sample with the time its state lasted until: the next sample,
        or the end of the run.
        """
        for index, sample in enumerate(self.samples):
            following = index + 1
            if following < len(self.samples):
                yield sample, self.samples[following].t
            else:
                yield sample, self.end

    @property
    def wakes(self) -> tuple[HookRun, ...]:
        """
        The C{wake} runs: one per switch, cold starts included.
        """
        return tuple(run for run in self.hookRuns if run.hook == "wake")
