"""
The policy lab's targets, reproduced with the very commands
C{docs/policies.md} documents (C{llmux simulate ...}, here through
C{main([...])} with the JSON report).

  - On interleaved two-model traffic with 10 s switches, C{cost_aware} and
    C{round_robin} reach at least 3x the utilization of C{fifo}.
  - C{cost_aware}'s longest wait stays under its staleness bound plus one
    switch, with the default bound and with one tight enough to bind.
  - With traffic for a single model every policy behaves identically: one
    cold start, no other switch, the same waits.
"""

from __future__ import annotations

import io
import json
import sys
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from llmux.simulation.cli import main

#: The documented command of the interleaved target, without --format.
INTERLEAVED = ["--workload", "interleaved", "--switch-secs", "10"]


class TargetTests(SynchronousTestCase):
    def report(self, *argv: str) -> dict[str, dict[str, Any]]:
        """
        Each policy's JSON report from C{llmux simulate argv}, by name.
        """
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        self.assertEqual(main([*argv, "--format", "json"]), 0)
        document = json.loads(out.getvalue())
        return {entry["policy"]: entry for entry in document["policies"]}

    def test_interleavedUtilization(self) -> None:
        """
        llmux simulate --workload interleaved --switch-secs 10: two models,
        a request every second in turn, 2 s of service each on a backend
        that serves 16 at once, for an hour. fifo switches for nearly every
        batch; round_robin and cost_aware amortize each switch over a turn.
        """
        results = self.report(*INTERLEAVED)
        fifo = results["fifo"]["utilization"]
        for name in ("round_robin", "cost_aware"):
            self.assertGreaterEqual(results[name]["utilization"], 3 * fifo, name)
        for entry in results.values():
            self.assertEqual(entry["served"], entry["requests"])

    def test_costAwareMaxWait(self) -> None:
        """
        cost_aware's longest wait stays under max_wait_secs plus one switch:
        with the default bound (300 s) at 10 s and 60 s switches, and with a
        40 s bound that binds (a 10x amortization would give 100 s turns).
        """
        cases = [
            ([*INTERLEAVED], 300, 10),
            (["--workload", "interleaved", "--switch-secs", "60"], 300, 60),
            (
                [
                    *INTERLEAVED,
                    "--policy-setting",
                    "cost_aware.max_wait_secs=40",
                    "--policy-setting",
                    "cost_aware.amortize=10",
                ],
                40,
                10,
            ),
        ]
        for argv, bound, switch in cases:
            entry = self.report(*argv, "--policies", "cost_aware")["cost_aware"]
            self.assertEqual(entry["settings"]["max_wait_secs"], bound)
            self.assertLessEqual(entry["wait_secs"]["max"], bound + switch, argv)
        # The 40 s bound does bind: without it the turns, and waits, are longer.
        loose = self.report(
            *INTERLEAVED,
            "--policies",
            "cost_aware",
            "--policy-setting",
            "cost_aware.amortize=10",
        )["cost_aware"]
        self.assertGreater(loose["wait_secs"]["max"], 50)

    def test_singleModelIdentical(self) -> None:
        """
        llmux simulate --workload poisson --models A: every policy wakes A
        once and serves every request with the same wait.
        """
        results = self.report(
            "--workload",
            "poisson",
            "--models",
            "A",
            "--rate",
            "2",
            "--duration",
            "1800",
        )
        reference = results["fifo"]
        for name, entry in results.items():
            self.assertEqual(entry["switches"], 1, name)
            for key in ("served", "wait_secs", "models", "time_secs", "utilization"):
                self.assertEqual(entry[key], reference[key], (name, key))
