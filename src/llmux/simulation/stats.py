# -*- test-case-name: tests.test_simulation_report -*-
"""
The numbers of a simulation report, computed from a L{Run}'s observations.

Time is split four ways, instant by instant (the first that applies):

  - I{serving}: some backend is working on a request;
  - I{switching}: a C{sleep} or C{wake} hook is running;
  - I{blocked}: neither, yet requests are waiting for a model (the policy
    holds an idle model, a cooldown, a backoff);
  - I{idle}: nothing to do.

I{Utilization} is the share of the time there was work (everything but
I{idle}) that the GPU spent serving: C{serving / (serving + switching +
blocked)}. Idle time without work is nobody's fault, so it does not count
against a policy; switching and holding the GPU while others wait do.

A request's I{wait} runs from its arrival until its backend starts on it.
Percentiles use the nearest-rank method, so every figure is the wait of an
actual request and small cases can be checked by hand.

With a declared capacity several models may be awake, serve and switch at
once; the split still runs instant by instant, for the host as a whole
(I{serving} while any backend serves), and L{ResidencySummary} adds what
residency did: admissions, evictions, idle sleeps, how many models were
awake.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import attrs

from .records import REFUSED, TIMEOUT, Run

__all__ = [
    "ModelSummary",
    "ResidencySummary",
    "Summary",
    "TimeSplit",
    "WaitStats",
    "percentile",
    "summarize",
]


def percentile(sortedValues: Sequence[float], p: float) -> float:
    """
    The nearest-rank C{p}th percentile of C{sortedValues} (ascending, not
    empty): the smallest value with at least C{p}% of values at or below it.
    """
    rank = max(1, math.ceil(p / 100.0 * len(sortedValues)))
    return sortedValues[rank - 1]


@attrs.frozen
class WaitStats:
    """
    How long requests waited, in seconds.
    """

    count: int
    mean: float
    p50: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of(cls, waits: Sequence[float]) -> WaitStats | None:
        """
        The statistics of C{waits}, or C{None} if there are none.
        """
        if not waits:
            return None
        ordered = sorted(waits)
        return cls(
            count=len(ordered),
            mean=sum(ordered) / len(ordered),
            p50=percentile(ordered, 50),
            p95=percentile(ordered, 95),
            p99=percentile(ordered, 99),
            max=ordered[-1],
        )


@attrs.frozen
class TimeSplit:
    """
    Where the wall time of a run went, in seconds; see the module docstring.
    """

    serving: float
    switching: float
    blocked: float
    idle: float

    @property
    def wall(self) -> float:
        return self.serving + self.switching + self.blocked + self.idle

    @property
    def utilization(self) -> float:
        """
        The share of the time with work that went to serving; 0 without work.
        """
        busy = self.serving + self.switching + self.blocked
        return self.serving / busy if busy > 0 else 0.0


@attrs.frozen
class ModelSummary:
    """
    One model's requests.

    @ivar timedOut: requests that timed out waiting for the model (504).
    @ivar refused: requests turned away (503) because the model's queue
        was full, or only pinned models were in the way of the model.
    @ivar failed: requests that failed otherwise.
    @ivar unfinished: requests neither served nor failed when the run was
        cut off.
    @ivar wait: from arrival to the start of service.
    @ivar slotWait: from arrival to the slot grant: the wait for the model
        alone, without any queueing inside the backend.
    """

    model: str
    requests: int
    served: int
    timedOut: int
    refused: int
    failed: int
    unfinished: int
    wait: WaitStats | None
    slotWait: WaitStats | None


@attrs.frozen
class ResidencySummary:
    """
    What residency did in a run with a declared capacity.

    @ivar admissions: wakes that put nothing to sleep first (cold starts,
        admissions beside the models awake, preloads).
    @ivar evictions: models put to sleep to make room for another.
    @ivar idleSleeps: models put to sleep after their C{idle_ttl_secs}.
    @ivar wakes: C{wake} hooks run, by model (every model listed).
    @ivar meanAwake: the mean number of models awake (up) over the run.
    @ivar maxAwake: the most models awake at once.
    """

    admissions: int
    evictions: int
    idleSleeps: int
    wakes: Mapping[str, int]
    meanAwake: float
    maxAwake: int


@attrs.frozen
class Summary:
    """
    The report's figures for one policy.

    @ivar switches: completed switches (C{wake} hooks), the cold start
        included; with a declared capacity, every wake (admissions too).
    @ivar switchSecs: the mean measured switch cost (first victim's
        C{sleep} start, or the C{wake} start if there was none, to the
        C{wake} end), or C{None} without switches.
    @ivar throughput: requests served per second of wall time.
    @ivar residency: what residency did; C{None} without a declared
        capacity.
    """

    policy: str
    settings: Mapping[str, object]
    requests: int
    served: int
    timedOut: int
    refused: int
    failed: int
    unfinished: int
    switches: int
    switchSecs: float | None
    time: TimeSplit
    throughput: float
    wait: WaitStats | None
    models: tuple[ModelSummary, ...]
    policyErrors: tuple[str, ...]
    residency: ResidencySummary | None = None

    @property
    def utilization(self) -> float:
        return self.time.utilization


def _timeSplit(run: Run) -> TimeSplit:
    serving = switching = blocked = idle = 0.0
    for here, end in run.stretches():
        span = max(0.0, end - here.t)
        if any(here.executing):
            serving += span
        elif here.switching:
            switching += span
        elif any(here.queued):
            blocked += span
        else:
            idle += span
    return TimeSplit(serving, switching, blocked, idle)


def _switchCosts(run: Run) -> list[float]:
    """
    The measured cost of each successful switch, as the switcher measured
    it: from the start of the first C{sleep} that made room for it (a cold
    start or an admission has none) to the end of its C{wake}. Switches may
    overlap with a declared capacity, so this is not worked out from the
    order hooks ended in.
    """
    return [wake.secs for wake in run.switched if wake.succeeded]


def _awakeCounts(run: Run) -> tuple[float, int]:
    """
    The mean number of models awake over the run, weighted by time, and
    the most awake at once.
    """
    weighted = 0.0
    most = 0
    for here, end in run.stretches():
        weighted += len(here.awake) * max(0.0, end - here.t)
        most = max(most, len(here.awake))
    return (weighted / run.end if run.end > 0 else 0.0), most


def _residencySummary(run: Run) -> ResidencySummary | None:
    if run.capacity is None:
        return None
    reasons = [sleep.reason for sleep in run.evicted]
    wakes = {model: 0 for model in run.models}
    for hook in run.wakes:
        wakes[hook.model] += 1
    meanAwake, maxAwake = _awakeCounts(run)
    return ResidencySummary(
        admissions=sum(1 for wake in run.switched if wake.from_ is None),
        evictions=reasons.count("capacity"),
        idleSleeps=reasons.count("idle_ttl"),
        wakes=wakes,
        meanAwake=meanAwake,
        maxAwake=maxAwake,
    )


def _modelSummary(run: Run, model: str) -> ModelSummary:
    outcomes = [o for o in run.outcomes if o.request.model == model]
    served = [o for o in outcomes if o.served]
    errors = [o.error for o in outcomes if o.error is not None]
    return ModelSummary(
        model=model,
        requests=len(outcomes),
        served=len(served),
        timedOut=errors.count(TIMEOUT),
        refused=errors.count(REFUSED),
        failed=sum(1 for e in errors if e not in (TIMEOUT, REFUSED)),
        unfinished=sum(1 for o in outcomes if not o.done),
        wait=WaitStats.of([o.wait for o in outcomes if o.wait is not None]),
        slotWait=WaitStats.of([o.slotWait for o in outcomes if o.slotWait is not None]),
    )


def summarize(run: Run) -> Summary:
    """
    The report's figures for C{run}.
    """
    models = tuple(_modelSummary(run, model) for model in run.models)
    costs = _switchCosts(run)
    time = _timeSplit(run)
    served = sum(m.served for m in models)
    return Summary(
        policy=run.policy,
        settings=run.settings,
        requests=len(run.outcomes),
        served=served,
        timedOut=sum(m.timedOut for m in models),
        refused=sum(m.refused for m in models),
        failed=sum(m.failed for m in models),
        unfinished=sum(m.unfinished for m in models),
        switches=len(run.wakes),
        switchSecs=sum(costs) / len(costs) if costs else None,
        time=time,
        throughput=served / run.end if run.end > 0 else 0.0,
        wait=WaitStats.of([o.wait for o in run.outcomes if o.wait is not None]),
        models=models,
        policyErrors=run.policyErrors,
        residency=_residencySummary(run),
    )
