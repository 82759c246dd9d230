# -*- test-case-name: tests.test_simulation_engine -*-
"""
A simulated L{IHookRunner}: hooks that take a set time on a clock and
succeed, so the real switcher can be driven through hours of switches in
milliseconds.

What a switch costs is described by L{SwitchCosts}: per-model C{wake} and
C{sleep} durations (a switch A -> B then costs C{sleep(A) + wake(B)}), or the
whole cost of particular C{(from, to)} pairs, for setups where it depends on
both ends (a shared weights cache, models of different sizes). A cost is what
the switcher's cost tracker measures: from the start of the old model's
C{sleep} hook to the end of the new model's C{wake} hook.

The runner sees one hook at a time and does not know where a switch is going
when it runs C{sleep}; it remembers which model it put to sleep last and
prices the C{wake} that starts the instant that C{sleep} ends from that pair
(the switcher wakes a switch's target as soon as its victims are asleep). A
C{wake} that follows no C{sleep} so closely is a cold start, as for the
cost tracker: with a declared capacity, a model admitted beside others, or
woken long after an idle model went to sleep. An C{unload} ends at once,
like C{alive}.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from ..config import ModelConfig
from ..interfaces import HookResult, IHookRunner

__all__ = ["HookRun", "SimulatedHookRunner", "SwitchCosts"]


@attrs.frozen
class SwitchCosts:
    """
    How long the simulated hooks take.

    @ivar wakeSecs: C{wake} duration by model; others take C{defaultWakeSecs}.
    @ivar sleepSecs: C{sleep} duration by model; others take
        C{defaultSleepSecs}.
    @ivar pairs: the whole cost of a switch by C{(from, to)}, C{from} being
        C{None} for a cold start. A listed pair overrides the per-model sum:
        its C{wake} lasts the pair's cost minus the C{sleep} that preceded it.
    """

    defaultWakeSecs: float = 10.0
    defaultSleepSecs: float = 0.0
    wakeSecs: Mapping[str, float] = attrs.field(factory=dict)
    sleepSecs: Mapping[str, float] = attrs.field(factory=dict)
    pairs: Mapping[tuple[str | None, str], float] = attrs.field(factory=dict)

    @classmethod
    def uniform(cls, secs: float) -> SwitchCosts:
        """
        Every switch, cold starts included, costs C{secs}: C{wake} takes all
        of it, C{sleep} is instant.
        """
        return cls(defaultWakeSecs=secs, defaultSleepSecs=0.0)

    def sleepFor(self, model: str) -> float:
        """
        How long C{model}'s C{sleep} hook takes.
        """
        return self.sleepSecs.get(model, self.defaultSleepSecs)

    def wakeFor(self, model: str, after: str | None, sleptSecs: float) -> float:
        """
        How long C{model}'s C{wake} hook takes right after C{after} was put
        to sleep in C{sleptSecs} (C{after=None}: a cold start).
        """
        pair = self.pairs.get((after, model))
        if pair is not None:
            return max(0.0, pair - sleptSecs)
        return self.wakeSecs.get(model, self.defaultWakeSecs)

    def switchSecs(self, from_: str | None, to: str) -> float:
        """
        The whole cost of switching C{from_} -> C{to} (C{None}: cold start),
        as the switcher's cost tracker will measure it.
        """
        slept = 0.0 if from_ is None else self.sleepFor(from_)
        return slept + self.wakeFor(to, from_, slept)


@attrs.frozen
class HookRun:
    """
    One simulated run of a hook, from C{started} to C{ended}.

    @ivar after: for a C{wake}, the model put to sleep just before (C{None}
        for a cold start); C{None} for other hooks.
    """

    model: str
    hook: str
    started: float
    ended: float
    after: str | None = None


@implementer(IHookRunner)
@attrs.define
class SimulatedHookRunner:
    """
    Runs hooks as delays on C{clock}; every hook succeeds.

    @ivar runs: every C{wake} and C{sleep} run that has ended, in the order
        they ended.
    @ivar running: how many C{wake} or C{sleep} runs are under way.
    """

    clock: IReactorTime
    costs: SwitchCosts
    runs: list[HookRun] = attrs.field(factory=list)
    running: int = 0
    _lastSlept: str | None = None
    _lastSleptSecs: float = 0.0
    _lastSleptAt: float | None = None

    def run(self, model: object, hook: str) -> Deferred[HookResult]:
        """
        See L{IHookRunner.run}: C{wake} and C{sleep} end, successfully, after
        their simulated duration; any other hook (C{alive}) succeeds at once.
        """
        if not isinstance(model, ModelConfig):
            raise TypeError(f"expected a ModelConfig, not {model!r}")
        name = model.name
        started = self.clock.seconds()
        if hook not in ("wake", "sleep"):
            return succeed(HookResult(name, hook, 0, None, False, 0.0))
        after: str | None = None
        if hook == "sleep":
            secs = self.costs.sleepFor(name)
        else:
            slept = 0.0
            if self._lastSleptAt == started:
                after, slept = self._lastSlept, self._lastSleptSecs
            secs = self.costs.wakeFor(name, after, slept)
            self._lastSlept, self._lastSleptSecs, self._lastSleptAt = None, 0.0, None
        result: Deferred[HookResult] = Deferred()
        self.running += 1

        def end() -> None:
            self.running -= 1
            now = self.clock.seconds()
            self.runs.append(HookRun(name, hook, started, now, after))
            if hook == "sleep":
                self._lastSlept, self._lastSleptSecs = name, secs
                self._lastSleptAt = now
            result.callback(HookResult(name, hook, 0, None, False, now - started))

        self.clock.callLater(secs, end)
        return result
