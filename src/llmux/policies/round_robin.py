# -*- test-case-name: tests.test_policies -*-
"""
C{round_robin}: models take turns in config order.

While the awake model has work, requests for other models wait. The awake
model gives up its turn when it has been idle (nothing in flight) for
C{idle_secs}, or when it has been awake for C{quantum_secs} while others
wait; the next model in the ring that has waiting requests gets the turn.
A waiting model therefore waits at most one turn per other model: about
C{(models - 1) x (quantum_secs + drain + switch)}.

Compared with C{fifo}, interleaved traffic pays one switch per turn instead of
one per request.
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
    TickContext,
)
from .base import BasePolicy

__all__ = ["RoundRobinPolicy"]

DEFAULT_QUANTUM_SECS = 30.0
DEFAULT_IDLE_SECS = 5.0
#: How often the ring is re-examined. Small next to any real switch.
TICK_SECS = 0.1


@implementer(ISwitchPolicy)
@attrs.define
class RoundRobinPolicy(BasePolicy):
    """
    Turns in a fixed ring, each bounded by a quantum and ended early by idleness.

    The ring is the config order of the models, as the contexts list them.
    """

    name = "round_robin"
    schedulerInterval: float | None = TICK_SECS
    quantumSecs: float = DEFAULT_QUANTUM_SECS
    idleSecs: float = DEFAULT_IDLE_SECS

    @classmethod
    def fromConfig(cls, settings: PolicyConfig) -> RoundRobinPolicy:
        cls.checkOwnKeys(settings, ("quantum_secs", "idle_secs"))
        extra = settings.extra
        return cls(
            quantumSecs=readNumber(
                extra, "quantum_secs", DEFAULT_QUANTUM_SECS, "policy", positive=True
            ),
            idleSecs=readNumber(extra, "idle_secs", DEFAULT_IDLE_SECS, "policy"),
            **cls.commonSettings(settings),
        )

    def onPending(self, context: PendingContext) -> Decision | DeferUntil:
        """
        Switch at once only when the GPU is free to take a turn and this
        request's model is next in the ring; otherwise the scheduler decides.
        """
        if context.switchingTo is not None:
            return Decision.SKIP
        if context.active is None:
            return Decision.SWITCH_NOW
        turnIsOver = self._turnIsOver(
            context.activeForSecs, context.activeInFlight, context.activeIdleSecs
        )
        nextModel = _nextInRing(context.models, context.active, context.queueDepths)
        if turnIsOver and nextModel == context.target:
            return Decision.SWITCH_NOW
        return Decision.SKIP

    def schedule(self, context: TickContext) -> str | None:
        """
        End the active model's turn when it is over, in favour of the next
        model in the ring with requests waiting.
        """
        if context.active is not None and not self._turnIsOver(
            context.activeForSecs, context.activeInFlight, context.activeIdleSecs
        ):
            return None
        return _nextInRing(context.models, context.active, context.queueDepths)

    def _turnIsOver(self, activeFor: float, inFlight: int, idleFor: float) -> bool:
        return activeFor >= self.quantumSecs or (
            inFlight == 0 and idleFor >= self.idleSecs
        )

    def describe(self) -> Mapping[str, object]:
        return {
            **super().describe(),
            "quantum_secs": self.quantumSecs,
            "idle_secs": self.idleSecs,
        }


def _nextInRing(
    ring: tuple[str, ...], active: str | None, queueDepths: Mapping[str, int]
) -> str | None:
    """
    The first model after C{active} in C{ring} that has requests waiting.
    """
    start = ring.index(active) + 1 if active in ring else 0
    for offset in range(len(ring)):
        model = ring[(start + offset) % len(ring)]
        if model != active and queueDepths.get(model, 0) > 0:
            return model
    return None
