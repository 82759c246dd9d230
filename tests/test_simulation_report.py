"""
Tests for the simulator's figures (L{llmux.simulation.stats}), its report
(L{llmux.simulation.report}) and its pictures (L{llmux.simulation.timeline}).
"""

from __future__ import annotations

import json
import random
import xml.etree.ElementTree as ET

from twisted.trial.unittest import SynchronousTestCase

from llmux.simulation import Scenario, ServiceTimes, SwitchCosts, simulate, summarize
from llmux.simulation.records import Outcome, Run, Sample
from llmux.simulation.report import formatTable, reportJSON
from llmux.simulation.stats import Summary, TimeSplit, WaitStats, percentile
from llmux.simulation.timeline import renderTimeline
from llmux.simulation.workloads import Request, interleaved

SVG = "{http://www.w3.org/2000/svg}"


def runs() -> list[tuple[Run, Summary]]:
    requests = interleaved(("A", "B"), 3.0, 300, ServiceTimes(1.0), random.Random(0))
    scenario = Scenario(("A", "B"), requests, SwitchCosts.uniform(5))
    result = []
    for name in ("fifo", "round_robin"):
        run = simulate(scenario, name)
        result.append((run, summarize(run)))
    return result


class StatsTests(SynchronousTestCase):
    def test_percentileNearestRank(self) -> None:
        """
        The nearest-rank percentile is always one of the values.
        """
        values = [float(v) for v in range(1, 11)]
        self.assertEqual(
            [percentile(values, p) for p in (0, 50, 90, 95, 99, 100)],
            [1.0, 5.0, 9.0, 10.0, 10.0, 10.0],
        )
        hundred = [float(v) for v in range(1, 101)]
        self.assertEqual(percentile(hundred, 95), 95.0)
        self.assertEqual(percentile([7.0], 99), 7.0)

    def test_waitStats(self) -> None:
        self.assertIsNone(WaitStats.of([]))
        stats = WaitStats.of([3.0, 1.0, 2.0, 10.0])
        self.assertEqual(stats, WaitStats(4, 4.0, 2.0, 10.0, 10.0, 10.0))

    def test_utilization(self) -> None:
        """
        Serving over the time there was work; 0 with no work at all.
        """
        self.assertEqual(TimeSplit(3, 1, 0, 100).utilization, 0.75)
        self.assertEqual(TimeSplit(3, 1, 2, 0).utilization, 0.5)
        self.assertEqual(TimeSplit(0, 0, 0, 10).utilization, 0.0)
        self.assertEqual(TimeSplit(1, 2, 3, 4).wall, 10)

    def test_timeSplitFromSamples(self) -> None:
        """
        Each stretch between samples counts once, by the first state that
        applies: serving, switching, blocked, idle.
        """
        samples = (
            Sample(0.0, None, False, (0, 0), (0, 0)),  # idle 0-1
            Sample(1.0, None, True, (1, 0), (0, 0)),  # switching 1-3
            Sample(3.0, "A", False, (0, 1), (1, 0)),  # serving 3-4
            Sample(4.0, "A", False, (0, 1), (0, 0)),  # blocked 4-6
            Sample(6.0, None, True, (0, 1), (0, 0)),  # switching 6-7
            Sample(7.0, "B", False, (0, 0), (0, 1)),  # serving 7-8
        )
        run = Run("p", {}, ("A", "B"), (), (), samples, end=8.0)
        self.assertEqual(summarize(run).time, TimeSplit(2.0, 3.0, 2.0, 1.0))

    def test_outcomeCounts(self) -> None:
        """
        Served, timed out, refused, failed and unfinished are counted per
        model and in all.
        """
        outcomes = (
            Outcome(Request(0, "A", 1), granted=1, started=1, finished=2),
            Outcome(Request(0, "A", 1), error="timeout"),
            Outcome(Request(0, "B", 1), error="refused"),
            Outcome(Request(0, "B", 1), error="Hook failed for B: exit code 1"),
            Outcome(Request(0, "B", 1)),
        )
        summary = summarize(Run("p", {}, ("A", "B"), outcomes, (), (), end=2.0))
        self.assertEqual(
            (
                summary.served,
                summary.timedOut,
                summary.refused,
                summary.failed,
                summary.unfinished,
            ),
            (1, 1, 1, 1, 1),
        )
        self.assertEqual([m.requests for m in summary.models], [2, 3])
        self.assertEqual(summary.throughput, 0.5)


class ReportTests(SynchronousTestCase):
    def test_table(self) -> None:
        """
        The table describes the scenario, has one row per policy and one
        wait row per policy and model.
        """
        results = runs()
        text = formatTable(
            {"workload": "interleaved", "models": ["A", "B"], "gap_secs": 3.0},
            [s for _, s in results],
        )
        lines = text.splitlines()
        self.assertEqual(
            lines[:3], ["workload: interleaved", "models: A, B", "gap_secs: 3"]
        )
        header = next(line for line in lines if line.startswith("policy"))
        for column in ("served", "timed out", "refused", "switches", "utilization"):
            self.assertIn(column, header)
        self.assertEqual(sum(1 for line in lines if line.startswith("fifo ")), 2)
        self.assertTrue(any(line.startswith("round_robin  A") for line in lines))

    def test_json(self) -> None:
        """
        The JSON report holds the scenario and every policy's figures,
        unrounded, and survives a round trip through json.
        """
        results = runs()
        summaries = [s for _, s in results]
        document = json.loads(json.dumps(reportJSON({"workload": "x"}, summaries)))
        self.assertEqual(document["scenario"], {"workload": "x"})
        self.assertEqual(
            [p["policy"] for p in document["policies"]], ["fifo", "round_robin"]
        )
        fifo = document["policies"][0]
        summary = summaries[0]
        self.assertEqual(fifo["switches"], summary.switches)
        self.assertEqual(fifo["utilization"], summary.utilization)
        self.assertEqual(set(fifo["models"]), {"A", "B"})
        self.assertEqual(
            set(fifo["models"]["A"]["wait_secs"]), {"mean", "p50", "p95", "p99", "max"}
        )
        self.assertEqual(
            set(fifo["time_secs"]), {"wall", "serving", "switching", "blocked", "idle"}
        )


class TimelineTests(SynchronousTestCase):
    def test_wellFormed(self) -> None:
        """
        The timeline is well-formed SVG with one panel per policy, each with
        a state lane and a queue line per model that ever waited.
        """
        results = runs()
        root = ET.fromstring(renderTimeline("a <title> & more", results))
        self.assertEqual(root.tag, f"{SVG}svg")
        self.assertEqual(root.findtext(f"{SVG}title"), "a <title> & more")
        panels = root.findall(f"{SVG}g")
        self.assertEqual(
            [g.get("id") for g in panels], ["policy-fifo", "policy-round_robin"]
        )
        for panel in panels:
            self.assertGreater(len(panel.findall(f"{SVG}rect")), 10)
            self.assertEqual(len(panel.findall(f"{SVG}path")), 2)

    def test_window(self) -> None:
        """
        Drawing only the start of the runs says so in the title.
        """
        results = runs()
        svg = renderTimeline("t", results[:1], until=60)
        root = ET.fromstring(svg)
        self.assertEqual(root.findtext(f"{SVG}title"), "t (first 60 s shown)")

    def test_loneRequest(self) -> None:
        """
        A run with a single request draws too.
        """
        scenario = Scenario(("A",), (Request(0.0, "A", 1.0),))
        run = simulate(scenario, "fifo")
        ET.fromstring(renderTimeline("one", [(run, summarize(run))]))
        self.assertRaises(ValueError, renderTimeline, "none", [])
