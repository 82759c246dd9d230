# -*- test-case-name: tests.test_simulation_workloads -*-
"""
Workloads for the simulator: the requests that arrive, when, for which model,
and how long each keeps its backend busy.

A workload is generated once, as a sorted tuple of L{Request}s, and then the
same requests are played through every policy being compared, so policies are
judged on identical traffic. All randomness comes from the one
L{random.Random} passed in, so a seed fixes the workload.

Generators:

  - L{interleaved}: one request every C{gapSecs}, the models taking strict
    turns (A, B, A, B, ...): the pattern that makes C{fifo} switch for every
    request, and whose outcome can be worked out by hand;
  - L{poisson}: independent Poisson arrivals per model;
  - L{bursty}: per model, Poisson arrivals during "on" periods separated by
    silent "off" periods (both exponentially distributed);
  - L{batchChat}: a batch job floods one model while chat traffic trickles
    to another;
  - L{readTrace}: a JSON-lines file of C{{"t", "model", "service_secs"}}
    records, so users can replay their own logs.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterable, Mapping
from typing import IO

import attrs

__all__ = [
    "Request",
    "ServiceTimes",
    "TraceError",
    "batchChat",
    "bursty",
    "interleaved",
    "poisson",
    "readTrace",
]


@attrs.frozen(order=True)
class Request:
    """
    One simulated request.

    @ivar t: arrival time, in seconds from the start of the run.
    @ivar model: the model it asks for.
    @ivar serviceSecs: how long its backend works on it once started.
    """

    t: float
    model: str
    serviceSecs: float


@attrs.frozen
class ServiceTimes:
    """
    How long requests keep their backend busy.

    @ivar mean: seconds per request, by model; models not listed take
        C{default}.
    @ivar distribution: C{"fixed"} (every request takes the mean) or C{"exp"}
        (exponentially distributed around the mean, as for Poisson service).
    """

    default: float = 1.0
    mean: Mapping[str, float] = attrs.field(factory=dict)
    distribution: str = attrs.field(default="fixed")

    @distribution.validator
    def _checkDistribution(self, attribute: object, value: str) -> None:
        if value not in ("fixed", "exp"):
            raise ValueError(
                f"service distribution must be fixed or exp, not {value!r}"
            )

    def meanFor(self, model: str) -> float:
        """
        The mean service time of C{model}'s requests.
        """
        return self.mean.get(model, self.default)

    def draw(self, model: str, rng: random.Random) -> float:
        """
        The service time of one request for C{model}.
        """
        mean = self.meanFor(model)
        if self.distribution == "fixed" or mean == 0:
            return mean
        return rng.expovariate(1.0 / mean)


def interleaved(
    models: tuple[str, ...],
    gapSecs: float,
    durationSecs: float,
    service: ServiceTimes,
    rng: random.Random,
) -> tuple[Request, ...]:
    """
    One request every C{gapSecs}, starting at 0, the models taking turns in
    order, for arrivals before C{durationSecs}.
    """
    if gapSecs <= 0:
        raise ValueError("the gap between requests must be above 0")
    count = math.ceil(durationSecs / gapSecs)
    requests = []
    for i in range(count):
        model = models[i % len(models)]
        requests.append(Request(i * gapSecs, model, service.draw(model, rng)))
    return tuple(requests)


def _poissonTimes(
    rate: float, start: float, end: float, rng: random.Random
) -> Iterable[float]:
    """
    Arrival times of a Poisson process of C{rate} per second in [start, end).
    """
    if rate <= 0:
        return
    t = start + rng.expovariate(rate)
    while t < end:
        yield t
        t += rng.expovariate(rate)


def _merge(
    arrivals: Iterable[tuple[float, str]], service: ServiceTimes, rng: random.Random
) -> tuple[Request, ...]:
    """
    Sort arrivals by time (then model, for ties) and give each a service time.

    Service times are drawn after sorting, so they do not depend on the order
    in which the per-model streams were generated.
    """
    return tuple(
        Request(t, model, service.draw(model, rng)) for t, model in sorted(arrivals)
    )


def poisson(
    rates: Mapping[str, float],
    durationSecs: float,
    service: ServiceTimes,
    rng: random.Random,
) -> tuple[Request, ...]:
    """
    Independent Poisson arrivals per model, C{rates[model]} requests a second.
    """
    arrivals = [
        (t, model)
        for model, rate in rates.items()
        for t in _poissonTimes(rate, 0.0, durationSecs, rng)
    ]
    return _merge(arrivals, service, rng)


def bursty(
    rates: Mapping[str, float],
    durationSecs: float,
    onSecs: float,
    offSecs: float,
    service: ServiceTimes,
    rng: random.Random,
) -> tuple[Request, ...]:
    """
    On/off traffic: each model alternates between bursts, during which
    requests arrive as a Poisson process of C{rates[model]} a second, and
    silences. Burst and silence lengths are exponentially distributed with
    means C{onSecs} and C{offSecs}; each model starts in a burst with
    probability C{onSecs / (onSecs + offSecs)}, independently of the others.
    """
    if onSecs <= 0 or offSecs < 0:
        raise ValueError("bursts must last above 0 s and silences at least 0 s")
    arrivals: list[tuple[float, str]] = []
    for model, rate in rates.items():
        on = rng.random() < onSecs / (onSecs + offSecs)
        t = 0.0
        while t < durationSecs:
            if on:
                length = rng.expovariate(1.0 / onSecs)
                end = min(t + length, durationSecs)
                arrivals.extend((a, model) for a in _poissonTimes(rate, t, end, rng))
            else:
                length = rng.expovariate(1.0 / offSecs) if offSecs > 0 else 0.0
            t += length
            on = not on
    return _merge(arrivals, service, rng)


def batchChat(
    batchModel: str,
    chatModel: str,
    batchRate: float,
    chatRate: float,
    durationSecs: float,
    service: ServiceTimes,
    rng: random.Random,
    batchStart: float = 0.0,
    batchSecs: float | None = None,
) -> tuple[Request, ...]:
    """
    A batch job floods C{batchModel} with C{batchRate} requests a second
    (Poisson) from C{batchStart} for C{batchSecs} (default: to the end),
    while chat requests trickle to C{chatModel} at C{chatRate} a second
    (Poisson) for the whole run.
    """
    batchEnd = durationSecs if batchSecs is None else batchStart + batchSecs
    batchEnd = min(batchEnd, durationSecs)
    arrivals = [
        (t, batchModel) for t in _poissonTimes(batchRate, batchStart, batchEnd, rng)
    ]
    arrivals += [
        (t, chatModel) for t in _poissonTimes(chatRate, 0.0, durationSecs, rng)
    ]
    return _merge(arrivals, service, rng)


class TraceError(Exception):
    """
    A trace file line is not a valid request record; the message names the
    line.
    """


def readTrace(
    lines: IO[str] | Iterable[str],
    service: ServiceTimes,
    rng: random.Random,
    source: str = "<trace>",
) -> tuple[Request, ...]:
    """
    Read requests from JSON lines: one object per line with C{t} (arrival,
    seconds, any origin), C{model}, and optionally C{service_secs} (else a
    service time is drawn from C{service}). Blank lines and lines starting
    with C{#} are skipped. Times are shifted so the first request arrives at
    0, and the requests are sorted by time (stable for equal times).

    @raise TraceError: naming C{source}, the line and what is wrong with it.
    """
    records: list[tuple[float, int, str, float | None]] = []
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        where = f"{source}:{number}"
        try:
            record = json.loads(text)
        except json.JSONDecodeError as e:
            raise TraceError(f"{where}: invalid JSON: {e.msg}") from None
        if not isinstance(record, dict):
            raise TraceError(f"{where}: expected an object with t and model")
        t = _traceNumber(record.get("t"), "t", where)
        model = record.get("model")
        if not isinstance(model, str) or not model:
            raise TraceError(f"{where}: model must be a non-empty string")
        secs = record.get("service_secs")
        if secs is not None:
            secs = _traceNumber(secs, "service_secs", where)
        records.append((t, number, model, secs))
    if not records:
        raise TraceError(f"{source}: no requests in the trace")
    records.sort()
    origin = records[0][0]
    return tuple(
        Request(t - origin, model, service.draw(model, rng) if secs is None else secs)
        for t, _, model, secs in records
    )


def _traceNumber(value: object, key: str, where: str) -> float:
    """
    A finite number from a trace record (not negative unless it is C{t}).
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or (key != "t" and value < 0)
    ):
        kind = "a number" if key == "t" else "a number of 0 or more"
        raise TraceError(f"{where}: {key} must be {kind}, not {value!r}")
    return float(value)
