"""
Observability end to end: Prometheus metrics, the JSON event log and the
status endpoint, after real traffic through a real llmux service.
"""

from __future__ import annotations

import io
import json
import os
import signal
import sys
from typing import Any

import treq
from prometheus_client.parser import text_string_to_metric_families
from twisted.application.service import Application
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.logger import ILogObserver, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from llmux import __version__
from llmux.logs import JSONLinesObserver
from llmux.switcher import Idle
from llmux.tap import Options

from .helpers import freePort
from .test_e2e import ROOT, Harness
from .test_tap import writeConfig

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(h: Harness, base: str) -> Samples:
    """
    Every sample of C{/metrics}, by name and sorted labels.
    """
    response = await treq.get(base + "/metrics", pool=h.pool)
    text = (await response.content()).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


async def playScenario(case: TestCase) -> tuple[Harness, str]:
    """
    Cold start A, switch to B and back to A, ask for no model and for one not
    configured, then wait too long for C, whose wake hook fails after a
    second.
    """
    h = Harness(case)
    base = h.start(
        {
            "A": h.recordingModel(h.backend("A")),
            "B": h.recordingModel(h.backend("B")),
            "C": h.recordingModel(
                h.backend("C"), wake="sleep 1; echo 'no GPU' >&2; exit 1"
            ),
        },
        request_timeout_secs=0.5,
    )
    await h.chat(base, "A")
    await h.chat(base, "A")
    await h.chat(base, "B")
    await h.chat(base, "A")
    noModel = await h.post(base + "/v1/chat/completions", {"messages": []})
    case.assertEqual(noModel.code, 404)
    await noModel.content()
    unknown = await h.post(base + "/v1/chat/completions", {"model": "nope; rm -rf /"})
    case.assertEqual(unknown.code, 404)
    await unknown.content()
    late = await h.post(base + "/v1/chat/completions", {"model": "C"})
    case.assertEqual(late.code, 504)
    await late.content()
    assert h.service is not None
    switcher = h.service.switcher
    await h.until(lambda: isinstance(switcher.state, Idle) and "sleep C" in h.hooks())
    return h, base


class MetricsTests(TestCase):
    """
    /metrics after real traffic.
    """

    timeout = 30

    async def test_afterSwitches(self) -> None:
        """
        Switch counters, hook and request series carry the expected labels and
        counts; gauges are back at rest.
        """
        h, base = await playScenario(self)
        samples = await scrape(h, base)
        switches = {
            (labels["from"], labels["to"], labels["result"]): value
            for (name, pairs), value in samples.items()
            if name == "llmux_switch_total"
            for labels in [dict(pairs)]
        }
        self.assertEqual(
            switches,
            {
                ("idle", "A", "success"): 1,
                ("A", "B", "success"): 1,
                ("B", "A", "success"): 1,
                ("A", "C", "failure"): 1,
            },
        )
        self.assertEqual(
            sample(
                samples,
                "llmux_switch_duration_seconds_count",
                **{"from": "idle", "to": "A"},
            ),
            1,
        )
        self.assertEqual(
            sample(
                samples,
                "llmux_switch_drain_duration_seconds_count",
                **{"from": "A", "to": "B"},
            ),
            1,
        )
        self.assertEqual(
            sample(samples, "llmux_model_active_duration_seconds_count", model="A"), 2
        )
        for model, hook, count in [
            ("A", "wake", 2),
            ("A", "sleep", 2),
            ("B", "wake", 1),
            ("B", "sleep", 1),
            ("C", "wake", 1),
            ("C", "sleep", 1),
        ]:
            self.assertEqual(
                sample(
                    samples, "llmux_hook_duration_seconds_count", model=model, hook=hook
                ),
                count,
                (model, hook),
            )
        self.assertEqual(
            sample(samples, "llmux_hook_failures_total", model="C", hook="wake"), 1
        )
        self.assertIsNone(
            sample(samples, "llmux_hook_failures_total", model="A", hook="wake")
        )
        for model, status, count in [
            ("A", "200", 3),
            ("B", "200", 1),
            ("none", "404", 1),
            ("unknown", "404", 1),
            ("C", "504", 1),
        ]:
            self.assertEqual(
                sample(samples, "llmux_requests_total", model=model, status=status),
                count,
                (model, status),
            )
            self.assertEqual(
                sample(
                    samples,
                    "llmux_request_duration_seconds_count",
                    model=model,
                    status=status,
                ),
                count,
            )
        self.assertEqual(
            sample(samples, "llmux_request_queue_wait_seconds_count", model="C"), 1
        )
        self.assertGreaterEqual(
            sample(samples, "llmux_request_queue_wait_seconds_sum", model="C") or 0, 0.5
        )
        for model in "ABC":
            self.assertEqual(
                sample(samples, "llmux_request_queue_depth", model=model), 0
            )
            self.assertEqual(sample(samples, "llmux_model_in_flight", model=model), 0)
            self.assertEqual(sample(samples, "llmux_active_model", model=model), 0)
        self.assertEqual(sample(samples, "llmux_switcher_state", state="idle"), 1)
        self.assertEqual(sample(samples, "llmux_switcher_state", state="active"), 0)
        for source, target in [("idle", "A"), ("A", "B"), ("B", "A")]:
            cost = sample(
                samples,
                "llmux_switch_cost_ema_seconds",
                **{"from": source, "to": target},
            )
            self.assertIsNotNone(cost, (source, target))
        self.assertIsNone(
            sample(samples, "llmux_switch_cost_ema_seconds", **{"from": "A", "to": "C"})
        )

    async def test_backendErrors(self) -> None:
        """
        A backend that refuses is counted by model, and the request as a 502.
        The request was sent twice (a refused connection is retried once,
        after the model is found dead and woken again), so two backend
        errors, one 502.
        """
        h = Harness(self)
        base = h.start({"A": h.recordingModel(freePort())})
        response = await h.post(base + "/v1/completions", {"model": "A"})
        await response.content()
        samples = await scrape(h, base)
        self.assertEqual(sample(samples, "llmux_backend_errors_total", model="A"), 2)
        self.assertEqual(
            sample(samples, "llmux_requests_total", model="A", status="502"), 1
        )
        self.assertEqual(sample(samples, "llmux_active_model", model="A"), 1)
        self.assertEqual(sample(samples, "llmux_switcher_state", state="active"), 1)


class EventLogTests(TestCase):
    """
    The JSON event log is enough to rebuild what happened.
    """

    timeout = 30

    async def test_timelineFromJSONLog(self) -> None:
        """
        From the JSON lines alone: the sequence of active models, the
        timeout and the failed switch, in order.
        """
        stream = io.StringIO()
        observer = JSONLinesObserver(stream)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        await playScenario(self)
        records = [json.loads(line) for line in stream.getvalue().splitlines()]
        timeline = []
        for record in records:
            event = record.get("event")
            if event == "model_activated":
                timeline.append(("active", record["model"], record["from"]))
            elif event == "switch_failed":
                timeline.append(("failed", record["model"], record["from"]))
            elif event == "request_timeout":
                timeline.append(("timeout", record["model"], record["timeout_secs"]))
        self.assertEqual(
            timeline,
            [
                ("active", "A", "idle"),
                ("active", "B", "A"),
                ("active", "A", "B"),
                ("timeout", "C", 0.5),
                ("failed", "C", "A"),
            ],
        )
        [failed] = [r for r in records if r.get("event") == "switch_failed"]
        self.assertEqual(failed["error"], "exit code 1: no GPU")
        hooks = [
            (r["model"], r["hook"])
            for r in records
            if r.get("event") == "hook_completed"
        ]
        self.assertEqual(hooks[:3], [("A", "wake"), ("A", "sleep"), ("B", "wake")])
        [hookFailed] = [
            r
            for r in records
            if r.get("event") == "hook_failed" and r["hook"] != "alive"
        ]
        self.assertEqual(
            (hookFailed["model"], hookFailed["hook"], hookFailed["exit_code"]),
            ("C", "wake", 1),
        )
        started = [
            (r["from"], r["to"]) for r in records if r.get("event") == "switch_started"
        ]
        self.assertEqual(started, [("idle", "A"), ("A", "B"), ("B", "A"), ("A", "C")])
        for record in records:
            self.assertIsInstance(record["time"], float)
            self.assertIn(
                record["level"], ("debug", "info", "warn", "error", "critical")
            )


class StatusTests(TestCase):
    """
    GET /llmux/status.
    """

    timeout = 30

    async def status(self, h: Harness, base: str) -> dict[str, Any]:
        response = await treq.get(base + "/llmux/status", pool=h.pool)
        self.assertEqual(
            response.headers.getRawHeaders(b"content-type"), [b"application/json"]
        )
        result: dict[str, Any] = await response.json()
        return result

    async def test_switchInProgressAndAtRest(self) -> None:
        """
        During a switch the status says so, with the waiting request; at rest
        it shows the active model, empty queues and the switch cost.
        """
        h = Harness(self)
        base = h.start(
            {
                "A": h.recordingModel(h.backend("A"), wake="sleep 0.5"),
                "B": h.recordingModel(h.backend("B")),
            }
        )
        pending = Deferred.fromCoroutine(h.chat(base, "A"))
        seen: list[dict[str, Any]] = []

        def switching() -> bool:
            return bool(seen) and seen[-1]["state"] == "switching"

        while not switching():
            seen.append(await self.status(h, base))
        during = seen[-1]
        self.assertEqual(during["switching"], {"from": "idle", "to": "A"})
        self.assertEqual(during["models"]["A"]["queue_depth"], 1)
        self.assertGreaterEqual(during["models"]["A"]["oldest_wait_secs"], 0)
        self.assertIsNone(during["active_model"])
        await pending
        rest = await self.status(h, base)
        self.assertEqual(rest["state"], "active")
        self.assertEqual(rest["active_model"], "A")
        self.assertIsNone(rest["switching"])
        for model, state, placement in (("A", "awake", 0), ("B", "asleep", None)):
            self.assertEqual(
                rest["models"][model],
                {
                    "queue_depth": 0,
                    "oldest_wait_secs": None,
                    "in_flight": 0,
                    "draining": False,
                    "state": state,
                    "placement": placement,
                    "holds": {},
                    "pinned": False,
                    "idle_expires_in_secs": None,
                    "blocked_by": [],
                },
            )
        self.assertEqual(rest["awake"], ["A"])
        self.assertIsNone(rest["capacity"])
        self.assertIsNone(rest["used"])
        self.assertEqual(rest["eviction"], {"name": "lru"})
        [cost] = rest["switch_costs"]
        self.assertEqual((cost["from"], cost["to"]), ("idle", "A"))
        self.assertGreaterEqual(cost["ema_secs"], 0.5)
        self.assertEqual(rest["policy"]["name"], "fifo")
        self.assertIsNone(rest["last_error"])
        self.assertGreater(rest["uptime_secs"], 0)
        self.assertEqual(rest["version"], __version__.public())


class LogOptionTests(SynchronousTestCase):
    """
    --log-format and --log-file.
    """

    def test_jsonToFile(self) -> None:
        """
        --log-format json --log-file F writes JSON lines to F, and the
        service hands that observer to twistd's application.
        """
        from llmux.tap import makeService

        path = self.mktemp()
        options = Options()
        options.parseOptions(
            [
                "-c",
                writeConfig(self),
                "--policy",
                "round_robin",
                "--log-format",
                "json",
                "--log-file",
                path,
            ]
        )
        assert options.logObserver is not None
        options.logObserver(
            {"log_format": "hello {who}", "who": "you", "event": "greeting"}
        )
        with open(path) as f:
            [line] = f.read().splitlines()
        self.assertEqual(json.loads(line)["message"], "hello you")
        self.assertEqual(json.loads(line)["event"], "greeting")
        application = Application("llmux")
        makeService(options).setServiceParent(application)
        self.assertIs(application.getComponent(ILogObserver), options.logObserver)

    def test_defaultLeavesTwistdAlone(self) -> None:
        """
        Without log options, twistd's own observer is used.
        """
        options = Options()
        options.parseOptions(["-c", writeConfig(self), "--policy", "round_robin"])
        self.assertIsNone(options.logObserver)

    def test_badFormat(self) -> None:
        """
        An unknown format is one line.
        """
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        with self.assertRaises(SystemExit):
            Options().parseOptions(
                [
                    "-c",
                    writeConfig(self),
                    "--policy",
                    "round_robin",
                    "--log-format",
                    "xml",
                ]
            )
        self.assertEqual(
            stderr.getvalue(),
            "llmux: error: --log-format must be one of text, json, not 'xml'\n",
        )


class _Collect(ProcessProtocol):
    def __init__(self) -> None:
        self.out = b""
        self.ended: Deferred[None] = Deferred()
        self.reason: Failure | None = None

    def outReceived(self, data: bytes) -> None:
        self.out += data

    def processEnded(self, reason: Failure) -> None:
        self.reason = reason
        self.ended.callback(None)


class CommandLineLogTests(TestCase):
    """
    The real llmux command writing its JSON log.
    """

    timeout = 60

    async def test_jsonLog(self) -> None:
        """
        `llmux --log-format json` prints one JSON object per line on stdout,
        with the switch events.
        """
        port = freePort()
        config = writeConfig(
            self,
            f"models:\n  a: {{port: {freePort()}, wake: 'true', sleep: 'true', alive: 'false'}}\nport: {port}\n",
        )
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([ROOT.child("src").path, *sys.path]),
        }
        protocol = _Collect()
        process = reactor.spawnProcess(
            protocol,
            sys.executable,
            [
                sys.executable,
                "-c",
                "from llmux._cli import main; main()",
                "-c",
                config,
                "--log-format",
                "json",
            ],
            env=env,
        )
        h = Harness(self)
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                await treq.get(base + "/health", pool=h.pool)
                break
            except Exception:
                await deferLater(reactor, 0.05)
        response = await h.post(base + "/v1/completions", {"model": "a"})
        self.assertEqual(response.code, 502)
        await response.content()
        process.signalProcess(signal.SIGTERM)
        await protocol.ended
        assert protocol.reason is not None
        self.assertTrue(protocol.reason.check(ProcessDone, ProcessTerminated))
        records = [json.loads(line) for line in protocol.out.decode().splitlines()]
        events = [(r["event"], r.get("hook")) for r in records if "event" in r]
        self.assertEqual(
            events,
            [
                ("listening", None),
                ("hook_failed", "alive"),
                ("switch_started", None),
                ("hook_completed", "wake"),
                ("model_activated", None),
                ("backend_failed", None),
                # Passive health: the refused connection gets the model
                # checked, found dead and woken again for one more try.
                ("hook_failed", "alive"),
                ("model_dead", None),
                ("request_retried", None),
                ("hook_completed", "sleep"),
                ("switch_started", None),
                ("hook_completed", "wake"),
                ("model_activated", None),
                ("backend_failed", None),
                ("shutdown_started", None),
            ],
        )
