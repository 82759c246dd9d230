# -*- test-case-name: tests.test_eviction -*-
"""
C{cheapest_wake}: make room with the models that are cheapest to wake again,
so expensive models stay resident.

Idle models still go before busy ones (a busy victim makes requests wait
while it drains). Then the set whose measured wakes (the moving average of
each model's C{wake} hook) add up to the least wins; then the fewest
victims; then the least recently used. A model never woken yet is assumed
to cost the average of the candidates that were.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs
from zope.interface import implementer

from ..interfaces import Candidate, Eviction, EvictionContext, IEvictionPolicy
from .eviction import bestEviction, busy

__all__ = ["CheapestWakeEviction"]


@implementer(IEvictionPolicy)
@attrs.frozen
class CheapestWakeEviction:
    """
    Rank victim sets by how many are busy, then by what waking them again
    would cost, then by their number and last use.
    """

    name = "cheapest_wake"

    def chooseEviction(self, context: EvictionContext) -> Eviction | None:
        known = [
            c.wakeCostSecs for c in context.candidates if c.wakeCostSecs is not None
        ]
        assumed = sum(known) / len(known) if known else 0.0

        def rank(victims: Sequence[Candidate]) -> tuple[int, float, int, float]:
            cost = sum(
                assumed if v.wakeCostSecs is None else v.wakeCostSecs for v in victims
            )
            lastUse = max(v.lastUsed for v in victims)
            return (sum(busy(v) for v in victims), cost, len(victims), lastUse)

        return bestEviction(context, rank)

    def describe(self) -> Mapping[str, object]:
        return {"name": self.name}
