"""
Tests for the eviction policies (L{llmux.policies.lru},
L{llmux.policies.cheapest_wake}) and their shared search, one context at a
time; and for finding them through the plugin system.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from llmux.interfaces import (
    Candidate,
    Eviction,
    EvictionContext,
    IEvictionPolicy,
    IEvictionPolicyFactory,
)
from llmux.policies import UnknownPolicy, buildEvictionPolicy, findEvictionPolicies
from llmux.policies.cheapest_wake import CheapestWakeEviction
from llmux.policies.eviction import EXHAUSTIVE_LIMIT
from llmux.policies.lru import LruEviction


def candidate(name: str, frees: dict[str, float], **overrides: Any) -> Candidate:
    values: dict[str, Any] = dict(
        name=name,
        state="awake",
        holds=frees,
        frees=frees,
        inFlight=0,
        queueDepth=0,
        idleSecs=10.0,
        lastUsed=0.0,
        wakeCostSecs=None,
    )
    values.update(overrides)
    return Candidate(**values)


def context(
    needs: list[dict[str, float]], free: dict[str, float], *candidates: Candidate
) -> EvictionContext:
    return EvictionContext(
        target="T",
        needs=tuple(needs),
        free=free,
        capacity={"gpu0": 80, "gpu1": 80},
        candidates=candidates,
    )


class LruTests(SynchronousTestCase):
    """
    lru: idle before busy, then fewest victims, then least recently used.
    """

    def test_leastRecentlyUsed(self) -> None:
        choice = LruEviction().chooseEviction(
            context(
                [{"gpu0": 40}],
                {"gpu0": 0},
                candidate("A", {"gpu0": 40}, lastUsed=50.0),
                candidate("B", {"gpu0": 40}, lastUsed=10.0),
            )
        )
        self.assertEqual(choice, Eviction(0, ("B",)))

    def test_idleBeforeBusy(self) -> None:
        choice = LruEviction().chooseEviction(
            context(
                [{"gpu0": 40}],
                {"gpu0": 0},
                candidate("Busy", {"gpu0": 40}, inFlight=2, lastUsed=0.0),
                candidate("Idle", {"gpu0": 40}, lastUsed=90.0),
            )
        )
        self.assertEqual(choice, Eviction(0, ("Idle",)))

    def test_queuedCountsAsBusy(self) -> None:
        choice = LruEviction().chooseEviction(
            context(
                [{"gpu0": 40}],
                {"gpu0": 0},
                candidate("Queued", {"gpu0": 40}, queueDepth=1, lastUsed=0.0),
                candidate("Idle", {"gpu0": 40}, lastUsed=90.0),
            )
        )
        self.assertEqual(choice, Eviction(0, ("Idle",)))

    def test_fewestVictims(self) -> None:
        choice = LruEviction().chooseEviction(
            context(
                [{"gpu0": 60}],
                {"gpu0": 0},
                candidate("S1", {"gpu0": 30}, lastUsed=0.0),
                candidate("S2", {"gpu0": 30}, lastUsed=0.0),
                candidate("Big", {"gpu0": 60}, lastUsed=99.0),
            )
        )
        self.assertEqual(choice, Eviction(0, ("Big",)))

    def test_twoIdleBeforeOneBusy(self) -> None:
        """
        Idleness outranks the number of victims.
        """
        choice = LruEviction().chooseEviction(
            context(
                [{"gpu0": 60}],
                {"gpu0": 0},
                candidate("S1", {"gpu0": 30}),
                candidate("S2", {"gpu0": 30}),
                candidate("Big", {"gpu0": 60}, inFlight=1),
            )
        )
        self.assertEqual(choice, Eviction(0, ("S1", "S2")))

    def test_onlyUsefulCandidates(self) -> None:
        """
        A candidate that frees nothing the target lacks is never a victim.
        """
        choice = LruEviction().chooseEviction(
            context(
                [{"gpu0": 40}],
                {"gpu0": 0, "gpu1": 80},
                candidate("Other", {"gpu1": 40}, lastUsed=-100.0),
                candidate("A", {"gpu0": 40}, lastUsed=50.0),
            )
        )
        self.assertEqual(choice, Eviction(0, ("A",)))

    def test_placements(self) -> None:
        """
        Over alternative placements, the cheapest eviction wins; ties go to
        the earlier placement.
        """
        lru = LruEviction()
        busy0 = candidate("A", {"gpu0": 40}, inFlight=1)
        idle1 = candidate("B", {"gpu1": 40})
        self.assertEqual(
            lru.chooseEviction(
                context(
                    [{"gpu0": 40}, {"gpu1": 40}], {"gpu0": 0, "gpu1": 0}, busy0, idle1
                )
            ),
            Eviction(1, ("B",)),
        )
        idle0 = candidate("A", {"gpu0": 40})
        self.assertEqual(
            lru.chooseEviction(
                context(
                    [{"gpu0": 40}, {"gpu1": 40}], {"gpu0": 0, "gpu1": 0}, idle0, idle1
                )
            ),
            Eviction(0, ("A",)),
        )

    def test_noChoice(self) -> None:
        """
        When evicting every candidate would not make room, there is no
        choice.
        """
        self.assertIsNone(
            LruEviction().chooseEviction(
                context([{"gpu0": 80}], {"gpu0": 0}, candidate("A", {"gpu0": 40}))
            )
        )

    def test_manyCandidates(self) -> None:
        """
        Beyond the exhaustive limit, victims are taken greedily in rank
        order until there is room.
        """
        many = [
            candidate(f"M{i}", {"gpu0": 5}, lastUsed=float(i))
            for i in range(EXHAUSTIVE_LIMIT + 6)
        ]
        choice = LruEviction().chooseEviction(
            context([{"gpu0": 15}], {"gpu0": 0}, *many)
        )
        self.assertEqual(choice, Eviction(0, ("M0", "M1", "M2")))


class CheapestWakeTests(SynchronousTestCase):
    """
    cheapest_wake: idle before busy, then the least total wake cost.
    """

    def test_cheapest(self) -> None:
        choice = CheapestWakeEviction().chooseEviction(
            context(
                [{"gpu0": 40}],
                {"gpu0": 0},
                candidate("Slow", {"gpu0": 40}, wakeCostSecs=90.0, lastUsed=0.0),
                candidate("Fast", {"gpu0": 40}, wakeCostSecs=3.0, lastUsed=99.0),
            )
        )
        self.assertEqual(choice, Eviction(0, ("Fast",)))

    def test_unknownCostIsTheAverage(self) -> None:
        """
        A model never woken is assumed to cost the average of the others.
        """
        policy = CheapestWakeEviction()
        base = [
            candidate("Slow", {"gpu0": 40}, wakeCostSecs=100.0),
            candidate("Fast", {"gpu0": 10}, wakeCostSecs=2.0),
        ]
        unknown = candidate("New", {"gpu0": 40}, wakeCostSecs=None)
        self.assertEqual(
            policy.chooseEviction(context([{"gpu0": 40}], {"gpu0": 0}, *base, unknown)),
            Eviction(0, ("New",)),
        )

    def test_idleBeforeCheap(self) -> None:
        choice = CheapestWakeEviction().chooseEviction(
            context(
                [{"gpu0": 40}],
                {"gpu0": 0},
                candidate("Cheap", {"gpu0": 40}, wakeCostSecs=1.0, inFlight=1),
                candidate("Dear", {"gpu0": 40}, wakeCostSecs=90.0),
            )
        )
        self.assertEqual(choice, Eviction(0, ("Dear",)))


class DiscoveryTests(SynchronousTestCase):
    """
    Eviction policies are found through the plugin system.
    """

    def test_builtIns(self) -> None:
        found = findEvictionPolicies()
        self.assertEqual(sorted(found), ["cheapest_wake", "lru"])
        for factory in found.values():
            verifyObject(IEvictionPolicyFactory, factory)
            verifyObject(IEvictionPolicy, factory.buildEvictionPolicy())
        self.assertIsInstance(buildEvictionPolicy("lru"), LruEviction)

    def test_unknown(self) -> None:
        with self.assertRaises(UnknownPolicy) as caught:
            buildEvictionPolicy("nope")
        self.assertEqual(
            str(caught.exception),
            "unknown eviction policy 'nope' (found: cheapest_wake, lru)",
        )
