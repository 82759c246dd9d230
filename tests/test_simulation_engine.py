"""
Tests for L{llmux.simulation.engine}: the real switcher and real policy
plugins driven on a Clock, checked against runs worked out by hand.
"""

from __future__ import annotations

import random

from twisted.trial.unittest import SynchronousTestCase

from llmux.config import PolicyConfig
from llmux.interfaces import PendingContext
from llmux.policies import UnknownPolicy, findPolicies
from llmux.policies.fifo import FifoPolicy
from llmux.simulation import (
    Request,
    Scenario,
    ServiceTimes,
    Simulation,
    SwitchCosts,
    simulate,
    summarize,
)
from llmux.simulation.backends import SimulatedBackend
from llmux.simulation.hooks import SimulatedHookRunner
from llmux.simulation.records import REFUSED, TIMEOUT
from llmux.simulation.workloads import interleaved, poisson
from llmux.switcher import Switcher

from . import fakeplugins
from .test_switcher import makeConfig


def alternating(gap: float, count: int, service: float = 1.0) -> tuple[Request, ...]:
    """
    C{count} requests, A and B in turn, one every C{gap} seconds.
    """
    return interleaved(
        ("A", "B"), gap, gap * count, ServiceTimes(service), random.Random(0)
    )


def scenario(
    requests: tuple[Request, ...],
    costs: SwitchCosts | None = None,
    concurrency: int = 1,
    models: tuple[str, ...] = ("A", "B"),
) -> Scenario:
    return Scenario(
        models=models,
        requests=requests,
        costs=SwitchCosts.uniform(10) if costs is None else costs,
        defaultConcurrency=concurrency,
    )


class FifoByHandTests(SynchronousTestCase):
    """
    fifo on tiny workloads whose every number is worked out by hand.
    """

    def test_sparseAlternation(self) -> None:
        """
        A and B alternate every 20 s, switches cost 10 s and service 1 s: each
        request finds the other model awake and idle, so each pays exactly
        one whole switch. 6 requests: 6 switches (the cold start included),
        every wait 10 s; the GPU serves 6 s, switches 60 s and idles the
        rest of the 111 s run (the last request arrives at 100 and is done
        at 111): utilization 6 / 66.
        """
        run = simulate(scenario(alternating(20, 6)), "fifo")
        summary = summarize(run)
        self.assertEqual([o.wait for o in run.outcomes], [10.0] * 6)
        self.assertEqual(summary.switches, 6)
        self.assertEqual(
            [(h.model, h.hook) for h in run.hookRuns],
            [
                ("A", "wake"),
                ("A", "sleep"),
                ("B", "wake"),
                ("B", "sleep"),
                ("A", "wake"),
                ("A", "sleep"),
                ("B", "wake"),
                ("B", "sleep"),
                ("A", "wake"),
                ("A", "sleep"),
                ("B", "wake"),
            ],
        )
        self.assertEqual(run.end, 111.0)
        self.assertEqual(
            (summary.time.serving, summary.time.switching, summary.time.blocked),
            (6.0, 60.0, 0.0),
        )
        self.assertEqual(summary.time.idle, 45.0)
        self.assertAlmostEqual(summary.utilization, 6 / 66)
        self.assertAlmostEqual(summary.throughput, 6 / 111)
        self.assertEqual(summary.switchSecs, 10.0)

    def test_denseAlternation(self) -> None:
        """
        A at 0, B at 1, A at 2, B at 3; switches 10 s, service 1 s, one
        request at a time per backend.

          - 0: A cold-starts, done at 10. B (1) arranges a switch; A (2) and
            B (3) ride along with the switches already arranged.
          - 10: A's two requests get their slots: served 10-11 and 11-12.
            The switch to B starts at once and drains A until 12.
          - 12-22: A sleeps (instantly), B wakes; B's two requests are
            served 22-23 and 23-24.

        Waits 10, 21, 9, 20; 2 switches; 4 s serving, 20 s switching.
        """
        run = simulate(scenario(alternating(1, 4)), "fifo")
        summary = summarize(run)
        self.assertEqual([o.wait for o in run.outcomes], [10.0, 21.0, 9.0, 20.0])
        self.assertEqual([o.slotWait for o in run.outcomes], [10.0, 21.0, 8.0, 19.0])
        self.assertEqual(summary.switches, 2)
        self.assertEqual(run.end, 24.0)
        self.assertEqual(
            (
                summary.time.serving,
                summary.time.switching,
                summary.time.blocked,
                summary.time.idle,
            ),
            (4.0, 20.0, 0.0, 0.0),
        )
        self.assertEqual(summary.wait.max if summary.wait else None, 21.0)
        self.assertEqual([m.wait.max for m in summary.models if m.wait], [10.0, 21.0])

    def test_costMatrix(self) -> None:
        """
        With a (from, to) cost matrix each switch costs its pair's price,
        as the switcher's own cost tracker measures it: a cold start to A
        5 s, A -> B 10 s (A's 4 s sleep and a 6 s wake), B -> A 30 s.
        """
        costs = SwitchCosts(
            defaultWakeSecs=99,
            sleepSecs={"A": 4.0},
            pairs={(None, "A"): 5.0, ("A", "B"): 10.0, ("B", "A"): 30.0},
        )
        sim = Simulation(scenario(alternating(50, 4), costs), "fifo")
        run = sim.run()
        self.assertEqual([o.wait for o in run.outcomes], [5.0, 10.0, 30.0, 10.0])
        self.assertEqual(sim.switcher.costs.estimate(None, "A"), 5.0)
        self.assertEqual(sim.switcher.costs.estimate("A", "B"), 10.0)
        self.assertEqual(sim.switcher.costs.estimate("B", "A"), 30.0)
        sleepA, wakeB = run.hookRuns[1:3]
        self.assertEqual(
            [(h.model, h.hook, h.ended - h.started) for h in (sleepA, wakeB)],
            [("A", "sleep", 4.0), ("B", "wake", 6.0)],
        )
        self.assertEqual(wakeB.after, "A")
        self.assertEqual(summarize(run).switchSecs, (5 + 10 + 30 + 10) / 4)

    def test_concurrency(self) -> None:
        """
        A backend serves up to its concurrency at once; the rest wait inside
        it, holding their slots.
        """
        requests = tuple(Request(0.0, "A", 4.0) for _ in range(3))
        run = simulate(scenario(requests, concurrency=2), "fifo")
        self.assertEqual([o.wait for o in run.outcomes], [10.0, 10.0, 14.0])
        self.assertEqual([o.slotWait for o in run.outcomes], [10.0] * 3)
        self.assertEqual(run.end, 18.0)

    def test_timeout(self) -> None:
        """
        A request_timeout_secs shorter than the switch times the request
        out, as the server would (504).
        """
        run = simulate(
            scenario(alternating(100, 1)),
            "fifo",
            PolicyConfig(request_timeout_secs=4),
        )
        summary = summarize(run)
        self.assertEqual([o.error for o in run.outcomes], [TIMEOUT])
        self.assertEqual((summary.served, summary.timedOut), (0, 1))
        self.assertEqual(run.end, 4.0)

    def test_queueFull(self) -> None:
        """
        Requests beyond max_queue are refused (503), as the server would.
        """
        requests = tuple(Request(0.0, "A", 1.0) for _ in range(3))
        run = simulate(scenario(requests), "fifo", PolicyConfig(max_queue=2))
        self.assertEqual([o.error for o in run.outcomes], [None, None, REFUSED])
        self.assertEqual(summarize(run).refused, 1)


class RealSwitcherTests(SynchronousTestCase):
    """
    The simulator runs the server's own switcher and the policy objects
    the plugin system builds; nothing is re-implemented.
    """

    def test_realSwitcherAndPluginPolicies(self) -> None:
        """
        For every built-in policy, the simulation's switcher is a
        L{Switcher} and its policy is what the policy's plugin builds, wired
        to that switcher's hook runner and clock.
        """
        factories = findPolicies()
        for name in ("fifo", "round_robin", "cost_aware"):
            sim = Simulation(scenario(alternating(5, 4)), name)
            self.assertIs(type(sim.switcher), Switcher)
            expected = factories[name].buildPolicy(PolicyConfig())
            self.assertIs(type(sim.policy), type(expected))
            self.assertEqual(sim.policy.name, name)
            self.assertIsInstance(sim.hooks, SimulatedHookRunner)
            run = sim.run()
            self.assertEqual(run.policy, name)
            self.assertEqual(run.settings, sim.policy.describe())

    def test_everyRequestGoesThroughTheSwitcher(self) -> None:
        """
        Each simulated request is an C{acquire} on the real switcher, and
        the switcher is what consults the policy: fifo is asked once per
        request that has to wait for a model that is neither awake nor
        already being switched to.
        """
        acquired: list[str] = []
        consulted: list[str] = []
        acquire, onPending = Switcher.acquire, FifoPolicy.onPending

        def spyAcquire(switcher: Switcher, model: str) -> object:
            acquired.append(model)
            return acquire(switcher, model)

        def spyPending(policy: FifoPolicy, context: PendingContext) -> object:
            consulted.append(context.target)
            return onPending(policy, context)

        self.patch(Switcher, "acquire", spyAcquire)
        self.patch(FifoPolicy, "onPending", spyPending)
        requests = alternating(1, 4)
        simulate(scenario(requests), "fifo")
        self.assertEqual(acquired, [r.model for r in requests])
        # A at 0 (nothing awake) and B at 1; A at 2 and B at 3 ride along.
        self.assertEqual(consulted, ["A", "B"])

    def test_switcherTellsThePluginPolicy(self) -> None:
        """
        The switcher reports its switches to the very policy object the
        simulation built: cost_aware learns the measured switch cost.
        """
        sim = Simulation(scenario(alternating(20, 3)), "cost_aware")
        self.assertIsNone(sim.policy.observedSwitchSecs)  # type: ignore[attr-defined]
        sim.run()
        self.assertEqual(sim.policy.observedSwitchSecs, 10.0)  # type: ignore[attr-defined]

    def test_policiesFoundInThePluginPackage(self) -> None:
        """
        Policies are looked up by name in the plugin package, exactly as
        for the server: a test package's policy is found, and a built-in
        one is not found there.
        """
        sim = Simulation(scenario(alternating(5, 2)), "sticky", plugins=fakeplugins)
        self.assertEqual(type(sim.policy).__name__, "StickyPolicy")
        self.assertRaises(
            UnknownPolicy,
            Simulation,
            scenario(alternating(5, 2)),
            "fifo",
            plugins=fakeplugins,
        )

    def test_neverSwitchingPolicy(self) -> None:
        """
        A policy that never switches leaves every request waiting; the run
        stops the grace time after the last arrival and reports them as
        unfinished.
        """
        reqs = alternating(5, 2)
        cut = Scenario(("A", "B"), reqs, graceSecs=60)
        run = Simulation(cut, "sticky", plugins=fakeplugins).run()
        summary = summarize(run)
        self.assertEqual((summary.served, summary.unfinished), (0, 2))
        self.assertEqual(summary.switches, 0)
        self.assertEqual(run.end, 5 + 60)
        self.assertEqual(summary.time.blocked, 65.0)

    def test_policyErrorsReported(self) -> None:
        """
        What the policy raises is caught and logged by the switcher (which
        then switches at once); the run reports it.
        """

        def broken(self: FifoPolicy, context: object) -> object:
            raise ZeroDivisionError("policy bug")

        self.patch(FifoPolicy, "onPending", broken)
        run = simulate(scenario(alternating(20, 2)), "fifo")
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 2)
        self.assertEqual(len(run.policyErrors), 2)
        self.assertIn("ZeroDivisionError: policy bug", run.policyErrors[0])
        self.assertEqual(summarize(run).served, 2)

    def test_sameScenarioSameRun(self) -> None:
        """
        Two runs of one scenario and policy observe exactly the same.
        """
        requests = poisson(
            {"A": 0.3, "B": 0.2},
            600,
            ServiceTimes(1.0, distribution="exp"),
            random.Random(7),
        )
        first = simulate(scenario(requests, concurrency=4), "round_robin")
        second = simulate(scenario(requests, concurrency=4), "round_robin")
        self.assertEqual(first.samples, second.samples)
        self.assertEqual(first.hookRuns, second.hookRuns)
        self.assertEqual(
            [o.wait for o in first.outcomes], [o.wait for o in second.outcomes]
        )

    def test_singleModel(self) -> None:
        """
        With one model, every built-in policy wakes it once and serves
        every request alike.
        """
        requests = poisson({"A": 1.0}, 300, ServiceTimes(0.5), random.Random(3))
        waits = []
        for name in ("fifo", "round_robin", "cost_aware"):
            run = simulate(scenario(requests, models=("A",)), name)
            self.assertEqual([(h.model, h.hook) for h in run.hookRuns], [("A", "wake")])
            waits.append([o.wait for o in run.outcomes])
        self.assertEqual(waits[0], waits[1])
        self.assertEqual(waits[0], waits[2])


class ScenarioTests(SynchronousTestCase):
    """
    A scenario refuses what cannot be simulated.
    """

    def test_invalid(self) -> None:
        cases = [
            ((), (), "at least one model"),
            (("A", "A"), (), "repeat"),
            (("A",), (Request(0, "B", 1),), "not in the scenario: B"),
            (("A",), (Request(1, "A", 1), Request(0, "A", 1)), "sorted"),
        ]
        for models, requests, message in cases:
            with self.assertRaises(ValueError) as caught:
                Scenario(models, requests)
            self.assertIn(message, str(caught.exception))

    def test_config(self) -> None:
        """
        The switcher's config has the scenario's models in order, with
        placeholder hooks, and the policy table given.
        """
        settings = PolicyConfig(min_active_secs=3)
        config = Scenario(("B", "A"), ()).config(settings)
        self.assertEqual(config.modelNames, ("B", "A"))
        self.assertEqual(config.policy, settings)
        self.assertEqual({m.wake for m in config.models}, {"simulated"})


class HookRunnerTests(SynchronousTestCase):
    """
    The simulated hook runner prices hooks from its L{SwitchCosts}.
    """

    def test_perModelDurations(self) -> None:
        """
        Without a pair, a switch costs the old model's sleep plus the new
        model's wake.
        """
        costs = SwitchCosts(
            defaultWakeSecs=5, wakeSecs={"B": 20}, defaultSleepSecs=1, sleepSecs={}
        )
        self.assertEqual(costs.switchSecs(None, "A"), 5)
        self.assertEqual(costs.switchSecs("A", "B"), 21)
        self.assertEqual(costs.switchSecs("B", "A"), 6)

    def test_pairShorterThanSleep(self) -> None:
        """
        A pair cheaper than the sleep before it leaves a wake of 0 s.
        """
        costs = SwitchCosts(sleepSecs={"A": 8}, pairs={("A", "B"): 5})
        self.assertEqual(costs.wakeFor("B", "A", 8), 0)

    def test_aliveAtOnce(self) -> None:
        """
        Hooks other than wake and sleep succeed at once, without a record.
        """
        from twisted.internet.task import Clock

        hooks = SimulatedHookRunner(Clock(), SwitchCosts.uniform(10))
        model = makeConfig("A").models[0]
        result = self.successResultOf(hooks.run(model, "alive"))
        self.assertTrue(result.succeeded)
        self.assertEqual((hooks.runs, hooks.running), ([], 0))

    def test_backendConcurrency(self) -> None:
        """
        A backend needs room for at least one request.
        """
        from twisted.internet.task import Clock

        self.assertRaises(ValueError, SimulatedBackend, Clock(), "A", 0)
