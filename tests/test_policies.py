"""
Tests for the policies: discovery through the plugin system, settings, and
how fifo and round_robin behave under traffic (on a Clock).
"""

from __future__ import annotations

import attrs
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from llmux.config import ConfigError, PolicyConfig
from llmux.interfaces import (
    Decision,
    IPolicyFactory,
    ISlot,
    ISwitchPolicy,
    PendingContext,
    TickContext,
)
from llmux.policies import PolicyConflict, UnknownPolicy, buildPolicy, findPolicies
from llmux.policies.fifo import FifoPolicy
from llmux.policies.round_robin import RoundRobinPolicy
from llmux.switcher import Switcher
from llmux.testing.hooks import FakeHookRunner

from . import conflictplugins, fakeplugins
from .test_switcher import makeConfig


class DiscoveryTests(SynchronousTestCase):
    """
    Policies are found by name through Twisted's plugin system.
    """

    def test_builtinsFoundAsPlugins(self) -> None:
        """
        fifo and round_robin are found in twisted.plugins like any third-party
        policy, and each factory and policy provides its interface.
        """
        policies = findPolicies()
        self.assertIn("fifo", policies)
        self.assertIn("round_robin", policies)
        for name in ("fifo", "round_robin"):
            verifyObject(IPolicyFactory, policies[name])
            policy = policies[name].buildPolicy(PolicyConfig())
            verifyObject(ISwitchPolicy, policy)
            self.assertEqual(policy.name, name)

    def test_unknownNameListsFound(self) -> None:
        """
        An unknown name fails with the names that were found.
        """
        with self.assertRaises(UnknownPolicy) as caught:
            buildPolicy("nope", PolicyConfig(), fakeplugins)
        self.assertEqual(str(caught.exception), "unknown policy 'nope' (found: sticky)")

    def test_reExportCountsOnce(self) -> None:
        """
        The same factory found twice (a plugin module re-exporting another's)
        is one policy.
        """
        self.assertEqual(list(findPolicies(fakeplugins)), ["sticky"])

    def test_conflict(self) -> None:
        """
        Two different factories claiming one name are refused.
        """
        with self.assertRaises(PolicyConflict) as caught:
            findPolicies(conflictplugins)
        self.assertIn("'sticky'", str(caught.exception))

    def test_buildByName(self) -> None:
        """
        A policy found in a plugin package is built by name from the settings.
        """
        policy = buildPolicy(
            "sticky", PolicyConfig(request_timeout_secs=3), fakeplugins
        )
        self.assertEqual(policy.requestTimeout, 3)


class SettingsTests(SynchronousTestCase):
    """
    Policies read and validate their part of the policy: table.
    """

    def test_commonSettings(self) -> None:
        """
        The common keys reach every built-in policy.
        """
        settings = PolicyConfig(
            request_timeout_secs=30, drain_before_switch=False, min_active_secs=4
        )
        for policy in (
            FifoPolicy.fromConfig(settings),
            RoundRobinPolicy.fromConfig(settings),
        ):
            self.assertEqual(
                (policy.requestTimeout, policy.drainBeforeSwitch, policy.minActiveSecs),
                (30, False, 4),
            )

    def test_roundRobinSettings(self) -> None:
        """
        round_robin reads quantum_secs and idle_secs, with defaults.
        """
        policy = RoundRobinPolicy.fromConfig(
            PolicyConfig(extra={"quantum_secs": 12, "idle_secs": 0})
        )
        self.assertEqual((policy.quantumSecs, policy.idleSecs), (12, 0))
        self.assertEqual(policy.describe()["quantum_secs"], 12)
        default = RoundRobinPolicy.fromConfig(PolicyConfig())
        self.assertEqual((default.quantumSecs, default.idleSecs), (30, 5))

    def test_badSettings(self) -> None:
        """
        Bad or unknown policy keys fail naming the field.
        """
        cases = [
            (
                RoundRobinPolicy,
                {"quantum_secs": 0},
                "policy.quantum_secs: must be above 0, not 0",
            ),
            (
                RoundRobinPolicy,
                {"quantum_secs": "x"},
                "policy.quantum_secs: must be a positive",
            ),
            (
                RoundRobinPolicy,
                {"idle_secs": -1},
                "policy.idle_secs: must be at least 0",
            ),
            (RoundRobinPolicy, {"quantum": 3}, "policy.quantum: unknown key"),
            (FifoPolicy, {"quantum_secs": 3}, "policy.quantum_secs: unknown key"),
        ]
        for cls, extra, message in cases:
            with self.assertRaises(ConfigError) as caught:
                cls.fromConfig(PolicyConfig(extra=extra))
            self.assertIn(message, str(caught.exception))


def pending(**overrides: object) -> PendingContext:
    values: dict[str, object] = dict(
        target="B",
        active="A",
        targetQueueDepth=1,
        oldestWaitSecs=0.0,
        activeInFlight=1,
        activeForSecs=1.0,
        activeIdleSecs=0.0,
        queueDepths={"A": 0, "B": 1, "C": 0},
        switchCostSecs=None,
        switchingTo=None,
        models=("A", "B", "C"),
    )
    values.update(overrides)
    return PendingContext(**values)  # type: ignore[arg-type]


def tick(**overrides: object) -> TickContext:
    values: dict[str, object] = dict(
        active="A",
        activeForSecs=1.0,
        activeInFlight=1,
        activeIdleSecs=0.0,
        queueDepths={"A": 0, "B": 1, "C": 1},
        oldestWaits={},
        switchCosts={},
        models=("A", "B", "C"),
    )
    values.update(overrides)
    return TickContext(**values)  # type: ignore[arg-type]


class RoundRobinDecisionTests(SynchronousTestCase):
    """
    round_robin's decisions, one context at a time.
    """

    policy = RoundRobinPolicy(quantumSecs=30, idleSecs=5)

    def test_idleGPU(self) -> None:
        """
        With nothing awake and no switch under way, switch at once.
        """
        self.assertIs(self.policy.onPending(pending(active=None)), Decision.SWITCH_NOW)

    def test_busyActiveKeepsTurn(self) -> None:
        """
        While the active model works within its quantum, others wait.
        """
        self.assertIs(self.policy.onPending(pending()), Decision.SKIP)
        self.assertIsNone(self.policy.schedule(tick(activeForSecs=29.9)))

    def test_quantumEndsTurn(self) -> None:
        """
        After the quantum the next model in the ring with waiters gets the turn.
        """
        self.assertEqual(self.policy.schedule(tick(activeForSecs=30)), "B")
        self.assertEqual(self.policy.schedule(tick(active="B", activeForSecs=30)), "C")
        self.assertEqual(
            self.policy.schedule(
                tick(active="C", activeForSecs=30, queueDepths={"A": 2, "B": 1, "C": 0})
            ),
            "A",
        )

    def test_idleEndsTurn(self) -> None:
        """
        A model idle for idle_secs yields; one idle for less does not.
        """
        self.assertIsNone(
            self.policy.schedule(tick(activeInFlight=0, activeIdleSecs=4.9))
        )
        self.assertEqual(
            self.policy.schedule(tick(activeInFlight=0, activeIdleSecs=5)), "B"
        )
        idle = pending(activeInFlight=0, activeIdleSecs=6)
        self.assertIs(self.policy.onPending(idle), Decision.SWITCH_NOW)

    def test_onlyNextInRingSwitchesAtOnce(self) -> None:
        """
        When the turn is over, only the next model in the ring switches at
        once; others wait for their turn.
        """
        context = pending(
            target="C",
            activeInFlight=0,
            activeIdleSecs=6,
            queueDepths={"A": 0, "B": 1, "C": 1},
        )
        self.assertIs(self.policy.onPending(context), Decision.SKIP)

    def test_switchUnderWay(self) -> None:
        """
        While a switch is under way, nothing more is arranged.
        """
        self.assertIs(
            self.policy.onPending(pending(active=None, switchingTo="C")), Decision.SKIP
        )

    def test_nothingWaiting(self) -> None:
        """
        An idle model with nobody else waiting keeps the GPU.
        """
        self.assertIsNone(
            self.policy.schedule(
                tick(
                    activeInFlight=0,
                    activeIdleSecs=100,
                    queueDepths={"A": 0, "B": 0, "C": 0},
                )
            )
        )


@attrs.define
class Traffic:
    """
    Plays requests through a real switcher on a Clock: each request acquires a
    slot, is served for C{serviceSecs}, and releases it.
    """

    policy: ISwitchPolicy
    models: tuple[str, ...] = ("A", "B")
    serviceSecs: float = 0.1
    wakeSecs: float = 0.5
    sleepSecs: float = 0.5
    clock: Clock = attrs.field(factory=Clock)
    waits: list[float] = attrs.field(factory=list)
    failures: list[object] = attrs.field(factory=list)

    def play(self, arrivals: list[tuple[float, str]], until: float) -> FakeHookRunner:
        hooks = FakeHookRunner(
            self.clock, durations={"wake": self.wakeSecs, "sleep": self.sleepSecs}
        )
        switcher = Switcher(makeConfig(*self.models), self.policy, hooks, self.clock)
        switcher.start()
        for at, model in arrivals:
            self.clock.callLater(at, self._request, switcher, model)
        step = 0.05
        for _ in range(int(until / step)):
            self.clock.advance(step)
        switcher.stop()
        return hooks

    def _request(self, switcher: Switcher, model: str) -> None:
        arrived = self.clock.seconds()

        def served(slot: ISlot) -> None:
            self.waits.append(self.clock.seconds() - arrived)
            self.clock.callLater(self.serviceSecs, slot.release)

        switcher.acquire(model).addCallbacks(served, self.failures.append)


class TrafficTests(SynchronousTestCase):
    """
    Whole runs of traffic through the real switcher with each policy.
    """

    def interleaved(self, count: int) -> list[tuple[float, str]]:
        return [(i * 1.5, "AB"[i % 2]) for i in range(count)]

    def test_roundRobinSwitchesFarLessThanFifo(self) -> None:
        """
        Under interleaved A/B arrivals, fifo switches on nearly every request
        while round_robin switches at least 5x less often; every request is
        served and none waits longer than one turn of the other model.
        """
        arrivals = self.interleaved(200)
        fifo = Traffic(FifoPolicy())
        fifoWakes = [
            c for c in fifo.play(arrivals, until=340).calls if c.hook == "wake"
        ]
        roundRobin = Traffic(RoundRobinPolicy(quantumSecs=30, idleSecs=5))
        rrWakes = [
            c for c in roundRobin.play(arrivals, until=340).calls if c.hook == "wake"
        ]

        for traffic in (fifo, roundRobin):
            self.assertEqual(len(traffic.waits), 200)
            self.assertEqual(traffic.failures, [])
        self.assertGreaterEqual(len(fifoWakes), 190)
        self.assertLessEqual(len(rrWakes) * 5, len(fifoWakes))
        # Worst case: a request arrives as its own model starts draining. It
        # waits out that drain and switch, the other model's whole turn (one
        # quantum, noticed within a scheduler tick), its drain and the switch
        # back.
        drainAndSwitch = 0.1 + 0.5 + 0.5
        bound = drainAndSwitch + 30 + 0.1 + drainAndSwitch
        self.assertLessEqual(max(roundRobin.waits), bound + 1e-6)

    def test_singleModelNoNeedlessSwitches(self) -> None:
        """
        With traffic for one model only, every policy wakes it once.
        """
        arrivals = [(i * 0.7, "A") for i in range(100)]
        for policy in (FifoPolicy(), RoundRobinPolicy()):
            traffic = Traffic(policy)
            hooks = traffic.play(arrivals, until=80)
            self.assertEqual(hooks.log(), [("A", "wake")])
            self.assertEqual(len(traffic.waits), 100)

    def test_ringOrder(self) -> None:
        """
        With A busy and B and C waiting, the turns go A, B, C, then back to A.
        """
        arrivals = [(i * 0.5, "A") for i in range(200)]
        arrivals += [(1.0, "C"), (1.5, "B"), (2.0, "C"), (40.0, "A")]
        traffic = Traffic(
            RoundRobinPolicy(quantumSecs=10, idleSecs=5), models=("A", "B", "C")
        )
        hooks = traffic.play(sorted(arrivals), until=120)
        wakes = [c.model for c in hooks.calls if c.hook == "wake"]
        self.assertEqual(wakes[:4], ["A", "B", "C", "A"])
        self.assertEqual(traffic.failures, [])
