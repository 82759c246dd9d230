# -*- test-case-name: tests.test_metrics -*-
"""
Prometheus metrics: what the switcher and the proxy did, for dashboards.

Names and labels are part of llmux's interface (SPEC section 7); dashboards
built for llmux 2.4.0 depend on them. Each running service has its own
L{CollectorRegistry}, so tests (and several services in one process) never
see each other's numbers.

Counters and histograms are recorded when things happen. Gauges that mirror
the switcher's state (queue depths, in-flight counts, the awake model, switch
cost estimates) are read from it when Prometheus scrapes, which costs the
request path nothing and can never drift from the truth.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from time import perf_counter
from typing import Any

from prometheus_client import CollectorRegistry, Counter, GCCollector, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from zope.interface import implementer

from .cost import IDLE
from .interfaces import HookResult, ISwitcher, ISwitchObserver, ModelState
from .switcher import Active, Idle, Switching

__all__ = ["Metrics", "NO_MODEL_LABEL", "UNKNOWN_MODEL_LABEL"]

#: The C{model} label of a request that named no model.
NO_MODEL_LABEL = "none"
#: The C{model} label of a request for a model not in the config. Names
#: sent by clients never become labels: each would be a new time series.
UNKNOWN_MODEL_LABEL = "unknown"

#: Switches and hooks take from well under a second (vLLM sleep mode) to
#: many minutes (loading weights from disk).
_SWITCH_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200)
#: Requests: a few ms through the proxy, minutes behind a switch.
_REQUEST_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    120,
    300,
)
#: How long a model stays awake: seconds to hours.
_ACTIVE_BUCKETS = (1, 10, 30, 60, 300, 600, 1800, 3600, 7200, 21600, 86400)
#: Full garbage collections: well under a millisecond with a frozen heap and
#: no cycles, hundreds of milliseconds with thousands of dead streams.
_GC_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1)


@implementer(ISwitchObserver)
class Metrics:
    """
    The metrics of one llmux service, in their own registry.

    @ivar registry: the registry C{/metrics} exposes.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry = registry or CollectorRegistry()
        self._switches = Counter(
            "llmux_switch_total",
            "Model switches, by outcome.",
            ["from", "to", "result"],
            registry=registry,
        )
        self._switchDuration = Histogram(
            "llmux_switch_duration_seconds",
            "Time from the old model's sleep hook to the end of the new one's wake.",
            ["from", "to"],
            buckets=_SWITCH_BUCKETS,
            registry=registry,
        )
        self._drainDuration = Histogram(
            "llmux_switch_drain_duration_seconds",
            "Time the old model took to drain its in-flight requests.",
            ["from", "to"],
            buckets=_SWITCH_BUCKETS,
            registry=registry,
        )
        self._activeDuration = Histogram(
            "llmux_model_active_duration_seconds",
            "How long a model stayed awake before it was switched away.",
            ["model"],
            buckets=_ACTIVE_BUCKETS,
            registry=registry,
        )
        self._queueWait = Histogram(
            "llmux_request_queue_wait_seconds",
            "Time requests waited for their model to be woken.",
            ["model"],
            buckets=_REQUEST_BUCKETS,
            registry=registry,
        )
        self._requests = Counter(
            "llmux_requests_total",
            "Requests answered, by model and HTTP status sent.",
            ["model", "status"],
            registry=registry,
        )
        self._requestDuration = Histogram(
            "llmux_request_duration_seconds",
            "Time from a request's arrival to its response's first byte.",
            ["model", "status"],
            buckets=_REQUEST_BUCKETS,
            registry=registry,
        )
        self._hookDuration = Histogram(
            "llmux_hook_duration_seconds",
            "How long hooks ran.",
            ["model", "hook"],
            buckets=_SWITCH_BUCKETS,
            registry=registry,
        )
        self._hookFailures = Counter(
            "llmux_hook_failures_total",
            "Hooks that failed (non-zero exit, signal or timeout).",
            ["model", "hook"],
            registry=registry,
        )
        # The label child of each key, looked up once.
        self._keySeries: dict[str, Any] = {}
        self._byKey = Counter(
            "llmux_requests_by_key_total",
            "Proxied requests, by the name of the API key they were made with"
            " (only while auth.api_keys is set).",
            ["key"],
            registry=registry,
        )
        self._backendErrors = Counter(
            "llmux_backend_errors_total",
            "Requests whose backend failed before answering (502s).",
            ["model"],
            registry=registry,
        )
        self._deaths = Counter(
            "llmux_model_dead_total",
            "Awake models given up after failing their alive hook.",
            ["model"],
            registry=registry,
        )
        self._evictions = Counter(
            "llmux_evictions_total",
            "Models put to sleep (or unloaded) to make room or otherwise, by"
            " why: capacity, idle_ttl, admin, dead or shutdown.",
            ["model", "reason"],
            registry=registry,
        )
        # Per-request recording runs on every request: keep the labelled
        # children instead of looking them up each time.
        self._requestSeries: dict[tuple[str, int], tuple[Counter, Histogram]] = {}
        GCCollector(registry=registry)
        self._fullCollections = Histogram(
            "llmux_gc_full_pause_seconds",
            "How long full (generation 2) garbage collections stopped llmux.",
            buckets=_GC_BUCKETS,
            registry=registry,
        )
        self._collectionStarted = 0.0

    def watchGarbage(self) -> None:
        """
        Time every full garbage collection of this process from now on.
        """
        if self._timeCollection not in gc.callbacks:
            gc.callbacks.append(self._timeCollection)

    def unwatchGarbage(self) -> None:
        """
        Stop timing full garbage collections.
        """
        if self._timeCollection in gc.callbacks:
            gc.callbacks.remove(self._timeCollection)

    def _timeCollection(self, phase: str, info: dict[str, Any]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._collectionStarted = perf_counter()
        else:
            self._fullCollections.observe(perf_counter() - self._collectionStarted)

    def watch(self, switcher: ISwitcher) -> None:
        """
        Expose the gauges read from C{switcher} at scrape time.
        """
        self.registry.register(_SwitcherCollector(switcher))

    # -- the proxy -------------------------------------------------------------

    def requestAnswered(self, model: str, status: int, durationSecs: float) -> None:
        """
        A response began (its status and headers were sent) after
        C{durationSecs}.

        @param model: a configured model, L{NO_MODEL_LABEL} or L{UNKNOWN_MODEL_LABEL}.
        """
        series = self._requestSeries.get((model, status))
        if series is None:
            labels = (model, str(status))
            series = (
                self._requests.labels(*labels),
                self._requestDuration.labels(*labels),
            )
            self._requestSeries[(model, status)] = series
        series[0].inc()
        series[1].observe(durationSecs)

    def requestByKey(self, key: str) -> None:
        """
        A proxied request was made with the API key named C{key}.
        """
        series = self._keySeries.get(key)
        if series is None:
            series = self._keySeries[key] = self._byKey.labels(key)
        series.inc()

    def backendFailed(self, model: str) -> None:
        """
        A backend failed before it answered.
        """
        self._backendErrors.labels(model).inc()

    # -- ISwitchObserver -------------------------------------------------------

    def switched(
        self, from_: str | None, to: str, succeeded: bool, durationSecs: float
    ) -> None:
        source = from_ or IDLE
        result = "success" if succeeded else "failure"
        self._switches.labels(source, to, result).inc()
        if succeeded:
            self._switchDuration.labels(source, to).observe(durationSecs)

    def drained(self, from_: str, to: str, durationSecs: float) -> None:
        self._drainDuration.labels(from_, to).observe(durationSecs)

    def deactivated(self, model: str, activeSecs: float) -> None:
        self._activeDuration.labels(model).observe(activeSecs)

    def waited(self, model: str, waitSecs: float) -> None:
        self._queueWait.labels(model).observe(waitSecs)

    def died(self, model: str) -> None:
        self._deaths.labels(model).inc()

    def evicted(self, model: str, reason: str) -> None:
        self._evictions.labels(model, reason).inc()

    def hookRan(self, result: HookResult) -> None:
        self._hookDuration.labels(result.model, result.hook).observe(
            result.durationSecs
        )
        if not result.succeeded:
            self._hookFailures.labels(result.model, result.hook).inc()


class _SwitcherCollector(Collector):
    """
    Gauges read from the switcher when Prometheus scrapes.
    """

    def __init__(self, switcher: ISwitcher) -> None:
        self._switcher = switcher

    def collect(self) -> Iterator[Metric]:
        switcher = self._switcher
        depth = GaugeMetricFamily(
            "llmux_request_queue_depth",
            "Requests waiting for their model to be woken.",
            labels=["model"],
        )
        inFlight = GaugeMetricFamily(
            "llmux_model_in_flight",
            "Requests being served, by model.",
            labels=["model"],
        )
        active = GaugeMetricFamily(
            "llmux_active_model",
            "1 for each model that is awake and serving, 0 for the others.",
            labels=["model"],
        )
        states = GaugeMetricFamily(
            "llmux_model_state",
            "1 for each model's current state, 0 for its other states.",
            labels=["model", "state"],
        )
        for view in switcher.views():
            depth.add_metric([view.name], view.queueDepth)
            inFlight.add_metric([view.name], view.inFlight)
            active.add_metric([view.name], 1 if view.up else 0)
            for each in ModelState:
                states.add_metric(
                    [view.name, each.value], 1 if view.state is each else 0
                )
        cost = GaugeMetricFamily(
            "llmux_switch_cost_ema_seconds",
            "Estimated switch cost (moving average of observed switches).",
            labels=["from", "to"],
        )
        for (source, target), seconds in sorted(switcher.costs.snapshot().items()):
            cost.add_metric([source, target], seconds)
        state = GaugeMetricFamily(
            "llmux_switcher_state",
            "1 for the switcher's current state: idle, switching or active.",
            labels=["state"],
        )
        current = switcher.state.name
        for name in (Idle.name, Switching.name, Active.name):
            state.add_metric([name], 1 if name == current else 0)
        capacity = GaugeMetricFamily(
            "llmux_capacity_units",
            "The declared capacity of each pool.",
            labels=["pool"],
        )
        used = GaugeMetricFamily(
            "llmux_capacity_used_units",
            "What models hold of each pool.",
            labels=["pool"],
        )
        for pool in switcher.pools():
            capacity.add_metric([pool.name], pool.capacity)
            used.add_metric([pool.name], pool.used)
        yield from (depth, inFlight, active, states, cost, state, capacity, used)
