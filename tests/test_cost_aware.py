"""
Tests for the C{cost_aware} policy: discovery, settings, and its decisions
one context at a time. Its behaviour under whole workloads is tested through
the simulator in L{tests.test_simulation_targets}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from llmux.config import ConfigError, PolicyConfig
from llmux.interfaces import (
    Decision,
    IPolicyFactory,
    ISwitchPolicy,
    PendingContext,
    SwitchedContext,
    TickContext,
)
from llmux.policies import buildPolicy, findPolicies
from llmux.policies.cost_aware import CostAwarePolicy

MODELS = ("A", "B", "C")


def tick(**overrides: object) -> TickContext:
    """
    A tick: A awake for 1 s and busy, B waiting 2 s, A -> B observed at 10 s.
    """
    values: dict[str, object] = dict(
        active="A",
        activeForSecs=1.0,
        activeInFlight=1,
        activeIdleSecs=0.0,
        queueDepths={"A": 0, "B": 1, "C": 0},
        oldestWaits={"B": 2.0},
        switchCosts={"B": 10.0},
        models=MODELS,
    )
    values.update(overrides)
    return TickContext(**values)  # type: ignore[arg-type]


def pending(**overrides: object) -> PendingContext:
    """
    A request for B, A awake for 1 s and busy, A -> B observed at 10 s.
    """
    values: dict[str, object] = dict(
        target="B",
        active="A",
        targetQueueDepth=1,
        oldestWaitSecs=0.0,
        activeInFlight=1,
        activeForSecs=1.0,
        activeIdleSecs=0.0,
        queueDepths={"A": 0, "B": 1, "C": 0},
        switchCostSecs=10.0,
        switchingTo=None,
        models=MODELS,
    )
    values.update(overrides)
    return PendingContext(**values)  # type: ignore[arg-type]


def policy(**settings: object) -> CostAwarePolicy:
    return CostAwarePolicy.fromConfig(PolicyConfig(extra=settings))


class DiscoveryTests(SynchronousTestCase):
    def test_foundAsPlugin(self) -> None:
        """
        cost_aware is found through the plugin system like the other
        built-ins, and the factory and policy provide their interfaces.
        """
        factory = findPolicies()["cost_aware"]
        verifyObject(IPolicyFactory, factory)
        built = buildPolicy("cost_aware", PolicyConfig())
        verifyObject(ISwitchPolicy, built)
        self.assertIsInstance(built, CostAwarePolicy)
        self.assertEqual(built.name, "cost_aware")
        self.assertIn("quantum", factory.description)


class SettingsTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        p = policy()
        self.assertEqual(
            (
                p.amortize,
                p.minQuantumSecs,
                p.idleFactor,
                p.maxWaitSecs,
                p.defaultSwitchSecs,
                p.schedulerInterval,
            ),
            (3.0, 5.0, 0.25, 300.0, 10.0, 0.25),
        )

    def test_custom(self) -> None:
        p = CostAwarePolicy.fromConfig(
            PolicyConfig(
                request_timeout_secs=600,
                min_active_secs=2,
                extra={
                    "amortize": 5,
                    "min_quantum_secs": 0,
                    "idle_factor": 1,
                    "max_wait_secs": 90,
                    "default_switch_secs": 30,
                },
            )
        )
        self.assertEqual(
            (p.amortize, p.minQuantumSecs, p.idleFactor, p.maxWaitSecs),
            (5, 0, 1, 90),
        )
        self.assertEqual((p.requestTimeout, p.minActiveSecs), (600, 2))
        described = p.describe()
        self.assertEqual(described["name"], "cost_aware")
        self.assertEqual(described["default_switch_secs"], 30)
        self.assertEqual(described["max_wait_secs"], 90)

    def test_bad(self) -> None:
        """
        Bad or unknown keys fail naming the field.
        """
        cases: list[tuple[dict[str, object], str]] = [
            ({"amortize": -1}, "policy.amortize: must be at least 0"),
            ({"max_wait_secs": 0}, "policy.max_wait_secs: must be above 0"),
            ({"idle_factor": "x"}, "policy.idle_factor: must be a number"),
            ({"quantum_secs": 30}, "policy.quantum_secs: unknown key"),
        ]
        for extra, message in cases:
            with self.assertRaises(ConfigError) as caught:
                policy(**extra)
            self.assertIn(message, str(caught.exception))


class ScheduleTests(SynchronousTestCase):
    """
    The scheduler tick: rules 1 to 5 of the module docstring.
    """

    def test_nothingWaiting(self) -> None:
        """
        Nobody waits for another model: stay, however long and idle.
        """
        p = policy()
        quiet = tick(queueDepths={"A": 0, "B": 0, "C": 0}, oldestWaits={})
        self.assertIsNone(p.schedule(quiet))
        self.assertIsNone(
            p.schedule(
                tick(
                    queueDepths={"A": 0, "B": 0, "C": 0},
                    oldestWaits={},
                    activeForSecs=10_000,
                    activeInFlight=0,
                    activeIdleSecs=10_000,
                )
            )
        )

    def test_nothingAwake(self) -> None:
        self.assertEqual(policy().schedule(tick(active=None, switchCosts={})), "B")

    def test_quantum(self) -> None:
        """
        A busy model keeps the GPU for amortize x the cost of the switch
        away: 3 x 10 s.
        """
        p = policy()
        self.assertIsNone(p.schedule(tick(activeForSecs=29.9)))
        self.assertEqual(p.schedule(tick(activeForSecs=30)), "B")
        cheap = tick(activeForSecs=6, switchCosts={"B": 2.0})
        self.assertEqual(p.schedule(cheap), "B")
        self.assertEqual(p.quantum(2.0), 6.0)
        # The floor: never less than min_quantum_secs.
        self.assertEqual(p.quantum(0.5), 5.0)
        self.assertIsNone(p.schedule(tick(activeForSecs=4.9, switchCosts={"B": 0.5})))

    def test_idle(self) -> None:
        """
        An idle model keeps its turn for idle_factor x the switch cost.
        """
        p = policy()
        self.assertIsNone(p.schedule(tick(activeInFlight=0, activeIdleSecs=2.4)))
        self.assertEqual(p.schedule(tick(activeInFlight=0, activeIdleSecs=2.5)), "B")

    def test_staleness(self) -> None:
        """
        A request that would have waited max_wait_secs by the end of the
        switch gets it now, whatever the quantum.
        """
        p = policy(max_wait_secs=60, amortize=100)
        self.assertIsNone(p.schedule(tick(oldestWaits={"B": 49.9})))
        self.assertEqual(p.schedule(tick(oldestWaits={"B": 50.0})), "B")

    def test_mostOverdueFirst(self) -> None:
        """
        Among stale models, the one most overdue goes first, even against
        a deeper queue.
        """
        p = policy(max_wait_secs=60)
        context = tick(
            queueDepths={"A": 0, "B": 50, "C": 1},
            oldestWaits={"B": 55.0, "C": 58.0},
            switchCosts={"B": 10.0, "C": 10.0},
        )
        self.assertEqual(p.schedule(context), "C")

    def test_choiceWeighsDemandAgainstCost(self) -> None:
        """
        The next model is the one with the most waiting demand per second of
        switching: deeper queues and older waits win at equal cost, cheaper
        switches win at equal demand, config order after the active model
        breaks ties.
        """
        p = policy()
        over = {"activeForSecs": 1000.0}
        deeper = tick(
            queueDepths={"A": 0, "B": 1, "C": 3}, oldestWaits={"B": 5, "C": 5}, **over
        )
        self.assertEqual(p.schedule(deeper), "C")
        older = tick(
            queueDepths={"A": 0, "B": 2, "C": 2},
            oldestWaits={"B": 5, "C": 40},
            switchCosts={"B": 10, "C": 10},
            **over,
        )
        self.assertEqual(p.schedule(older), "C")
        cheaper = tick(
            queueDepths={"A": 0, "B": 2, "C": 2},
            oldestWaits={"B": 20, "C": 20},
            switchCosts={"B": 40, "C": 10},
            **over,
        )
        self.assertEqual(p.schedule(cheaper), "C")
        tie = tick(
            active="B",
            queueDepths={"A": 1, "B": 0, "C": 1},
            oldestWaits={"A": 5, "C": 5},
            switchCosts={"A": 10, "C": 10},
            **over,
        )
        self.assertEqual(p.schedule(tie), "C")

    def test_fallbackCosts(self) -> None:
        """
        Before the pair was observed: the average of the switches seen, and
        before any switch, default_switch_secs.
        """
        p = policy(default_switch_secs=20)
        unknown = tick(switchCosts={}, activeForSecs=59)
        self.assertIsNone(p.schedule(unknown))
        self.assertEqual(p.schedule(tick(switchCosts={}, activeForSecs=60)), "B")
        self.assertEqual(p.estimate(None), 20)
        p.afterSwitch(SwitchedContext(None, "A", 4.0))
        self.assertEqual(p.estimate(None), 4.0)
        p.afterSwitch(SwitchedContext("A", "C", 14.0))
        self.assertAlmostEqual(p.estimate(None), 0.3 * 14 + 0.7 * 4)
        self.assertEqual(p.estimate(7.0), 7.0)
        self.assertEqual(p.schedule(tick(switchCosts={}, activeForSecs=21)), "B")


class PendingTests(SynchronousTestCase):
    """
    onPending switches at once only when the choice is clear.
    """

    def test_idleGPU(self) -> None:
        self.assertIs(
            policy().onPending(pending(active=None, switchCostSecs=None)),
            Decision.SWITCH_NOW,
        )

    def test_switchUnderWay(self) -> None:
        self.assertIs(
            policy().onPending(pending(active=None, switchingTo="C")), Decision.SKIP
        )

    def test_turnOver(self) -> None:
        """
        The only waiting model switches at once when the active model's turn
        is over, and waits otherwise.
        """
        p = policy()
        self.assertIs(p.onPending(pending()), Decision.SKIP)
        self.assertIs(p.onPending(pending(activeForSecs=30)), Decision.SWITCH_NOW)
        idle = pending(activeInFlight=0, activeIdleSecs=3)
        self.assertIs(p.onPending(idle), Decision.SWITCH_NOW)
        stale = pending(oldestWaitSecs=295)
        self.assertIs(p.onPending(stale), Decision.SWITCH_NOW)

    def test_othersWaitingLeftToTheTick(self) -> None:
        """
        With other models waiting too, the tick (which sees every model's
        waits and costs) chooses.
        """
        context = pending(activeForSecs=1000, queueDepths={"A": 0, "B": 1, "C": 4})
        self.assertIs(policy().onPending(context), Decision.SKIP)
