# -*- test-case-name: tests.test_simulation_engine -*-
"""
What a simulation run leaves behind: the fate of every request, every hook
run, and the observable state of the switcher after each instant at which
something happened.

These are raw observations; L{llmux.simulation.stats} turns them into the
numbers of the report and L{llmux.simulation.timeline} into a picture.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

import attrs

from ..interfaces import ModelState
from .hooks import HookRun
from .workloads import Request

__all__ = ["REFUSED", "TIMEOUT", "Evicted", "Outcome", "Run", "Sample", "Switched"]

#: L{Outcome.error} of a request that timed out waiting for its model (504).
TIMEOUT = "timeout"
#: L{Outcome.error} of a request the switcher refused (503): its model's
#: queue was full, or only pinned models were in the way of its model.
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


def _awakeModels(models: str | Iterable[str] | None) -> tuple[str, ...]:
    """
    The awake models as a tuple; a single name (or C{None}) is accepted for
    samples of one model awake at a time (or none).
    """
    if models is None:
        return ()
    if isinstance(models, str):
        return (models,)
    return tuple(models)


@attrs.frozen
class Sample:
    """
    The state after everything that happened at time C{t}; it holds until
    the next sample.

    @ivar awake: the models whose backends are up (awake or draining, as
        L{llmux.interfaces.ModelView.up} says), in the scenario's model
        order: one at most without a declared capacity.
    @ivar switching: whether a C{sleep} or C{wake} hook is running.
    @ivar queued: requests waiting for their model, per model (in the
        scenario's model order).
    @ivar executing: requests being served, per model.
    @ivar states: each model's state, in the scenario's model order; empty
        in samples that were not taken from a switcher.
    """

    t: float
    awake: tuple[str, ...] = attrs.field(converter=_awakeModels)
    switching: bool
    queued: tuple[int, ...]
    executing: tuple[int, ...]
    states: tuple[ModelState, ...] = ()

    def sameState(self, other: Sample) -> bool:
        """
        Whether C{other} shows the same state, whatever its time.
        """
        return (
            self.awake,
            self.switching,
            self.queued,
            self.executing,
            self.states,
        ) == (
            other.awake,
            other.switching,
            other.queued,
            other.executing,
            other.states,
        )


@attrs.frozen
class Switched:
    """
    A wake ended, as the switcher told its observer
    (L{llmux.interfaces.ISwitchObserver.switched}).

    @ivar t: when it ended.
    @ivar from_: the first model put to sleep to make room for it, or
        C{None} if it needed no room (a cold start, an admission).
    @ivar secs: from the first victim's C{sleep} (else the C{wake}) starting
        to the C{wake} ending: what the switcher's cost tracker measures.
    """

    t: float
    from_: str | None
    to: str
    succeeded: bool
    secs: float


@attrs.frozen
class Evicted:
    """
    A model was put to sleep, as the switcher told its observer
    (L{llmux.interfaces.ISwitchObserver.evicted}).

    @ivar reason: C{capacity} (to make room for another model), C{idle_ttl}
        (after its C{idle_ttl_secs}), or another of the observer's reasons.
    """

    t: float
    model: str
    reason: str


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
    @ivar switched: every wake that ended, in order.
    @ivar evicted: every time a model was put to sleep, in order.
    @ivar capacity: the declared capacity, or C{None}: one model awake at
        a time.
    """

    policy: str
    settings: Mapping[str, object]
    models: tuple[str, ...]
    outcomes: tuple[Outcome, ...]
    hookRuns: tuple[HookRun, ...]
    samples: tuple[Sample, ...]
    end: float
    policyErrors: tuple[str, ...] = ()
    switched: tuple[Switched, ...] = ()
    evicted: tuple[Evicted, ...] = ()
    capacity: Mapping[str, float] | None = None

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
