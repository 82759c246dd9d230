"""
Tests for C{llmux simulate} (L{llmux.simulation.cli}), end to end through
C{main([...])} with standard output captured.
"""

from __future__ import annotations

import io
import json
import os
import sys
import xml.etree.ElementTree as ET
from typing import Any

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from llmux import _cli
from llmux.policies.fifo import FifoPolicy
from llmux.simulation.cli import main

#: A short run: keeps the suite fast.
SHORT = ["--duration", "120"]


class CLITestCase(SynchronousTestCase):
    def simulate(self, *argv: str) -> tuple[int, str, str]:
        """
        Run C{llmux simulate argv}; return the status, stdout and stderr.
        """
        out, err = io.StringIO(), io.StringIO()
        self.patch(sys, "stdout", out)
        self.patch(sys, "stderr", err)
        status = main(list(argv))
        return status, out.getvalue(), err.getvalue()

    def report(self, *argv: str) -> dict[str, Any]:
        """
        The JSON report of C{llmux simulate argv --format json}.
        """
        status, out, err = self.simulate(*argv, "--format", "json")
        self.assertEqual((status, err), (0, ""))
        document: dict[str, Any] = json.loads(out)
        return document

    def policy(self, document: dict[str, Any], name: str) -> dict[str, Any]:
        for entry in document["policies"]:
            if entry["policy"] == name:
                found: dict[str, Any] = entry
                return found
        raise AssertionError(f"no {name} in the report")


class OutputTests(CLITestCase):
    def test_table(self) -> None:
        """
        By default every built-in policy is compared and the report is a
        table on stdout.
        """
        status, out, err = self.simulate(*SHORT)
        self.assertEqual((status, err), (0, ""))
        self.assertIn("workload: interleaved", out)
        rows = [line.split()[0] for line in out.splitlines() if line[:1].isalpha()]
        for name in ("fifo", "round_robin", "cost_aware"):
            self.assertIn(name, rows)

    def test_json(self) -> None:
        """
        --format json writes one JSON document with the scenario and each
        policy, in the order asked.
        """
        document = self.report(*SHORT, "--policies", "round_robin,fifo")
        self.assertEqual(
            [p["policy"] for p in document["policies"]], ["round_robin", "fifo"]
        )
        scenario = document["scenario"]
        self.assertEqual(scenario["workload"], "interleaved")
        self.assertEqual(scenario["requests"], 120)
        self.assertEqual(scenario["switch_secs"], 10.0)

    def test_sameSeedSameReport(self) -> None:
        """
        The same seed gives the same report, byte for byte; another seed
        gives another workload.
        """
        argv = [*SHORT, "--workload", "poisson", "--service-dist", "exp"]
        first = self.simulate(*argv, "--seed", "3")
        self.assertEqual(first, self.simulate(*argv, "--seed", "3"))
        self.assertNotEqual(first, self.simulate(*argv, "--seed", "4"))

    def test_svg(self) -> None:
        """
        --svg DIR writes a timeline of all policies and one per policy, each
        well-formed XML.
        """
        directory = self.mktemp()
        status, _, _ = self.simulate(
            *SHORT, "--policies", "fifo,cost_aware", "--svg", directory
        )
        self.assertEqual(status, 0)
        self.assertEqual(
            sorted(os.listdir(directory)),
            ["cost_aware.svg", "fifo.svg", "timeline.svg"],
        )
        for name in os.listdir(directory):
            ET.parse(os.path.join(directory, name))
        combined = ET.parse(os.path.join(directory, "timeline.svg")).getroot()
        self.assertEqual(len(combined.findall("{http://www.w3.org/2000/svg}g")), 2)

    def test_help(self) -> None:
        """
        --help explains the options and exits 0.
        """
        status, out, _ = self.simulate("--help")
        self.assertEqual(status, 0)
        self.assertIn("usage: llmux simulate", out)
        for option in ("--workload", "--switch-secs", "--policy-setting", "--svg"):
            self.assertIn(option, out)

    def test_llmuxSimulate(self) -> None:
        """
        C{llmux simulate ...} (the console script) runs the simulator and
        exits with its status.
        """
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        with self.assertRaises(SystemExit) as caught:
            _cli.main(["simulate", *SHORT, "--format", "json", "--policies", "fifo"])
        self.assertEqual(caught.exception.code, 0)
        self.assertEqual(json.loads(out.getvalue())["policies"][0]["policy"], "fifo")

    def test_brokenPolicy(self) -> None:
        """
        A policy that raises makes the run exit 1, naming the error.
        """

        def broken(self: FifoPolicy, context: object) -> object:
            raise RuntimeError("oops")

        self.patch(FifoPolicy, "onPending", broken)
        status, _, err = self.simulate(*SHORT, "--policies", "fifo")
        self.flushLoggedErrors(RuntimeError)
        self.assertEqual(status, 1)
        self.assertIn("fifo: the policy raised", err)
        self.assertIn("RuntimeError: oops", err)


class WorkloadOptionTests(CLITestCase):
    def test_perModelOptions(self) -> None:
        """
        [MODEL=]VALUE options set every model or one, by list or repeated.
        """
        document = self.report(
            *SHORT,
            "--workload",
            "poisson",
            "--models",
            "x,y,z",
            "--rate",
            "0.2,y=1",
            "--rate",
            "z=0",
            "--service-secs",
            "3",
            "--service-secs",
            "x=0.5",
            "--concurrency",
            "y=1",
            "--wake-secs",
            "z=20",
            "--sleep-secs",
            "x=2",
            "--switch-cost",
            "idle:x=7,x:y=4",
        )
        scenario = document["scenario"]
        self.assertEqual(scenario["models"], ["x", "y", "z"])
        self.assertEqual(scenario["rates_per_sec"], {"x": 0.2, "y": 1.0, "z": 0.0})
        self.assertEqual(scenario["service_secs"], {"x": 0.5, "y": 3.0, "z": 3.0})
        self.assertEqual(scenario["concurrency"], {"x": 16, "y": 1, "z": 16})
        self.assertEqual(scenario["wake_secs"], {"z": 20.0})
        self.assertEqual(scenario["sleep_secs"], {"x": 2.0})
        self.assertEqual(scenario["switch_costs"], {"idle:x": 7.0, "x:y": 4.0})
        fifo = self.policy(document, "fifo")
        self.assertEqual(fifo["models"]["z"]["requests"], 0)

    def test_batchChat(self) -> None:
        document = self.report(
            *SHORT,
            "--workload",
            "batch-chat",
            "--batch-rate",
            "2",
            "--chat-rate",
            "0.1",
        )
        scenario = document["scenario"]
        self.assertEqual(scenario["batch"]["model"], "A")
        self.assertEqual(scenario["chat"]["model"], "B")
        fifo = self.policy(document, "fifo")
        self.assertGreater(
            fifo["models"]["A"]["requests"], fifo["models"]["B"]["requests"]
        )

    def test_bursty(self) -> None:
        document = self.report(
            *SHORT, "--workload", "bursty", "--on-secs", "10", "--off-secs", "5"
        )
        self.assertEqual(document["scenario"]["mean_on_secs"], 10.0)

    def test_trace(self) -> None:
        """
        A trace replays as written; its models are those of the trace, in
        order of appearance, unless --models names them.
        """
        trace = FilePath(self.mktemp())
        trace.setContent(
            b'{"t": 10, "model": "big", "service_secs": 1}\n'
            b'{"t": 11, "model": "small", "service_secs": 1}\n'
            b'{"t": 40, "model": "big"}\n'
        )
        document = self.report(
            "--workload", "trace", "--trace", trace.path, "--policies", "fifo"
        )
        self.assertEqual(document["scenario"]["models"], ["big", "small"])
        fifo = self.policy(document, "fifo")
        self.assertEqual(fifo["served"], 3)
        self.assertEqual(fifo["switches"], 3)
        # Shifted to start at 0: big's cold start takes 0-10 and its request
        # 10-11; small, arriving at 1, then gets its switch, 11-21: 20 s.
        self.assertEqual(fifo["models"]["small"]["wait_secs"]["max"], 20.0)
        named = self.report(
            "--workload",
            "trace",
            "--trace",
            trace.path,
            "--models",
            "small,big,other",
            "--policies",
            "fifo",
        )
        self.assertEqual(named["scenario"]["models"], ["small", "big", "other"])


class SettingsTests(CLITestCase):
    def test_policySettings(self) -> None:
        """
        Unqualified settings go to every selected policy that knows them;
        POLICY.KEY settings to that policy only.
        """
        document = self.report(
            *SHORT,
            "--policy-setting",
            "quantum_secs=12",
            "--policy-setting",
            "cost_aware.amortize=4",
            "--policy-setting",
            "request_timeout_secs=300",
        )
        settings = {p["policy"]: p["settings"] for p in document["policies"]}
        self.assertEqual(settings["round_robin"]["quantum_secs"], 12)
        self.assertEqual(settings["cost_aware"]["amortize"], 4)
        self.assertNotIn("quantum_secs", settings["fifo"])
        for name in ("fifo", "round_robin", "cost_aware"):
            self.assertEqual(settings[name]["request_timeout_secs"], 300)

    def test_config(self) -> None:
        """
        --config takes the models and the policy: table of an llmux config.
        """
        config = FilePath(self.mktemp())
        config.setContent(
            b"models:\n"
            b"  m1: {port: 8001, wake: w, sleep: s, alive: a}\n"
            b"  m2: {port: 8002, wake: w, sleep: s, alive: a}\n"
            b"policy:\n"
            b"  min_active_secs: 3\n"
            b"  idle_secs: 1\n"
        )
        path = config.path + ".yaml"
        config.moveTo(FilePath(path))
        document = self.report(*SHORT, "-c", path)
        self.assertEqual(document["scenario"]["models"], ["m1", "m2"])
        settings = {p["policy"]: p["settings"] for p in document["policies"]}
        self.assertEqual(settings["round_robin"]["idle_secs"], 1)
        self.assertEqual(settings["fifo"]["min_active_secs"], 3)

    def test_configDrainTimeoutAndMaxQueue(self) -> None:
        """
        --config's drain_timeout_secs and max_queue apply too, as every key
        of its policy: table does.

        A's one request takes 100 s from 10 s on; three requests for B come
        at 11 s. With max_queue 2 the third is refused; with a 1 s
        drain_timeout_secs the switch to B gives up on A's drain at 12 s,
        and B, awake at 22 s, serves its two after 11 s (not after A's
        100 s).
        """
        config = FilePath(self.mktemp() + ".yaml")
        config.setContent(
            b"models:\n"
            b"  A: {port: 8001, wake: w, sleep: s, alive: a}\n"
            b"  B: {port: 8002, wake: w, sleep: s, alive: a}\n"
            b"policy:\n"
            b"  drain_timeout_secs: 1\n"
            b"  max_queue: 2\n"
        )
        trace = FilePath(self.mktemp())
        trace.setContent(
            b'{"t": 0, "model": "A", "service_secs": 100}\n'
            + b'{"t": 11, "model": "B", "service_secs": 1}\n' * 3
        )
        document = self.report(
            "-c",
            config.path,
            "--workload",
            "trace",
            "--trace",
            trace.path,
            "--policies",
            "fifo",
        )
        b = self.policy(document, "fifo")["models"]["B"]
        self.assertEqual((b["served"], b["refused"]), (2, 1))
        self.assertEqual(b["wait_secs"]["max"], 11.0)


class ErrorTests(CLITestCase):
    def assertUsageError(self, message: str, *argv: str) -> None:
        status, out, err = self.simulate(*argv)
        self.assertEqual(status, 2)
        self.assertEqual(out, "")
        self.assertIn(message, err)

    def test_errors(self) -> None:
        """
        Bad options fail with status 2 and a one-line message.
        """
        trace = FilePath(self.mktemp())
        trace.setContent(b'{"t": 1, "model": "Q"}\n')
        cases = [
            ("invalid choice", "--workload", "nope"),
            ("must be above 0", "--duration", "0"),
            ("unknown policy 'nope'", "--policies", "fifo,nope"),
            ("--rate C=1: unknown model 'C'", "--workload", "poisson", "--rate", "C=1"),
            ("--wake-secs 3: expected MODEL=VALUE", "--wake-secs", "3"),
            ("--switch-cost A-B=3: expected FROM:TO=SECS", "--switch-cost", "A-B=3"),
            (
                "--switch-cost A:idle=3: unknown model 'idle'",
                "--switch-cost",
                "A:idle=3",
            ),
            ("--concurrency 0: must be at least 1", "--concurrency", "0"),
            ("not known to any of the selected", "--policy-setting", "quantum=3"),
            (
                "round_robin is not among --policies",
                "--policies",
                "fifo",
                "--policy-setting",
                "round_robin.quantum_secs=3",
            ),
            (
                "round_robin: policy.quantum_secs: must be above 0",
                "--policy-setting",
                "quantum_secs=0",
            ),
            ("needs --trace FILE", "--workload", "trace"),
            (
                "requests for models not configured: Q",
                "--workload",
                "trace",
                "--trace",
                trace.path,
                "--models",
                "A",
            ),
            ("No such file", "--workload", "trace", "--trace", "/nonexistent.jsonl"),
            ("needs two models", "--workload", "batch-chat", "--models", "A"),
            ("a model is named twice", "--models", "A,A"),
        ]
        for message, *argv in cases:
            self.assertUsageError(message, *SHORT, *argv)
