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
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import attrs

from .records import REFUSED, TIMEOUT, Run

__all__ = [
    "ModelSummary",
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
    @ivar refused: requests turned away because the model's queue was full
        (503).
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
class Summary:
    """
    The report's figures for one policy.

    @ivar switches: completed switches (C{wake} hooks), the cold start
        included.
    @ivar switchSecs: the mean measured switch cost (old model's C{sleep}
        start to new model's C{wake} end), or C{None} without switches.
    @ivar throughput: requests served per second of wall time.
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
    The measured cost of each switch: from the start of the C{sleep} that
    preceded its C{wake} (a cold start has none) to the end of the C{wake}.

    Switches are serialized, so in the order hooks ended, a switch's
    C{sleep} comes right before its C{wake}.
    """
    costs = []
    lastSleep = None
    for hook in run.hookRuns:
        if hook.hook == "sleep":
            lastSleep = hook
        elif hook.hook == "wake":
            began = lastSleep if hook.after is not None else None
            costs.append(hook.ended - (hook if began is None else began).started)
            lastSleep = None
    return costs


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
    )
