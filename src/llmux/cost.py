# -*- test-case-name: tests.test_cost -*-
"""
The switch-cost tracker: what a switch between two models has been costing.

Policies use the estimates to weigh a switch against the work waiting for it.
"""

from __future__ import annotations

import attrs

__all__ = ["CostTracker", "IDLE"]

#: The name of the "from" side of a cold start (nothing was awake).
IDLE = "idle"


@attrs.define
class CostTracker:
    """
    An exponential moving average of switch durations per (from, to) pair.

    A cold start (from nothing awake) is its own pair, with C{from_=None},
    because starting from an empty GPU costs differently from swapping.

    @ivar alpha: the weight of the newest observation.
    """

    alpha: float = 0.3
    _estimates: dict[tuple[str | None, str], float] = attrs.field(factory=dict)
    _wakes: dict[str, float] = attrs.field(factory=dict)

    def record(self, from_: str | None, to: str, durationSecs: float) -> float:
        """
        Fold one observed switch into the estimate for its pair.

        @return: the new estimate.
        """
        previous = self._estimates.get((from_, to))
        if previous is None:
            estimate = durationSecs
        else:
            estimate = self.alpha * durationSecs + (1 - self.alpha) * previous
        self._estimates[(from_, to)] = estimate
        return estimate

    def recordWake(self, model: str, durationSecs: float) -> float:
        """
        Fold one successful C{wake} hook of C{model} into its own average,
        whatever was evicted for it: what it costs to get C{model} back.

        @return: the new estimate.
        """
        previous = self._wakes.get(model)
        if previous is None:
            estimate = durationSecs
        else:
            estimate = self.alpha * durationSecs + (1 - self.alpha) * previous
        self._wakes[model] = estimate
        return estimate

    def wakeEstimate(self, model: str) -> float | None:
        """
        The estimated cost of waking C{model}, or C{None} before its first
        wake.
        """
        return self._wakes.get(model)

    def estimate(self, from_: str | None, to: str) -> float | None:
        """
        The estimated cost of switching C{from_} → C{to}, or C{None} if that
        switch has never been observed.
        """
        return self._estimates.get((from_, to))

    def estimatesFrom(self, from_: str | None) -> dict[str, float]:
        """
        The estimates of every observed switch away from C{from_}, by target.
        """
        return {to: cost for (f, to), cost in self._estimates.items() if f == from_}

    def snapshot(self) -> dict[tuple[str, str], float]:
        """
        Every estimate, with a cold start's "from" spelled L{IDLE}.
        """
        return {(f or IDLE, to): cost for (f, to), cost in self._estimates.items()}
