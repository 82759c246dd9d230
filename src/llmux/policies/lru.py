# -*- test-case-name: tests.test_eviction -*-
"""
C{lru}, the default eviction policy: make room with idle models before busy
ones, with as few victims as possible, and among those the least recently
used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs
from zope.interface import implementer

from ..interfaces import Candidate, Eviction, EvictionContext, IEvictionPolicy
from .eviction import bestEviction, busy

__all__ = ["LruEviction"]


@implementer(IEvictionPolicy)
@attrs.frozen
class LruEviction:
    """
    Rank victim sets by how many are busy, then how many there are, then
    how recently the most recently used of them was used.
    """

    name = "lru"

    def chooseEviction(self, context: EvictionContext) -> Eviction | None:
        return bestEviction(context, self.rank)

    @staticmethod
    def rank(victims: Sequence[Candidate]) -> tuple[int, int, float, float]:
        used = [v.lastUsed for v in victims]
        return (sum(busy(v) for v in victims), len(victims), max(used), sum(used))

    def describe(self) -> Mapping[str, object]:
        return {"name": self.name}
