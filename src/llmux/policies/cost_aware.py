# -*- test-case-name: tests.test_cost_aware -*-
"""
C{cost_aware}: amortize each switch over a service quantum proportional to
what the switch costs, never letting a request wait past a staleness bound.

Why: a switch is dead time for the GPU. If a model keeps the GPU for
C{amortize} seconds of service per second of switching, at most
C{1 / (1 + amortize)} of a busy GPU's time goes to switching, whether
switches cost 2 s or 2 min. A fixed quantum (C{round_robin}) is either too
long for cheap switches (needless waits) or too short for expensive ones
(the GPU mostly switches).

The rules, checked on every scheduler tick (every C{0.25 s}) and, for the
simple cases, as soon as a request starts waiting:

  1. Nothing waits for another model: stay. With a single model, or while
     only the active model has traffic, the policy never switches, so it
     behaves exactly as C{fifo} does.
  2. Nothing is awake (start-up, or after a failed switch): switch at once to
     the best waiting model (rule 5).
  3. Staleness: a waiting model whose oldest request has waited long enough
     that, after the estimated switch, it would have waited
     C{max_wait_secs} (C{oldest wait + switch cost >= max_wait_secs}) gets
     the GPU now, overriding the quantum. The most overdue goes first.
  4. Turn over: the active model keeps the GPU for its quantum,
     C{max(min_quantum_secs, amortize x cost of the switch away)}, counted
     from its activation. It gives the rest up early when it has had
     nothing in flight for C{idle_factor x cost of the switch away}: waiting
     a little for its next request is cheaper than paying two switches to
     come back, but holding an idle GPU for long while others wait is not.
  5. The next model is the waiting one with the best score: its waiting
     demand weighed against the estimated cost of switching to it,
     C{queue depth x (1 + oldest wait / switch cost)}: each waiting request
     counts, and the oldest one's wait counts in units of the switch it
     needs. Ties go to the next model in config order after the active one.

Switch costs are the cost tracker's estimates (an exponential moving average
of measured switches, per C{(from, to)} pair), as the contexts report them.
For a pair never observed the policy uses the average of every switch it
has seen (cold starts included), and before any switch at all,
C{default_switch_secs}.

The staleness bound: the switch to a stale model starts (at the next tick)
once its oldest request has waited C{max_wait_secs} minus the estimated
switch, so that request gets its slot after about C{max_wait_secs}, plus the
drain of the model being left, plus a tick: under C{max_wait_secs} plus one
switch whenever the drain is shorter than the switch. This needs room for a
round trip: a request that arrives just as its model is left waits at least
for the switch away, the other model's drain and the switch back, so keep
C{max_wait_secs} above twice the switch cost plus the drains, and above
that by the quantum you want (else staleness, not amortization, sets every
turn). With more than two models, stale models are served one after
another, each adding a switch.

Settings (the C{policy:} table):

  - C{amortize} (3): seconds of quantum per second of estimated switch cost;
  - C{min_quantum_secs} (5): the shortest quantum, for cheap switches;
  - C{idle_factor} (0.25): seconds an idle active model keeps its turn while
    others wait, per second of switch cost;
  - C{max_wait_secs} (300): the staleness bound;
  - C{default_switch_secs} (10): the switch cost assumed before any switch
    has been observed.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs
from zope.interface import implementer

from ..config import PolicyConfig, readNumber
from ..interfaces import (
    Decision,
    DeferUntil,
    ISwitchPolicy,
    PendingContext,
    SwitchedContext,
    TickContext,
)
from .base import BasePolicy

__all__ = ["CostAwarePolicy"]

DEFAULT_AMORTIZE = 3.0
DEFAULT_MIN_QUANTUM_SECS = 5.0
DEFAULT_IDLE_FACTOR = 0.25
DEFAULT_MAX_WAIT_SECS = 300.0
DEFAULT_SWITCH_SECS = 10.0
#: How often the scheduler looks; small next to any real switch.
TICK_SECS = 0.25
#: The weight of the newest switch in the policy's own average of all
#: switches (the cost tracker's alpha).
OBSERVED_ALPHA = 0.3

OWN_KEYS = (
    "amortize",
    "min_quantum_secs",
    "idle_factor",
    "max_wait_secs",
    "default_switch_secs",
)


@attrs.frozen
class _View:
    """
    What a decision looks at: the fields L{PendingContext} and
    L{TickContext} share, with what is unknown left out of the mappings.
    """

    active: str | None
    activeForSecs: float
    activeInFlight: int
    activeIdleSecs: float
    queueDepths: Mapping[str, int]
    oldestWaits: Mapping[str, float]
    switchCosts: Mapping[str, float]
    models: tuple[str, ...]


@implementer(ISwitchPolicy)
@attrs.define
class CostAwarePolicy(BasePolicy):
    """
    Quanta proportional to switch costs, a staleness bound, and the next
    model chosen by waiting demand per second of switching.

    @ivar observedSwitchSecs: the moving average of every switch seen so far
        (any pair), or C{None} before the first.
    """

    name = "cost_aware"
    schedulerInterval: float | None = TICK_SECS
    amortize: float = DEFAULT_AMORTIZE
    minQuantumSecs: float = DEFAULT_MIN_QUANTUM_SECS
    idleFactor: float = DEFAULT_IDLE_FACTOR
    maxWaitSecs: float = DEFAULT_MAX_WAIT_SECS
    defaultSwitchSecs: float = DEFAULT_SWITCH_SECS
    observedSwitchSecs: float | None = attrs.field(default=None, init=False)

    @classmethod
    def fromConfig(cls, settings: PolicyConfig) -> CostAwarePolicy:
        cls.checkOwnKeys(settings, OWN_KEYS)
        extra = settings.extra
        return cls(
            amortize=readNumber(extra, "amortize", DEFAULT_AMORTIZE, "policy"),
            minQuantumSecs=readNumber(
                extra, "min_quantum_secs", DEFAULT_MIN_QUANTUM_SECS, "policy"
            ),
            idleFactor=readNumber(extra, "idle_factor", DEFAULT_IDLE_FACTOR, "policy"),
            maxWaitSecs=readNumber(
                extra, "max_wait_secs", DEFAULT_MAX_WAIT_SECS, "policy", positive=True
            ),
            defaultSwitchSecs=readNumber(
                extra, "default_switch_secs", DEFAULT_SWITCH_SECS, "policy"
            ),
            **cls.commonSettings(settings),
        )

    # -- ISwitchPolicy -------------------------------------------------------

    def onPending(self, context: PendingContext) -> Decision | DeferUntil:
        """
        Switch at once when the choice is clear from this request alone:
        nothing is awake, or this request's model is the only one waiting
        and the rules say its turn has come. Otherwise the scheduler, which
        sees every model's oldest wait and switch cost, decides.
        """
        if context.switchingTo is not None:
            return Decision.SKIP
        others = [
            m
            for m, depth in context.queueDepths.items()
            if depth > 0 and m not in (context.target, context.active)
        ]
        if context.active is not None and others:
            return Decision.SKIP
        view = _View(
            active=context.active,
            activeForSecs=context.activeForSecs,
            activeInFlight=context.activeInFlight,
            activeIdleSecs=context.activeIdleSecs,
            queueDepths={
                **context.queueDepths,
                context.target: context.targetQueueDepth,
            },
            oldestWaits={context.target: context.oldestWaitSecs},
            switchCosts=(
                {}
                if context.switchCostSecs is None
                else {context.target: context.switchCostSecs}
            ),
            models=context.models,
        )
        if self.choose(view) == context.target:
            return Decision.SWITCH_NOW
        return Decision.SKIP

    def schedule(self, context: TickContext) -> str | None:
        return self.choose(
            _View(
                active=context.active,
                activeForSecs=context.activeForSecs,
                activeInFlight=context.activeInFlight,
                activeIdleSecs=context.activeIdleSecs,
                queueDepths=context.queueDepths,
                oldestWaits=context.oldestWaits,
                switchCosts=context.switchCosts,
                models=context.models,
            )
        )

    def afterSwitch(self, context: SwitchedContext) -> None:
        """
        Fold the measured switch into the average used for pairs the cost
        tracker has not seen yet.
        """
        if self.observedSwitchSecs is None:
            self.observedSwitchSecs = context.durationSecs
        else:
            self.observedSwitchSecs = (
                OBSERVED_ALPHA * context.durationSecs
                + (1 - OBSERVED_ALPHA) * self.observedSwitchSecs
            )

    def describe(self) -> Mapping[str, object]:
        return {
            **super().describe(),
            "amortize": self.amortize,
            "min_quantum_secs": self.minQuantumSecs,
            "idle_factor": self.idleFactor,
            "max_wait_secs": self.maxWaitSecs,
            "default_switch_secs": self.defaultSwitchSecs,
        }

    # -- the rules -----------------------------------------------------------

    def estimate(self, known: float | None) -> float:
        """
        The switch cost to plan with: the tracker's estimate for the pair if
        there is one, else the average of all switches seen, else the
        configured default.
        """
        if known is not None:
            return known
        if self.observedSwitchSecs is not None:
            return self.observedSwitchSecs
        return self.defaultSwitchSecs

    def quantum(self, switchSecs: float) -> float:
        """
        How long a model keeps the GPU before a switch costing C{switchSecs}.
        """
        return max(self.minQuantumSecs, self.amortize * switchSecs)

    def idleGrace(self, switchSecs: float) -> float:
        """
        How long an idle model keeps its turn before a switch costing
        C{switchSecs}.
        """
        return self.idleFactor * switchSecs

    def choose(self, view: _View) -> str | None:
        """
        The model to switch to now, or C{None} to stay; rules 1 to 5 of the
        module docstring.
        """
        waiting = _ringAfter(view.models, view.active, view.queueDepths)
        if not waiting:
            return None
        costs = {m: self.estimate(view.switchCosts.get(m)) for m in waiting}
        oldest = {m: view.oldestWaits.get(m, 0.0) for m in waiting}

        def score(model: str) -> float:
            cost = costs[model]
            urgency = oldest[model] / cost if cost > 0 else oldest[model]
            return view.queueDepths[model] * (1.0 + urgency)

        best = max(waiting, key=score)
        if view.active is None:
            return best
        overdue = {m: oldest[m] + costs[m] - self.maxWaitSecs for m in waiting}
        stale = [m for m in waiting if overdue[m] >= 0]
        if stale:
            return max(stale, key=lambda m: overdue[m])
        cost = costs[best]
        if view.activeForSecs >= self.quantum(cost):
            return best
        if view.activeInFlight == 0 and view.activeIdleSecs >= self.idleGrace(cost):
            return best
        return None


def _ringAfter(
    ring: tuple[str, ...], active: str | None, queueDepths: Mapping[str, int]
) -> list[str]:
    """
    The models other than C{active} with requests waiting, in config order
    starting after C{active}.
    """
    start = ring.index(active) + 1 if active in ring else 0
    ordered = [ring[(start + i) % len(ring)] for i in range(len(ring))]
    return [m for m in ordered if m != active and queueDepths.get(m, 0) > 0]
