"""
Tests for residency in the simulator: scenarios with a declared capacity run
the real switcher with several models awake at once, the eviction policy
built through the plugin system, and the records, report and timelines show
it (L{llmux.simulation.residency} and its use by the engine, the figures and
C{llmux simulate}).
"""

from __future__ import annotations

import io
import json
import random
import sys
import xml.etree.ElementTree as ET
from typing import Any

from twisted.internet.task import Clock
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from llmux.config import ConfigError, PolicyConfig
from llmux.interfaces import ModelState
from llmux.policies import UnknownPolicy
from llmux.policies.cheapest_wake import CheapestWakeEviction
from llmux.policies.lru import LruEviction
from llmux.simulation import (
    Request,
    Scenario,
    ServiceTimes,
    Simulation,
    SwitchCosts,
    simulate,
    summarize,
)
from llmux.simulation.cli import main
from llmux.simulation.hooks import SimulatedHookRunner
from llmux.simulation.records import REFUSED, Run, Sample
from llmux.simulation.report import formatTable, reportJSON
from llmux.simulation.residency import (
    NotationError,
    Residency,
    describeResidency,
    formatPlacements,
    parseAmounts,
    parseCapacity,
    parsePlacements,
)
from llmux.simulation.stats import Summary
from llmux.simulation.timeline import PALETTE, renderTimeline
from llmux.simulation.workloads import interleaved

from . import fakeplugins

SVG = "{http://www.w3.org/2000/svg}"

#: Two 80-unit GPUs.
TWO_GPUS = {"gpu0": 80.0, "gpu1": 80.0}

#: Three models that all fit on two GPUs, placed first come, first served:
#: A on gpu0, B then C on gpu1.
THREE_FIT = {
    "A": Residency(resources=parsePlacements("gpu0:70/gpu1:70")),
    "B": Residency(resources=parsePlacements("gpu0:50/gpu1:50")),
    "C": Residency(resources=parsePlacements("gpu0:30/gpu1:30")),
}

#: A fourth model: at most three of the four fit at once.
FOUR = {**THREE_FIT, "D": Residency(resources=parsePlacements("gpu0:40/gpu1:40"))}

POLICIES = ("fifo", "round_robin", "cost_aware")


def turns(models: tuple[str, ...], gap: float, count: int) -> tuple[Request, ...]:
    """
    C{count} requests of 1 s, the models taking turns, one every C{gap} s.
    """
    return interleaved(models, gap, gap * count, ServiceTimes(1.0), random.Random(0))


def twoGpus(
    requests: tuple[Request, ...],
    residency: dict[str, Residency],
    capacity: dict[str, float] | None = TWO_GPUS,
    **kwargs: Any,
) -> Scenario:
    """
    A scenario of C{residency}'s models on two GPUs, 10 s switches; without
    the capacity if C{capacity} is C{None}.
    """
    return Scenario(
        models=tuple(residency),
        requests=requests,
        costs=kwargs.pop("costs", SwitchCosts.uniform(10)),
        capacity=capacity,
        residency=residency if capacity is not None else {},
        **kwargs,
    )


class NotationTests(SynchronousTestCase):
    """
    Amounts, placements and capacities as the options write them.
    """

    def test_parse(self) -> None:
        self.assertEqual(parseAmounts("gpu0:70+gpu1:7.5"), {"gpu0": 70, "gpu1": 7.5})
        self.assertEqual(
            parsePlacements("gpu0:30/gpu1:30"), ({"gpu0": 30}, {"gpu1": 30})
        )
        self.assertEqual(
            parseCapacity(["gpu0=80", " ram = 256"]), {"gpu0": 80, "ram": 256}
        )

    def test_roundTrip(self) -> None:
        """
        What L{formatPlacements} writes, L{parsePlacements} reads back.
        """
        text = "gpu0:70+gpu1:70/gpu1:30.5"
        self.assertEqual(formatPlacements(parsePlacements(text)), text)

    def test_errors(self) -> None:
        cases = [
            (parseAmounts, "gpu0", "expected POOL:UNITS"),
            (parseAmounts, ":3", "expected POOL:UNITS"),
            (parseAmounts, "gpu0:x", "gpu0: not a number: 'x'"),
            (parseAmounts, "gpu0:0", "gpu0: must be a number above 0"),
            (parseAmounts, "gpu0:nan", "gpu0: must be a number above 0"),
            (parseAmounts, "gpu0:1+gpu0:2", "pool 'gpu0' given twice"),
            (parsePlacements, "gpu0:1/", "expected POOL:UNITS"),
        ]
        for parse, text, message in cases:
            with self.assertRaises(NotationError) as caught:
                parse(text)
            self.assertIn(message, str(caught.exception))
        self.assertRaises(NotationError, parseCapacity, ["gpu0:80"])
        self.assertRaises(NotationError, parseCapacity, ["gpu0=1", "gpu0=2"])

    def test_describe(self) -> None:
        """
        A description lists each key some model sets: flags as the models
        that set them, other keys by model, in the options' notation.
        """
        residency = {
            "B": Residency(pin=True, idle_ttl_secs=60.0),
            "A": Residency(
                resources=parsePlacements("gpu0:30/gpu1:30"),
                asleep_resources={"ram": 8.0},
                pin=True,
            ),
        }
        self.assertEqual(
            describeResidency(("A", "B", "C"), residency),
            {
                "resources": {"A": "gpu0:30/gpu1:30"},
                "asleep_resources": {"A": "ram:8"},
                "idle_ttl_secs": {"B": 60.0},
                "pin": ["A", "B"],
            },
        )
        self.assertEqual(describeResidency(("A",), {}), {})


class ScenarioTests(SynchronousTestCase):
    """
    A scenario's capacity and residency keys become the switcher's config,
    checked as a config file's would be.
    """

    def test_config(self) -> None:
        """
        The config has the capacity, the eviction policy's name and each
        model's keys; models without keys hold the whole capacity.
        """
        scenario = Scenario(
            ("A", "B", "C"),
            (),
            capacity=TWO_GPUS,
            residency={
                "A": Residency(
                    resources=parsePlacements("gpu0:30/gpu1:30"),
                    asleep_resources={"gpu0": 1.0},
                    unload=True,
                    unload_after_secs=5.0,
                    idle_ttl_secs=60.0,
                    pin=True,
                    preload=True,
                    max_in_flight=2,
                )
            },
            eviction="cheapest_wake",
        )
        config = scenario.config(PolicyConfig(max_queue=3))
        self.assertEqual(dict(config.capacity or {}), TWO_GPUS)
        self.assertEqual(config.eviction, "cheapest_wake")
        self.assertEqual(config.policy, PolicyConfig(max_queue=3))
        a, b, _ = config.models
        self.assertEqual(Residency.fromConfig(a), scenario.residencyOf("A"))
        self.assertEqual(a.unload, "simulated")
        self.assertEqual(a.pools, ("gpu0", "gpu1"))
        self.assertEqual(Residency.fromConfig(b), Residency())
        self.assertEqual(b.placementsWithin(config.pools), (TWO_GPUS,))

    def test_withoutCapacity(self) -> None:
        """
        Without a capacity every model is exclusive, as before residency.
        """
        config = Scenario(("A", "B"), ()).config(PolicyConfig())
        self.assertIsNone(config.capacity)
        self.assertEqual([m.resources for m in config.models], [(), ()])

    def test_invalid(self) -> None:
        """
        What llmux would reject in a config file is rejected with its
        message; residency for models outside the scenario too.
        """
        big = Residency(resources=({"gpu0": 90.0},))
        cases = [
            ({"A": big}, TWO_GPUS, "models.A.resources: can never fit"),
            (
                {"A": Residency(resources=({"gpu9": 1.0},))},
                TWO_GPUS,
                "models.A.resources.gpu9: unknown pool",
            ),
            (
                {"A": Residency(resources=({"gpu0": 1.0},))},
                None,
                "needs a top-level capacity table",
            ),
            (
                {"A": Residency(pin=True), "B": Residency(pin=True)},
                TWO_GPUS,
                "models.B.pin: cannot be awake together",
            ),
        ]
        for residency, capacity, message in cases:
            with self.assertRaises(ConfigError) as caught:
                Scenario(("A", "B"), (), capacity=capacity, residency=residency)
            self.assertIn(message, str(caught.exception))
        with self.assertRaises(ValueError) as caught:
            Scenario(("A",), (), residency={"Z": Residency()})
        self.assertIn(
            "residency for models not in the scenario: Z", str(caught.exception)
        )


class ResidencyRunTests(SynchronousTestCase):
    """
    The real switcher keeps several models awake in a simulation with a
    capacity.
    """

    def test_allFitByHand(self) -> None:
        """
        A, B and C take turns every 5 s, 1 s each, on two GPUs that hold
        all three: each is admitted (woken at once, beside the others) when
        its first request comes, wakes in 10 s, and stays awake. The first
        request of each waits 10 s, the others not at all; 3 wakes, no
        evictions.
        """
        run = simulate(twoGpus(turns(("A", "B", "C"), 5, 12), THREE_FIT), "fifo")
        summary = summarize(run)
        self.assertEqual([o.wait for o in run.outcomes], [10.0] * 3 + [0.0] * 9)
        self.assertEqual(
            [(w.t, w.from_, w.to, w.secs) for w in run.switched],
            [(10.0, None, "A", 10.0), (15.0, None, "B", 10.0), (20.0, None, "C", 10.0)],
        )
        self.assertEqual((summary.switches, summary.switchSecs), (3, 10.0))
        self.assertEqual(run.evicted, ())
        residency = summary.residency
        assert residency is not None
        self.assertEqual(
            (residency.admissions, residency.evictions, residency.maxAwake), (3, 0, 3)
        )
        self.assertEqual(residency.wakes, {"A": 1, "B": 1, "C": 1})
        # Awake: A from 10, B from 15, C from 20 to the end at 56.
        self.assertAlmostEqual(residency.meanAwake, (46 + 41 + 36) / 56)

    def test_samplesHoldEveryAwakeModel(self) -> None:
        """
        Samples hold the set of awake models and each model's state.
        """
        run = simulate(twoGpus(turns(("A", "B", "C"), 5, 12), THREE_FIT), "fifo")
        at = {sample.t: sample for sample in run.samples}
        waking, asleep = ModelState.WAKING, ModelState.ASLEEP
        self.assertEqual(at[5.0].awake, ())
        self.assertEqual(at[5.0].states, (waking, waking, asleep))
        self.assertTrue(at[5.0].switching)
        self.assertEqual(at[15.0].awake, ("A", "B"))
        self.assertEqual(at[20.0].awake, ("A", "B", "C"))
        self.assertEqual(run.samples[-1].awake, ("A", "B", "C"))

    def test_residencySwitchesLessAndWaitsLess(self) -> None:
        """
        On two GPUs that hold all three models, every built-in policy wakes
        each model once and serves with hardly any wait; the same workload
        one model at a time costs switch after switch, and much waiting.
        """
        requests = turns(("A", "B", "C"), 1, 600)
        for name in POLICIES:
            alone = summarize(
                simulate(
                    twoGpus(requests, THREE_FIT, None, defaultConcurrency=16), name
                )
            )
            shared = summarize(
                simulate(twoGpus(requests, THREE_FIT, defaultConcurrency=16), name)
            )
            self.assertEqual(shared.served, shared.requests, name)
            self.assertEqual(alone.served, alone.requests, name)
            # 57 (fifo) or 17 switches against 3 wakes.
            self.assertEqual(shared.switches, 3, name)
            self.assertGreater(alone.switches, 5 * shared.switches, name)
            # A mean wait of 17 to 33 s against 0.11 s.
            assert alone.wait is not None and shared.wait is not None
            self.assertLess(100 * shared.wait.mean, alone.wait.mean, name)
            self.assertEqual(shared.wait.p95, 0.0, name)
            self.assertIsNone(alone.residency)

    def test_evictions(self) -> None:
        """
        With four models of which three fit, the fourth is woken by putting
        one to sleep: every eviction is counted, for capacity, and each
        evicting wake names its first victim. Waits are still far shorter
        than one model at a time.
        """
        requests = turns(("A", "B", "C", "D"), 2, 200)
        run = simulate(twoGpus(requests, FOUR), "fifo")
        summary = summarize(run)
        residency = summary.residency
        assert residency is not None
        self.assertEqual(summary.served, summary.requests)
        self.assertGreater(residency.evictions, 0)
        self.assertEqual({e.reason for e in run.evicted}, {"capacity"})
        evicting = [w for w in run.switched if w.from_ is not None]
        self.assertEqual(len(evicting), summary.switches - residency.admissions)
        self.assertEqual(residency.maxAwake, 3)
        alone = summarize(simulate(twoGpus(requests, FOUR, None), "fifo"))
        assert alone.wait is not None and summary.wait is not None
        self.assertLess(2 * summary.wait.mean, alone.wait.mean)

    def test_idleTtl(self) -> None:
        """
        A model with idle_ttl_secs is put to sleep that long after its last
        request ended, and woken again by the next one.
        """
        residency = {
            "A": Residency(resources=({"gpu0": 40.0},), idle_ttl_secs=30.0),
            "B": Residency(resources=({"gpu1": 40.0},)),
        }
        requests = (Request(0.0, "A", 1.0), Request(100.0, "A", 1.0))
        run = simulate(twoGpus(requests, residency), "fifo")
        self.assertEqual(
            [(e.t, e.model, e.reason) for e in run.evicted], [(41.0, "A", "idle_ttl")]
        )
        self.assertEqual([o.wait for o in run.outcomes], [10.0, 10.0])
        residency_ = summarize(run).residency
        assert residency_ is not None
        self.assertEqual((residency_.idleSleeps, residency_.evictions), (1, 0))

    def test_pinRefuses(self) -> None:
        """
        A request that could only fit by evicting a pinned model is refused
        at once (503), as the server would.
        """
        residency = {
            "A": Residency(resources=({"gpu0": 60.0},), pin=True),
            "B": Residency(resources=({"gpu0": 60.0},)),
        }
        requests = (Request(0.0, "A", 1.0), Request(20.0, "B", 1.0))
        run = simulate(twoGpus(requests, residency), "fifo")
        self.assertEqual([o.error for o in run.outcomes], [None, REFUSED])
        self.assertEqual(summarize(run).refused, 1)

    def test_maxInFlight(self) -> None:
        """
        max_in_flight holds back requests the backend could take: they wait
        for a slot in the switcher.
        """
        residency = {"A": Residency(resources=({"gpu0": 40.0},), max_in_flight=1)}
        requests = tuple(Request(0.0, "A", 4.0) for _ in range(3))
        run = simulate(twoGpus(requests, residency, defaultConcurrency=4), "fifo")
        self.assertEqual([o.slotWait for o in run.outcomes], [10.0, 14.0, 18.0])

    def test_preload(self) -> None:
        """
        A preload model is woken at the start, before any request.
        """
        residency = {
            "A": Residency(resources=({"gpu0": 40.0},), preload=True),
            "B": Residency(resources=({"gpu1": 40.0},)),
        }
        run = simulate(twoGpus((Request(30.0, "A", 1.0),), residency), "fifo")
        self.assertEqual([(w.t, w.to) for w in run.switched], [(10.0, "A")])
        self.assertEqual([o.wait for o in run.outcomes], [0.0])

    def test_unload(self) -> None:
        """
        A model with an unload hook starts unloaded and holds its
        asleep_resources only once woken.
        """
        residency = {
            "A": Residency(
                resources=({"gpu0": 40.0},),
                asleep_resources={"gpu1": 80.0},
                unload=True,
            ),
            "B": Residency(resources=({"gpu1": 40.0},)),
        }
        run = simulate(
            twoGpus((Request(0.0, "B", 1.0), Request(20.0, "A", 1.0)), residency),
            "fifo",
        )
        self.assertEqual(run.samples[0].states[0], ModelState.UNLOADED)
        # A needs all of gpu1 beside gpu0: B makes room.
        self.assertEqual(
            [(e.model, e.reason) for e in run.evicted], [("B", "capacity")]
        )
        self.assertEqual(summarize(run).served, 2)


class EvictionPolicyTests(SynchronousTestCase):
    """
    The eviction policy is found by name through the plugin system and is
    the one the switcher asks.
    """

    def scenario(self, eviction: str) -> Scenario:
        """
        A's wake takes 20 s, B's 5 s; both fit, C needs one of them gone.
        At 40 s, A was used last at 21 s, B at 31 s.
        """
        residency = {m: Residency(resources=({"gpu": 50.0},)) for m in "ABC"}
        requests = (
            Request(0.0, "A", 1.0),
            Request(25.0, "B", 1.0),
            Request(40.0, "C", 1.0),
        )
        return Scenario(
            ("A", "B", "C"),
            requests,
            SwitchCosts(defaultWakeSecs=5, wakeSecs={"A": 20}),
            capacity={"gpu": 100.0},
            residency=residency,
            eviction=eviction,
        )

    def test_default(self) -> None:
        """
        By default, lru: the least recently used model, A, makes room.
        """
        sim = Simulation(self.scenario("lru"), "fifo")
        self.assertIsInstance(sim.eviction, LruEviction)
        self.assertEqual(sim.switcher.status()["eviction"], {"name": "lru"})
        run = sim.run()
        self.assertEqual([e.model for e in run.evicted], ["A"])

    def test_cheapestWake(self) -> None:
        """
        cheapest_wake puts to sleep the model cheapest to wake again, B.
        """
        sim = Simulation(self.scenario("cheapest_wake"), "fifo")
        self.assertIsInstance(sim.eviction, CheapestWakeEviction)
        self.assertEqual(sim.switcher.status()["eviction"], {"name": "cheapest_wake"})
        run = sim.run()
        self.assertEqual([e.model for e in run.evicted], ["B"])

    def test_pluginPackage(self) -> None:
        """
        Eviction policies are looked up in the plugin package given (none
        in the test package), apart from the switch policy's.
        """
        with self.assertRaises(UnknownPolicy) as caught:
            Simulation(self.scenario("lru"), "fifo", evictionPlugins=fakeplugins)
        self.assertIn("unknown eviction policy 'lru'", str(caught.exception))
        self.assertRaises(UnknownPolicy, Simulation, self.scenario("nope"), "fifo")


class HookRunnerTests(SynchronousTestCase):
    def test_pairRightAfterItsSleep(self) -> None:
        """
        A pair's price applies to a wake that starts the instant the sleep
        before it ends, as the switcher starts a switch's wake; a wake that
        starts later (after an idle sleep, or beside others with a
        capacity) is a cold start.
        """
        clock = Clock()
        costs = SwitchCosts(sleepSecs={"A": 2.0}, pairs={("A", "B"): 5.0})
        hooks = SimulatedHookRunner(clock, costs)
        a, b = Scenario(("A", "B"), ()).config(PolicyConfig()).models
        hooks.run(a, "sleep").addCallback(lambda _: hooks.run(b, "wake"))
        clock.advance(2)
        clock.advance(3)
        hooks.run(a, "sleep")
        clock.advance(2)
        clock.advance(1)
        hooks.run(b, "wake")
        clock.advance(10)
        self.assertEqual(
            [(r.model, r.hook, r.ended - r.started, r.after) for r in hooks.runs],
            [
                ("A", "sleep", 2.0, None),
                ("B", "wake", 3.0, "A"),
                ("A", "sleep", 2.0, None),
                ("B", "wake", 10.0, None),
            ],
        )


class RecordTests(SynchronousTestCase):
    def test_sampleAwake(self) -> None:
        """
        A sample's awake models are a tuple; a single name or None is
        taken for one model awake, or none.
        """
        self.assertEqual(Sample(0.0, "A", False, (0,), (0,)).awake, ("A",))
        self.assertEqual(Sample(0.0, None, False, (0,), (0,)).awake, ())
        self.assertEqual(
            Sample(0.0, ["A", "B"], False, (0, 0), (0, 0)).awake, ("A", "B")
        )

    def test_residencySummaryOnlyWithCapacity(self) -> None:
        run = Run("p", {}, ("A",), (), (), (), end=1.0)
        self.assertIsNone(summarize(run).residency)


def results(residency: bool = True) -> list[tuple[Run, Summary]]:
    requests = turns(("A", "B", "C", "D"), 2, 100)
    scenario = twoGpus(requests, FOUR, TWO_GPUS if residency else None)
    return [
        (run, summarize(run))
        for run in (simulate(scenario, name) for name in ("fifo", "cost_aware"))
    ]


class ReportTests(SynchronousTestCase):
    def test_json(self) -> None:
        """
        With a capacity, each policy's JSON has its residency figures;
        without, it has none.
        """
        summaries = [s for _, s in results()]
        document = json.loads(json.dumps(reportJSON({}, summaries)))
        fifo = document["policies"][0]
        residency = summaries[0].residency
        assert residency is not None
        self.assertEqual(
            fifo["residency"],
            {
                "admissions": residency.admissions,
                "evictions": residency.evictions,
                "idle_sleeps": 0,
                "wakes": dict(residency.wakes),
                "mean_awake": residency.meanAwake,
                "max_awake": residency.maxAwake,
            },
        )
        self.assertEqual(sum(fifo["residency"]["wakes"].values()), fifo["switches"])
        alone = reportJSON({}, [s for _, s in results(False)])
        self.assertNotIn("residency", alone["policies"][0])  # type: ignore[index]

    def test_table(self) -> None:
        """
        With a capacity, the table has a residency table, one row per
        policy; without, none.
        """
        text = formatTable({}, [s for _, s in results()])
        lines = text.splitlines()
        header = lines.index(
            next(line for line in lines if line.startswith("residency "))
        )
        self.assertIn("evicted", lines[header])
        self.assertTrue(lines[header + 1].startswith("fifo "))
        self.assertTrue(lines[header + 2].startswith("cost_aware "))
        alone = formatTable({}, [s for _, s in results(False)])
        self.assertNotIn("evicted", alone)


class TimelineTests(SynchronousTestCase):
    def lanes(self, panel: ET.Element) -> dict[str, list[tuple[float, float, str]]]:
        """
        The state rectangles of each lane of C{panel}, by label: (x0, x1,
        fill).
        """
        labels = {
            float(text.get("y", "0")) - 15: text.text or ""
            for text in panel.findall(f"{SVG}text")
            if text.get("text-anchor") == "end"
            and text.text not in ("queued",)
            and not (text.text or "").isdigit()
        }
        found: dict[str, list[tuple[float, float, str]]] = {}
        for rect in panel.findall(f"{SVG}rect"):
            label = labels.get(float(rect.get("y", "0")))
            if label is None:
                continue
            x0 = float(rect.get("x", "0"))
            # A tint (an awake, idle model) has the model's colour too.
            fill = rect.get("fill", "") + rect.get("fill-opacity", "")
            found.setdefault(label, []).append(
                (x0, x0 + float(rect.get("width", "0")), fill)
            )
        return found

    def test_laneEachModel(self) -> None:
        """
        With a capacity, each panel has one state lane per model (no GPU
        lane), and two models are drawn serving at the same time.
        """
        # A, B and C all awake from 20 s, each serving 2.5 s of every 3 s.
        requests = interleaved(
            ("A", "B", "C"), 1, 60, ServiceTimes(2.5), random.Random(0)
        )
        run = simulate(twoGpus(requests, THREE_FIT), "fifo")
        svg = renderTimeline("residency", [(run, summarize(run))])
        lanes = self.lanes(ET.fromstring(svg).findall(f"{SVG}g")[0])
        self.assertEqual(list(lanes), ["A", "B", "C"])
        serving = {
            model: [(x0, x1) for x0, x1, fill in lanes[model] if fill == PALETTE[i]]
            for i, model in enumerate("ABC")
        }
        self.assertTrue(
            any(
                x0 < y1 and y0 < x1
                for x0, x1 in serving["A"]
                for y0, y1 in serving["B"]
            )
        )
        self.assertIn("3 wakes, 0 evictions", svg)
        self.assertIn("waking or sleeping", svg)

    def test_panelsOfEveryRun(self) -> None:
        """
        Several runs with a lane per model stack without overlapping.
        """
        root = ET.fromstring(renderTimeline("residency", results(), until=120))
        panels = root.findall(f"{SVG}g")
        self.assertEqual(len(panels), 2)
        for panel in panels:
            self.assertEqual(list(self.lanes(panel)), ["A", "B", "C", "D"])
        bottom = max(float(r.get("y", "0")) for r in panels[0].findall(f"{SVG}rect"))
        top = min(float(r.get("y", "0")) for r in panels[1].findall(f"{SVG}rect"))
        self.assertLess(bottom, top)

    def test_oneLaneWithoutCapacity(self) -> None:
        """
        Without a capacity, the panel keeps its single GPU lane.
        """
        root = ET.fromstring(renderTimeline("alone", results(False)))
        for panel in root.findall(f"{SVG}g"):
            self.assertEqual(list(self.lanes(panel)), ["GPU"])


class CLITests(SynchronousTestCase):
    """
    C{llmux simulate} with residency from options and from a config.
    """

    def simulate(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        self.patch(sys, "stdout", out)
        self.patch(sys, "stderr", err)
        status = main(list(argv))
        return status, out.getvalue(), err.getvalue()

    def report(self, *argv: str) -> dict[str, Any]:
        status, out, err = self.simulate(*argv, "--format", "json")
        self.assertEqual((status, err), (0, ""))
        document: dict[str, Any] = json.loads(out)
        return document

    def config(self, text: str) -> str:
        path = FilePath(self.mktemp() + ".yaml")
        path.setContent(text.encode("utf-8"))
        return path.path

    SHORT = ("--duration", "120", "--policies", "fifo")

    def test_options(self) -> None:
        """
        --capacity, --resources (with alternatives) and the other residency
        options make the scenario; the report describes them in the same
        notation and has each policy's residency figures.
        """
        document = self.report(
            *self.SHORT,
            "--models",
            "A,B,C",
            "--capacity",
            "gpu0=80,gpu1=80",
            "--resources",
            "gpu0:30/gpu1:30",
            "--resources",
            "A=gpu0:70+gpu1:10",
            "--idle-ttl-secs",
            "B=600",
            "--max-in-flight",
            "8",
            "--pin",
            "C",
            "--eviction",
            "cheapest_wake",
        )
        scenario = document["scenario"]
        self.assertEqual(scenario["capacity"], {"gpu0": 80.0, "gpu1": 80.0})
        self.assertEqual(scenario["eviction"], "cheapest_wake")
        self.assertEqual(
            scenario["resources"],
            {"A": "gpu0:70+gpu1:10", "B": "gpu0:30/gpu1:30", "C": "gpu0:30/gpu1:30"},
        )
        self.assertEqual(scenario["idle_ttl_secs"], {"B": 600.0})
        self.assertEqual(scenario["max_in_flight"], {"A": 8, "B": 8, "C": 8})
        self.assertEqual(scenario["pin"], ["C"])
        fifo = document["policies"][0]
        self.assertEqual(fifo["residency"]["max_awake"], 3)
        self.assertEqual(fifo["switches"], 3)

    def test_config(self) -> None:
        """
        -c takes the config's capacity, eviction and residency keys;
        options replace them; --no-capacity leaves one model awake at a
        time.
        """
        path = self.config(
            "capacity: {gpu0: 80, gpu1: 80}\n"
            "eviction: cheapest_wake\n"
            "models:\n"
            "  A: {port: 1, wake: w, sleep: s, alive: a, resources: {gpu0: 70}}\n"
            "  B: {port: 2, wake: w, sleep: s, alive: a,\n"
            "      resources: [{gpu0: 40}, {gpu1: 40}], pin: true}\n"
        )
        scenario = self.report(*self.SHORT, "-c", path)["scenario"]
        self.assertEqual(scenario["capacity"], {"gpu0": 80.0, "gpu1": 80.0})
        self.assertEqual(scenario["eviction"], "cheapest_wake")
        self.assertEqual(
            scenario["resources"], {"A": "gpu0:70", "B": "gpu0:40/gpu1:40"}
        )
        self.assertEqual(scenario["pin"], ["B"])
        document = self.report(
            *self.SHORT,
            "-c",
            path,
            "--capacity",
            "gpu0=100,gpu1=80",
            "--eviction",
            "lru",
        )
        self.assertEqual(document["scenario"]["capacity"]["gpu0"], 100.0)
        self.assertEqual(document["scenario"]["eviction"], "lru")
        alone = self.report(*self.SHORT, "-c", path, "--no-capacity")
        for key in ("capacity", "eviction", "resources", "pin"):
            self.assertNotIn(key, alone["scenario"])
        self.assertNotIn("residency", alone["policies"][0])
        self.assertGreater(alone["policies"][0]["switches"], 2)

    def test_table(self) -> None:
        status, out, _ = self.simulate(
            *self.SHORT, "--capacity", "gpu=2", "--resources", "gpu:1"
        )
        self.assertEqual(status, 0)
        self.assertIn("capacity: gpu=2", out)
        self.assertIn("resources: A=gpu:1, B=gpu:1", out)
        self.assertIn("awake (mean)", out)

    def test_svgTitle(self) -> None:
        directory = self.mktemp()
        status, _, _ = self.simulate(
            *self.SHORT,
            "--capacity",
            "gpu=2",
            "--resources",
            "gpu:1",
            "--svg",
            directory,
        )
        self.assertEqual(status, 0)
        root = ET.parse(FilePath(directory).child("fifo.svg").path).getroot()
        self.assertIn("capacity gpu 2,", root.findtext(f"{SVG}title") or "")

    def test_errors(self) -> None:
        """
        Bad residency options fail with status 2 and a one-line message.
        """
        cases = [
            ("--capacity: expected POOL=UNITS", "--capacity", "gpu0:80"),
            (
                "--resources A=gpu0: expected POOL:UNITS",
                "--capacity",
                "gpu0=80",
                "--resources",
                "A=gpu0",
            ),
            (
                "--resources Z=gpu0:1: unknown model 'Z'",
                "--capacity",
                "gpu0=80",
                "--resources",
                "Z=gpu0:1",
            ),
            ("--pin Z: unknown model", "--pin", "Z"),
            ("--max-in-flight 0: must be at least 1", "--max-in-flight", "0"),
            ("--idle-ttl-secs A=0: must be above 0", "--idle-ttl-secs", "A=0"),
            (
                "models.A.resources: can never fit: gpu0 needs 90 of 80",
                "--capacity",
                "gpu0=80",
                "--resources",
                "A=gpu0:90",
            ),
            ("needs a top-level capacity table", "--resources", "gpu0:1"),
            (
                "--no-capacity: leave out --capacity",
                "--no-capacity",
                "--capacity",
                "gpu0=80",
            ),
            ("unknown eviction policy 'nope'", "--eviction", "nope"),
        ]
        for message, *argv in cases:
            status, out, err = self.simulate(*self.SHORT, *argv)
            self.assertEqual((status, out), (2, ""), message)
            self.assertIn(message, err)
            self.assertEqual(err.count("\n"), 1, err)
