# -*- test-case-name: tests.test_eviction -*-
"""
What the built-in eviction policies share: the search for the best set of
victims, and the plugin factory.

A policy only says how it ranks a set of victims (L{EvictionSearch.rank});
the search tries, for every placement of the target, the sets of candidates
that would make room, and keeps the best-ranked one. Only candidates that
free something the placement is short of are considered, so the sets stay
few: exhaustively up to L{EXHAUSTIVE_LIMIT} such candidates, greedily in
rank order beyond.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations
from typing import Any, Protocol

import attrs
from twisted.plugin import IPlugin
from twisted.python.reflect import namedAny
from zope.interface import implementer

from ..interfaces import (
    Candidate,
    Eviction,
    EvictionContext,
    IEvictionPolicy,
    IEvictionPolicyFactory,
)
from ..resources import shortfall

__all__ = ["EXHAUSTIVE_LIMIT", "EvictionFactory", "Ranking", "bestEviction"]

#: Up to this many useful candidates, every set of them is tried (2**n).
EXHAUSTIVE_LIMIT = 10


class Ranking(Protocol):
    """
    How a policy ranks a set of victims: lower is better.
    """

    def __call__(self, victims: Sequence[Candidate]) -> Any: ...


def bestEviction(context: EvictionContext, rank: Ranking) -> Eviction | None:
    """
    The best-ranked set of victims, over every placement of the target,
    that makes room; ties go to the earlier placement. C{None} if no set
    does.
    """
    best: tuple[Any, Eviction] | None = None
    for placement, need in enumerate(context.needs):
        short = shortfall(need, context.free)
        if not short:
            continue
        useful = [
            c for c in context.candidates if any(c.frees.get(p, 0) > 0 for p in short)
        ]
        for victims in _sets(context, placement, useful, rank):
            key = rank(victims)
            if best is None or key < best[0]:
                names = tuple(v.name for v in victims)
                best = (key, Eviction(placement, names))
    return best[1] if best else None


def _sets(
    context: EvictionContext,
    placement: int,
    useful: list[Candidate],
    rank: Ranking,
) -> list[tuple[Candidate, ...]]:
    """
    The sets of C{useful} candidates that make room for C{placement}.
    """
    if len(useful) <= EXHAUSTIVE_LIMIT:
        return [
            victims
            for size in range(1, len(useful) + 1)
            for victims in combinations(useful, size)
            if context.enough(placement, [v.name for v in victims])
        ]
    chosen: list[Candidate] = []
    for candidate in sorted(useful, key=lambda c: rank([c])):
        chosen.append(candidate)
        if context.enough(placement, [v.name for v in chosen]):
            return [tuple(chosen)]
    return []


def busy(candidate: Candidate) -> bool:
    """
    Whether evicting C{candidate} would make requests wait: it has some in
    flight (it must drain) or queued.
    """
    return candidate.inFlight > 0 or candidate.queueDepth > 0


@implementer(IPlugin, IEvictionPolicyFactory)
@attrs.frozen
class EvictionFactory:
    """
    An eviction policy as a plugin: its name, a one-line description and the
    dotted name of a callable that builds it (imported only when selected).
    """

    name: str
    description: str
    builder: str

    def buildEvictionPolicy(self) -> IEvictionPolicy:
        policy: IEvictionPolicy = namedAny(self.builder)()
        return policy
