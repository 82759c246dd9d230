"""
The scale benchmark (issue 15): thousands of slow SSE streams through each
target, one command, one table, one JSON file.

    python benchmarks/scale.py                         # full size
    python benchmarks/scale.py --streams 1000 --soak 10 --cost 2   # smoke test

It starts the backend (C{backend.py}) and the targets with C{run.py}'s
functions (targets on the proxy core; backend, client and harness on the
load core), then runs three phases, target after target in each:

  1. B{ramp}: C{--streams} streams (10,000) opened at C{--rate} new streams/s
     (1,000), each C{--chunks} events (8) C{--delay} s apart (0.8). A stream
     lives about 5.6 s, so with these defaults at most about 5,600 are open
     at once (more when the target falls behind; the table says how many).
  2. B{cost}: C{--cost} x C{--cost-rate} streams (4 s x 250/s = 1,000) of
     one chunk, then as many of C{--chunks} chunks, opened at C{--cost-rate}
     new streams/s (chunks arrive one at a time), then the same opened all
     at once (chunks arrive in bursts): loads every target keeps up with.
     The difference of the target's CPU time over the chunks beyond each
     stream's first is the CPU price of a chunk (L{COST_MODES}).
  3. B{soak}: C{--soak} seconds (60) at C{--soak-rate} new streams/s (1,000),
     streams of the same shape (about 6,000 open).

For each target and phase it reports: streams complete, chunks and
C{[DONE]} lost, first-chunk latency from the start of the request
(connecting included, so a SYN dropped by a full accept queue counts),
per-chunk latency (arrival minus the backend's send stamp), connect time,
resident memory (sampled every 0.1 s: the peak, and in the soak the value
every 10 s and whether it is flat: the mean over the last 20 s within 5% of
the mean over the first 20 s after one stream's lifetime), the target's CPU
time, full garbage collections and their pauses, and accept-queue overflows
(the kernel's C{TcpExtListenOverflows} and C{TcpExtListenDrops}, from
C{nstat}, before and after each measurement: counters of the whole machine,
not of one socket).

Full collections: llmux's C{/metrics} (C{python_gc_collections_total},
C{llmux_gc_full_pause_seconds}) when it has them ("n/a" otherwise); the
minimal treq proxy runs with C{--gc-stats} (a C{gc.callbacks} hook,
C{GET /_bench/gc}).

The load: C{loadgen.py sse --engine epoll}, one process on the load core: a
bare C{epoll} loop that costs about 60% of asyncio's CPU per stream. Against
I{direct} (the backend itself) the full-size ramp gets first-chunk p99 of a
few ms and chunk p99 under 2 ms, so the client and the backend are not what
the proxies' figures measure; the table shows the load core's busy share
and the client's own loop lag in every run to check it.

Results go to C{benchmarks/results/scale-<time>.json} and
C{benchmarks/results/scale-latest.json}; the table and the checks of issue
15's "Done when" are printed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from loadgen import percentile
from run import (
    CLOCK_TICK,
    HERE,
    LABELS,
    REPO,
    TARGET_ORDER,
    Processes,
    Target,
    cpuSeconds,
    formatValue,
    freePort,
    llmuxSourceTree,
    log,
    machine,
    pinnedTo,
    request,
    sourceState,
    sseCommand,
    startTargets,
    statusField,
    table,
    waitForPort,
)

#: The targets measured unless C{--targets} says otherwise.
DEFAULT_TARGETS = ("direct", "nginx", "treq", "llmux")
#: The minimal treq proxy's listen backlog unless C{--backlog treq=N}: the
#: one llmux gives the port it builds (since issue 15).
TREQ_BACKLOG = 1024
#: The goals of issue 15 ("Done when").
FIRST_CHUNK_P99_MS = 100
CHUNK_P99_MS = 50
RSS_FLAT = 0.05
FULL_GC_PAUSE_MS = 50
CPU_PER_CHUNK_US = 20


@dataclass(frozen=True)
class Settings:
    """
    What one run measures.
    """

    streams: int = 10_000
    rate: float = 1000.0
    chunks: int = 8
    delay: float = 0.8
    soak: float = 60.0
    soakRate: float = 1000.0
    cost: float = 4.0
    costRate: float = 250.0
    settle: float = 2.0
    sample: float = 0.1
    window: float = 1.0

    @property
    def lifetime(self) -> float:
        """
        Seconds from a stream's start to its last event, roughly.
        """
        return self.chunks * self.delay

    def peakOpen(self) -> int:
        """
        About the most streams open at once, in either phase.
        """
        ramp = min(self.streams, self.rate * self.lifetime)
        soak = min(self.soak, self.lifetime) * self.soakRate
        return int(max(ramp, soak) * 1.1) + 100


# -- what the targets report ---------------------------------------------------


_SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)", re.M)
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def prometheusSamples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """
    The samples of a Prometheus text exposition: (name, labels) -> value.
    """
    samples = {}
    for name, labels, value in _SAMPLE.findall(text):
        key = frozenset(_LABEL.findall(labels or ""))
        with contextlib.suppress(ValueError):
            samples[(name, key)] = float(value)
    return samples


def gcSnapshot(target: Target) -> dict[str, Any] | None:
    """
    The target's garbage collections so far, if it reports them: llmux in
    its C{/metrics}, the minimal treq proxy on C{GET /_bench/gc}.
    """
    try:
        if target.name == "treq":
            return {
                "kind": "callbacks",
                **json.loads(request(target.port, "/_bench/gc")[1]),
            }
        if target.name.startswith("llmux"):
            text = request(target.port, "/metrics")[1].decode()
            return {"kind": "metrics", "samples": prometheusSamples(text)}
    except OSError as e:
        log(f"{target.name}: no GC figures ({e})")
    return None


def gcDelta(
    before: dict[str, Any] | None, after: dict[str, Any] | None
) -> dict[str, Any]:
    """
    The full collections between two L{gcSnapshot}s and their pauses (ms):
    exact for the treq proxy; for llmux, from the histogram's buckets, so
    the maximum and p99 are bucket bounds (C{pause_bounded}).
    """
    if before is None or after is None:
        return {"source": None}
    if before["kind"] == "callbacks":
        pauses = [
            p * 1000 for _, p in after["full_pauses"][len(before["full_pauses"]) :]
        ]
        return {
            "source": "gc.callbacks",
            "collections": [
                a - b
                for a, b in zip(
                    after["collections"], before["collections"], strict=True
                )
            ],
            "full": len(pauses),
            "pause_max_ms": round(max(pauses), 2) if pauses else 0.0,
            "pause_p99_ms": round(percentile(pauses, 0.99) or 0.0, 2),
            "pause_total_ms": round(sum(pauses), 1),
            "over_limit": sum(1 for p in pauses if p > FULL_GC_PAUSE_MS),
            "pause_bounded": False,
            "pauses_ms": [round(p, 2) for p in pauses],
        }
    old, new = before["samples"], after["samples"]

    def delta(name: str, **labels: str) -> float | None:
        key = (name, frozenset(labels.items()))
        if key not in new:
            return None
        return new[key] - old.get(key, 0.0)

    result: dict[str, Any] = {"source": "metrics"}
    generations = [
        delta("python_gc_collections_total", generation=str(g)) for g in range(3)
    ]
    if all(g is not None for g in generations):
        result["collections"] = [int(g or 0) for g in generations]
    count = delta("llmux_gc_full_pause_seconds_count")
    total = delta("llmux_gc_full_pause_seconds_sum")
    buckets = sorted(
        (float(dict(labels)["le"]), new[(name, labels)] - old.get((name, labels), 0.0))
        for name, labels in new
        if name == "llmux_gc_full_pause_seconds_bucket"
    )
    if count is None and "collections" not in result:
        return {"source": None}
    if count is not None:
        result["full"] = int(count)
        result["pause_total_ms"] = round((total or 0.0) * 1000, 1)
        result["pause_bounded"] = count > 0
        result["buckets"] = [[le, int(n)] for le, n in buckets]
        result["pause_max_ms"] = _bound(buckets, count) if count else 0.0
        result["pause_p99_ms"] = _bound(buckets, 0.99 * count) if count else 0.0
        if count == 1:  # the sum is that one pause
            result["pause_max_ms"] = result["pause_p99_ms"] = result["pause_total_ms"]
            result["pause_bounded"] = False
        # Pauses above the largest bound at or below the limit: at least
        # those above the limit (exactly those if the limit is a bound).
        under = [n for le, n in buckets if le <= FULL_GC_PAUSE_MS / 1000]
        if under:
            result["over_limit"] = int(count - under[-1])
            result["over_limit_exact"] = any(
                le == FULL_GC_PAUSE_MS / 1000 for le, _ in buckets
            )
    else:
        result["full"] = result["collections"][2]
    return result


def _bound(buckets: list[tuple[float, float]], rank: float) -> float:
    """
    The smallest bucket bound (ms) with at least C{rank} observations at or
    under it.
    """
    for le, n in buckets:
        if n >= rank:
            return le * 1000
    return float("inf")


def listenCounters() -> dict[str, int]:
    """
    The kernel's accept-queue counters (whole machine): with C{nstat -asz}
    (absolute values, history file untouched), or from C{/proc/net/netstat}.
    """
    names = ("TcpExtListenOverflows", "TcpExtListenDrops")
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        out = subprocess.run(
            ["nstat", "-asz", *names], capture_output=True, text=True, check=True
        ).stdout
        counters = {
            line.split()[0]: int(line.split()[1])
            for line in out.splitlines()
            if line.split() and line.split()[0] in names
        }
        if len(counters) == len(names):
            return counters
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for header, values in zip(lines[::2], lines[1::2], strict=False):
        if header.startswith("TcpExt:"):
            fields = dict(zip(header.split()[1:], values.split()[1:], strict=True))
            return {name: int(fields[name.removeprefix("TcpExt")]) for name in names}
    return {}


def systemSeconds(pids: list[int]) -> float:
    """
    The part of L{cpuSeconds} spent in the kernel (stime): on loopback it
    includes the receiving side's TCP work and waking the receiver.
    """
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            total += int(stat.rsplit(")", 1)[1].split()[12])
    return total / CLOCK_TICK


# -- one measurement --------------------------------------------------------------


@dataclass
class Bench:
    """
    What every measurement needs.
    """

    settings: Settings
    backend: Target
    loadCPU: int | None
    proxyCPU: int | None


def collectBackend(bench: Bench) -> None:
    """
    Have the backend free what earlier connections left (it runs without
    automatic garbage collection).
    """
    with contextlib.suppress(OSError):
        request(bench.backend.port, "/_bench/collect")


def measure(
    bench: Bench,
    target: Target,
    streams: int,
    chunks: int,
    delay: float,
    ramp: float,
) -> dict[str, Any]:
    """
    Run C{streams} streams through C{target}, opened evenly over C{ramp}
    seconds, sampling its memory; return the client's figures and the
    target's.
    """
    settings = bench.settings
    collectBackend(bench)
    time.sleep(settings.settle)
    target.refreshPids()
    pids = target.pids
    timeout = chunks * delay + 60
    argv = sseCommand(
        target.port,
        streams,
        chunks,
        delay,
        ramp,
        timeout,
        "--engine",
        "epoll",
        "--window",
        str(settings.window),
    )
    gcBefore = gcSnapshot(target)
    listenBefore = listenCounters()
    rssBefore = statusField(pids, "VmRSS")
    cpuBefore = cpuSeconds(pids)
    systemBefore = systemSeconds(pids)
    backendBefore = cpuSeconds(bench.backend.pids)
    process = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=pinnedTo(bench.loadCPU),
    )
    started = time.monotonic()
    deadline = started + ramp + timeout + 60
    samples: list[tuple[float, int]] = []
    try:
        while process.poll() is None:
            now = time.monotonic()
            if now > deadline:
                raise RuntimeError(
                    f"{target.name}: the client ran past {deadline - started:.0f} s"
                )
            samples.append((round(now - started, 2), statusField(pids, "VmRSS")))
            time.sleep(settings.sample)
    finally:
        if process.poll() is None:
            process.kill()
        out, err = process.communicate()
    wall = time.monotonic() - started
    cpu = cpuSeconds(pids) - cpuBefore
    system = systemSeconds(pids) - systemBefore
    backendCPU = cpuSeconds(bench.backend.pids) - backendBefore
    listenAfter = listenCounters()
    gcAfter = gcSnapshot(target)
    if process.returncode != 0:
        log(f"{target.name}: the client failed:\n{err.decode()}")
        last = (err.decode().strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"the client exited with {process.returncode}: {last}")
    one: dict[str, Any] = json.loads(out.decode().splitlines()[-1])
    client = one["client"]
    one.update(
        cpu_s=round(cpu, 3),
        cpu_system_s=round(system, 3),
        backend_cpu_s=round(backendCPU, 3),
        wall_s=round(wall, 2),
        target_cpu_pct=round(100 * cpu / wall, 1),
        load_cpu_pct=round(100 * (backendCPU + client["cpu_s"]) / wall, 1),
        rss_before_mib=round(rssBefore / 1024, 1),
        peak_rss_mib=round(
            max((kib for _, kib in samples), default=rssBefore) / 1024, 1
        ),
        vm_hwm_mib=round(statusField(pids, "VmHWM") / 1024, 1),
        rss_mib=[[t, round(kib / 1024, 1)] for t, kib in samples],
        listen={
            name: listenAfter.get(name, 0) - listenBefore.get(name, 0)
            for name in ("TcpExtListenOverflows", "TcpExtListenDrops")
        },
        gc=gcDelta(gcBefore, gcAfter),
    )
    return one


def memoryTrend(one: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """
    The soak's memory: RSS every 10 s, and whether it is flat (the mean over
    the last 20 s of the soak within 5% of the mean over the first 20 s
    after one stream's lifetime, when the number of open streams has
    levelled; shorter windows for a shorter soak).
    """
    samples = one["rss_mib"]
    marks = []
    for mark in range(0, int(samples[-1][0]) + 1 if samples else 0, 10):
        nearest = min(samples, key=lambda s: abs(s[0] - mark))
        marks.append([mark, nearest[1]])
    start, end = settings.lifetime, settings.soak
    width = min(20.0, (end - start) / 2)
    trend: dict[str, Any] = {"every_10s_mib": marks, "window_s": round(width, 1)}
    if width < 1:
        return trend
    first = [v for t, v in samples if start <= t <= start + width]
    last = [v for t, v in samples if end - width <= t <= end]
    if first and last:
        firstMean = sum(first) / len(first)
        lastMean = sum(last) / len(last)
        growth = lastMean / firstMean - 1
        trend.update(
            first_mib=round(firstMean, 1),
            last_mib=round(lastMean, 1),
            growth_pct=round(100 * growth, 2),
            flat=abs(growth) <= RSS_FLAT,
        )
    # Memory follows the streams open: a target that falls behind holds more.
    windows = [
        (w["t_s"], w["most_open"])
        for w in one.get("timeline", [])
        if w.get("most_open") is not None
    ]
    firstOpen = [n for t, n in windows if start <= t <= start + width]
    lastOpen = [n for t, n in windows if end - width <= t <= end]
    if firstOpen and lastOpen:
        trend["open_growth_pct"] = round(
            100
            * (sum(lastOpen) / len(lastOpen) / (sum(firstOpen) / len(firstOpen)) - 1),
            2,
        )
    return trend


# -- the phases ---------------------------------------------------------------------


def runRamp(
    bench: Bench, targets: list[Target], failures: list[str]
) -> dict[str, dict[str, Any]]:
    """
    C{streams} streams at C{rate} new streams/s through each target. A
    measurement that fails is left out, and why goes into C{failures}.
    """
    s = bench.settings
    results = {}
    for target in targets:
        log(f"ramp {target.name}: {s.streams} streams at {s.rate:g}/s")
        try:
            one = measure(
                bench, target, s.streams, s.chunks, s.delay, s.streams / s.rate
            )
        except RuntimeError as e:
            failures.append(f"ramp {target.name} failed: {e}")
            log(failures[-1])
            continue
        results[target.name] = one
        log(_progress(target.name, one))
    return results


#: The cost phase's two ways: streams opened C{1 / costRate} s apart, so the
#: chunks of different streams arrive one at a time and each costs a turn of
#: the reactor (the soak's shape); or all at once, so every C{delay} the
#: backend sends one chunk of every stream together and the target relays
#: them in a burst (the shape of C{run.py}'s "CPU per chunk": less per chunk).
COST_MODES = ("apart", "together")


def runCost(
    bench: Bench, targets: list[Target], failures: list[str]
) -> dict[str, dict[str, Any]]:
    """
    The CPU price of a chunk, at a load every target keeps up with: in each
    of L{COST_MODES}, C{cost * costRate} one-chunk streams, then as many of
    C{chunks} chunks, through each target. The difference of the two CPU
    times over the chunks beyond each stream's first is the price of a
    chunk, connection and request excluded.
    """
    s = bench.settings
    results: dict[str, dict[str, Any]] = {}
    streams = max(1, round(s.cost * s.costRate))
    for target in targets:
        result: dict[str, Any] = {"streams": streams}
        try:
            for mode in COST_MODES:
                ramp = s.cost if mode == "apart" else 0.0
                runs = {}
                for chunks in (1, s.chunks):
                    log(
                        f"cost {target.name}: {streams} streams of {chunks}"
                        f" chunk(s), {mode}"
                    )
                    one = measure(bench, target, streams, chunks, s.delay, ramp)
                    log(_progress(target.name, one))
                    runs[chunks] = one
                single, full = runs[1], runs[s.chunks]
                figures: dict[str, Any] = {
                    "one_chunk": _costFigures(single),
                    "all_chunks": _costFigures(full),
                }
                extra = full["chunks_received"] - single["chunks_received"]
                complete = single["complete_streams"] == full["complete_streams"]
                if complete and full["complete_streams"] == streams and extra:
                    figures["cpu_us_per_extra_chunk"] = round(
                        (full["cpu_s"] - single["cpu_s"]) * 1e6 / extra, 1
                    )
                result[mode] = figures
        except RuntimeError as e:
            failures.append(f"cost {target.name} failed: {e}")
            log(failures[-1])
            continue
        results[target.name] = result
    return results


def _costFigures(one: dict[str, Any]) -> dict[str, Any]:
    """
    What the cost phase keeps of one measurement.
    """
    keys = (
        "streams",
        "complete_streams",
        "lost",
        "chunks_received",
        "cpu_s",
        "cpu_system_s",
        "target_cpu_pct",
        "first_chunk_ms",
        "chunk_latency_ms",
        "gc",
        "listen",
    )
    return {key: one[key] for key in keys}


def runSoak(
    bench: Bench, targets: list[Target], failures: list[str]
) -> dict[str, dict[str, Any]]:
    """
    C{soak} seconds of streams at C{soakRate} new streams/s through each
    target. A measurement that fails is left out, and why goes into
    C{failures}.
    """
    s = bench.settings
    results = {}
    streams = round(s.soak * s.soakRate)
    for target in targets:
        log(f"soak {target.name}: {s.soak:g} s at {s.soakRate:g}/s ({streams} streams)")
        try:
            one = measure(bench, target, streams, s.chunks, s.delay, s.soak)
        except RuntimeError as e:
            failures.append(f"soak {target.name} failed: {e}")
            log(failures[-1])
            continue
        one["memory"] = memoryTrend(one, s)
        results[target.name] = one
        log(_progress(target.name, one) + f", RSS {one['memory']}")
    return results


def _progress(name: str, one: dict[str, Any]) -> str:
    """
    One log line about one measurement.
    """
    gc = one["gc"]
    return (
        f"{name}: {one['complete_streams']}/{one['streams']} complete,"
        f" lost {one['lost']},"
        f" outcomes {one['outcomes']}, first chunk p50 {one['first_chunk_ms']['p50']}"
        f" p99 {one['first_chunk_ms']['p99']} ms, chunk p50"
        f" {one['chunk_latency_ms']['p50']} p99 {one['chunk_latency_ms']['p99']} ms,"
        f" peak RSS {one['peak_rss_mib']} MiB, CPU {one['cpu_s']} s, full GCs"
        f" {gc.get('full', 'n/a')} (max {gc.get('pause_max_ms', 'n/a')} ms), listen"
        f" {one['listen']}, load {one['load_cpu_pct']}% of a core, client lag p99"
        f" {one['client']['loop_lag_ms']['p99']} ms"
    )


# -- reporting ------------------------------------------------------------------------


def summarise(
    ramp: dict[str, dict[str, Any]],
    soak: dict[str, dict[str, Any]],
    costs: dict[str, dict[str, Any]],
) -> dict[str, dict[str, Any]]:
    """
    One flat dictionary of figures per target.
    """
    summary: dict[str, dict[str, Any]] = {}
    for prefix, phase in (("r_", ramp), ("s_", soak)):
        for name, one in phase.items():
            figures = summary.setdefault(name, {})
            gc = one["gc"]
            figures.update(
                {
                    f"{prefix}complete": f"{one['complete_streams']}/{one['streams']}",
                    f"{prefix}failed": one["streams"] - one["complete_streams"],
                    f"{prefix}lost": one["lost"],
                    f"{prefix}max_open": one["client"].get("max_open"),
                    f"{prefix}fc_p50": one["first_chunk_ms"]["p50"],
                    f"{prefix}fc_p99": one["first_chunk_ms"]["p99"],
                    f"{prefix}fc_max": one["first_chunk_ms"]["max"],
                    f"{prefix}connect_p99": one["connect_ms"]["p99"],
                    f"{prefix}chunk_p50": one["chunk_latency_ms"]["p50"],
                    f"{prefix}chunk_p99": one["chunk_latency_ms"]["p99"],
                    f"{prefix}chunk_max": one["chunk_latency_ms"]["max"],
                    f"{prefix}peak_rss": one["peak_rss_mib"],
                    f"{prefix}cpu_s": one["cpu_s"],
                    f"{prefix}cpu_sys": (
                        round(100 * one["cpu_system_s"] / one["cpu_s"], 1)
                        if one["cpu_s"]
                        else None
                    ),
                    f"{prefix}gc_full": gc.get("full", "n/a")
                    if gc["source"]
                    else "n/a",
                    f"{prefix}gc_max": _pause(gc, "pause_max_ms"),
                    f"{prefix}gc_p99": _pause(gc, "pause_p99_ms"),
                    f"{prefix}gc_over": gc.get("over_limit", "n/a")
                    if gc["source"]
                    else "n/a",
                    f"{prefix}gc_total": gc.get("pause_total_ms", "n/a")
                    if gc["source"]
                    else "n/a",
                    f"{prefix}overflows": "{} / {}".format(
                        one["listen"]["TcpExtListenOverflows"],
                        one["listen"]["TcpExtListenDrops"],
                    ),
                    f"{prefix}load_busy": one["load_cpu_pct"],
                    f"{prefix}proxy_busy": one["target_cpu_pct"],
                    f"{prefix}client_lag": one["client"]["loop_lag_ms"]["p99"],
                }
            )
            if name == "direct":  # the backend's GC is off: nothing to report
                for key in ("gc_full", "gc_max", "gc_p99", "gc_over", "gc_total"):
                    figures[prefix + key] = "-"
    for name, one in soak.items():
        figures = summary[name]
        memory = one["memory"]
        for mark, mib in memory["every_10s_mib"]:
            figures[f"s_rss_{mark}"] = mib
        figures["s_rss_growth"] = memory.get("growth_pct")
        figures["s_open_growth"] = memory.get("open_growth_pct")
        figures["s_rss_flat"] = {True: "yes", False: "no", None: "-"}[
            memory.get("flat")
        ]
        if name == "direct":
            # The backend runs without its garbage collector (backend.py):
            # its memory grows within a phase by design.
            figures["s_rss_flat"] = "- (no GC)"
        chunks = one["chunks_received"]
        streams = one["complete_streams"]
        figures["s_cpu_stream"] = (
            round(one["cpu_s"] * 1e6 / streams, 1) if streams else None
        )
        figures["s_cpu_chunk"] = (
            round(one["cpu_s"] * 1e6 / chunks, 1) if chunks else None
        )
    for name, cost in costs.items():
        figures = summary.setdefault(name, {})
        for mode in COST_MODES:
            if mode not in cost:
                continue
            for key in ("one_chunk", "all_chunks"):
                one = cost[mode][key]
                figures[f"c_{mode}_{key}"] = (
                    round(one["cpu_s"] * 1e6 / one["streams"], 1)
                    if one["streams"]
                    else None
                )
            figures[f"c_{mode}_busy"] = cost[mode]["all_chunks"]["target_cpu_pct"]
            figures[f"c_{mode}_extra"] = cost[mode].get("cpu_us_per_extra_chunk")
    return summary


def _pause(gc: dict[str, Any], key: str) -> Any:
    """
    A pause figure for the table: C{"<= X"} when it is a bucket bound.
    """
    if not gc["source"] or key not in gc:
        return "n/a"
    value = gc[key]
    return f"<= {formatValue(value)}" if gc.get("pause_bounded") else value


def rows(
    settings: Settings, summary: dict[str, dict[str, Any]]
) -> list[tuple[str, str, str]]:
    """
    The table's rows for these settings.
    """
    s = settings
    phases = [
        ("r_", f"{s.streams:,} streams at {s.rate:g}/s"),
        ("s_", f"soak {s.soak:g} s at {s.soakRate:g}/s"),
    ]
    result: list[tuple[str, str, str]] = []
    for prefix, label in phases:
        result += [
            (f"{prefix}complete", f"{label}: complete", "none"),
            (f"{prefix}lost", f"{label}: chunks+[DONE] lost", "none"),
            (f"{prefix}max_open", f"{label}: most streams open at once", "none"),
            (f"{prefix}fc_p50", f"{label}: first chunk p50 (ms)", "ratio"),
            (f"{prefix}fc_p99", f"{label}: first chunk p99 (ms)", "ratio"),
            (f"{prefix}fc_max", f"{label}: first chunk max (ms)", "ratio"),
            (f"{prefix}connect_p99", f"{label}: connect p99 (ms)", "ratio"),
            (f"{prefix}chunk_p50", f"{label}: chunk latency p50 (ms)", "ratio"),
            (f"{prefix}chunk_p99", f"{label}: chunk latency p99 (ms)", "ratio"),
            (f"{prefix}chunk_max", f"{label}: chunk latency max (ms)", "ratio"),
            (f"{prefix}peak_rss", f"{label}: peak RSS (MiB)", "ratio"),
            (f"{prefix}gc_full", f"{label}: full GCs", "none"),
            (f"{prefix}gc_max", f"{label}: full GC pause max (ms)", "none"),
            (f"{prefix}gc_p99", f"{label}: full GC pause p99 (ms)", "none"),
            (
                f"{prefix}gc_over",
                f"{label}: full GCs over {FULL_GC_PAUSE_MS} ms",
                "none",
            ),
            (f"{prefix}gc_total", f"{label}: full GC pauses, total (ms)", "none"),
            (f"{prefix}overflows", f"{label}: listen overflows / drops", "none"),
            (f"{prefix}cpu_s", f"{label}: target CPU (s)", "ratio"),
            (f"{prefix}cpu_sys", f"{label}: of which in the kernel (%)", "none"),
            (
                f"{prefix}proxy_busy",
                f"{label}: target CPU, share of a core (%)",
                "none",
            ),
            (
                f"{prefix}load_busy",
                f"{label}: backend + client CPU, share of a core (%)",
                "none",
            ),
            (f"{prefix}client_lag", f"{label}: client loop lag p99 (ms)", "none"),
        ]
    marks = sorted(
        {
            int(key[6:])
            for figures in summary.values()
            for key in figures
            if key.startswith("s_rss_") and key[6:].isdigit()
        }
    )
    result += [
        (f"s_rss_{mark}", f"soak: RSS at {mark} s (MiB)", "ratio") for mark in marks
    ]
    result += [
        ("s_rss_growth", "soak: RSS last 20 s vs first 20 s after ramp (%)", "none"),
        ("s_rss_flat", f"soak: RSS flat (within {RSS_FLAT:.0%})", "none"),
        ("s_open_growth", "soak: streams open, same windows (%)", "none"),
        ("s_cpu_stream", "soak: CPU per stream (us)", "ratio"),
        ("s_cpu_chunk", "soak: CPU per chunk, all of it over the chunks (us)", "ratio"),
    ]
    streams = max(1, round(s.cost * s.costRate))
    for mode, label in (
        ("apart", f"cost, {streams:,} streams at {s.costRate:g}/s"),
        ("together", f"cost, {streams:,} streams at once"),
    ):
        result += [
            (f"c_{mode}_one_chunk", f"{label}: CPU per one-chunk stream (us)", "ratio"),
            (
                f"c_{mode}_all_chunks",
                f"{label}: CPU per {s.chunks}-chunk stream (us)",
                "ratio",
            ),
            (
                f"c_{mode}_busy",
                f"{label}: target CPU, share of a core, {s.chunks}-chunk (%)",
                "none",
            ),
            (
                f"c_{mode}_extra",
                f"{label}: CPU per chunk beyond a stream's first (us)",
                "ratio",
            ),
        ]
    return result


def checks(
    settings: Settings, summary: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """
    Issue 15's "Done when", for each llmux target.
    """
    result = []
    for name, figures in summary.items():
        if not name.startswith("llmux"):
            continue
        ramp = f"{settings.streams:,} streams"
        items: list[tuple[str, Any, str, bool | None]] = []
        if "r_lost" in figures:
            complete = figures["r_failed"] == 0 and figures["r_lost"] == 0
            items += [
                (
                    f"{ramp}: chunks+[DONE] lost (streams incomplete:"
                    f" {figures['r_failed']})",
                    figures["r_lost"],
                    "0",
                    complete,
                ),
                (
                    f"{ramp}: first-chunk p99 (ms)",
                    figures["r_fc_p99"],
                    f"< {FIRST_CHUNK_P99_MS}",
                    _below(figures["r_fc_p99"], FIRST_CHUNK_P99_MS),
                ),
                (
                    f"{ramp}: chunk p99 (ms)",
                    figures["r_chunk_p99"],
                    f"< {CHUNK_P99_MS}",
                    _below(figures["r_chunk_p99"], CHUNK_P99_MS),
                ),
            ]
        if "s_lost" in figures:
            flat = {"yes": True, "no": False}.get(figures.get("s_rss_flat", "-"))
            over = figures.get("s_gc_over")
            items += [
                (
                    "soak: RSS growth, last 20 s vs first 20 s after ramp (%)",
                    figures.get("s_rss_growth"),
                    f"within {RSS_FLAT:.0%}",
                    flat,
                ),
                (
                    f"soak: full collections longer than {FULL_GC_PAUSE_MS} ms"
                    f" (max {figures.get('s_gc_max')} ms)",
                    over,
                    "0",
                    None if not isinstance(over, int) else over == 0,
                ),
            ]
        streams = max(1, round(settings.cost * settings.costRate))
        for mode, how in (
            ("together", f"{streams:,} streams at once, chunks in bursts"),
            ("apart", f"{settings.costRate:g} new streams/s, chunks one at a time"),
        ):
            if f"c_{mode}_extra" in figures:
                items.append(
                    (
                        f"CPU per chunk beyond a stream's first, {how} (us)",
                        figures[f"c_{mode}_extra"],
                        f"<= {CPU_PER_CHUNK_US} (goal)",
                        _below(
                            figures[f"c_{mode}_extra"], CPU_PER_CHUNK_US, inclusive=True
                        ),
                    )
                )
        for label, value, goal, met in items:
            result.append(
                {
                    "target": name,
                    "check": label,
                    "value": value,
                    "goal": goal,
                    "met": met,
                }
            )
    return result


def _below(value: Any, limit: float, inclusive: bool = False) -> bool | None:
    """
    Whether C{value} is under C{limit}, or C{None} if it was not measured.
    """
    if not isinstance(value, int | float):
        return None
    return value <= limit if inclusive else value < limit


def printReport(
    summary: dict[str, dict[str, Any]],
    settings: Settings,
    goals: list[dict[str, Any]],
    notes: list[str],
) -> None:
    """
    Print the table, the checks and the notes.
    """
    print()
    print(table(summary, rows(settings, summary)))
    print()
    for goal in goals:
        verdict = {True: "met", False: "MISSED", None: "not measured"}[goal["met"]]
        value = goal["value"]
        shown = formatValue(value) if value is not None else "n/a"
        print(
            f"- {goal['target']}: {goal['check']}: {shown}"
            f" (goal {goal['goal']}): {verdict}"
        )
    for note in notes:
        print(f"- note: {note}")


# -- main --------------------------------------------------------------------


def treeBacklog(source: Path) -> int | None:
    """
    The listen backlog the llmux of C{source} gives the port it builds
    (C{LISTEN_BACKLOG} in C{llmux/tap.py}), or C{None} if it gives none
    (Twisted's default, 50).
    """
    with contextlib.suppress(OSError):
        tap = (source / "llmux" / "tap.py").read_text()
        match = re.search(r"^LISTEN_BACKLOG\s*=\s*(\d+)", tap, re.M)
        if match:
            return int(match.group(1))
    return None


def listenBacklogs(
    names: list[str], source: Path, variants: dict[str, Path], specs: list[str]
) -> dict[str, int]:
    """
    The listen backlog of each target that takes one: C{--backlog} first,
    then each llmux tree's own (L{treeBacklog}: the harness must give llmux
    an explicit C{--listen}, to stay on 127.0.0.1, and llmux applies its
    default only to a port it builds), then L{TREQ_BACKLOG} for treq.
    Missing or 0: none given (Twisted's 50).
    """
    backlogs: dict[str, int] = {}
    for name in names:
        if name == "treq":
            backlogs[name] = TREQ_BACKLOG
        elif name.startswith("llmux"):
            backlog = treeBacklog(variants.get(name, source))
            if backlog is not None:
                backlogs[name] = backlog
    for spec in specs:
        name, _, value = spec.partition("=")
        if name not in names or not value.isdigit():
            raise SystemExit(f"--backlog {spec}: expected TARGET=N for a target run")
        if int(value):
            backlogs[name] = int(value)
        else:
            backlogs.pop(name, None)
    return backlogs


def argumentParser() -> argparse.ArgumentParser:
    """
    The command line.
    """
    defaults = Settings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument(
        "--streams",
        type=int,
        default=defaults.streams,
        help="streams in the ramp phase (default %(default)s)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=defaults.rate,
        help="new streams/s in the ramp phase (default %(default)s)",
    )
    parser.add_argument(
        "--chunks",
        type=int,
        default=defaults.chunks,
        help="events per stream (default %(default)s)",
    )
    parser.add_argument(
        "--delay",
        type=float,
        default=defaults.delay,
        help="seconds between events (default %(default)s)",
    )
    parser.add_argument(
        "--soak",
        type=float,
        default=defaults.soak,
        help="seconds of soak (default %(default)s; 0 skips it)",
    )
    parser.add_argument(
        "--soak-rate",
        type=float,
        default=defaults.soakRate,
        help="new streams/s in the soak (default %(default)s)",
    )
    parser.add_argument(
        "--cost",
        type=float,
        default=defaults.cost,
        help="seconds of streams opened in each half of the cost phase"
        " (default %(default)s)",
    )
    parser.add_argument(
        "--cost-rate",
        type=float,
        default=defaults.costRate,
        help="new streams/s in the cost phase, one every target keeps up with"
        " (default %(default)s)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=defaults.settle,
        help="seconds of quiet before each measurement",
    )
    parser.add_argument(
        "--skip", default="", help="comma-separated phases to skip: ramp, cost, soak"
    )
    parser.add_argument(
        "--targets",
        default=",".join(DEFAULT_TARGETS),
        help=f"comma-separated subset of: {', '.join(TARGET_ORDER)}"
        " (default %(default)s)",
    )
    parser.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="NAME=SRC",
        help="also run the llmux source tree SRC (a checkout or its src/) as"
        " target llmux-NAME (repeatable; the same tree twice, under two names,"
        " to give each its own --backlog)",
    )
    parser.add_argument(
        "--backlog",
        action="append",
        default=[],
        metavar="TARGET=N",
        help="the listen backlog of an llmux target or of treq (repeatable;"
        " 0: none given, Twisted's 50). Default: for llmux, the one its tree"
        " gives the port it builds (LISTEN_BACKLOG in llmux/tap.py, else"
        f" Twisted's 50); for treq, {TREQ_BACKLOG}",
    )
    parser.add_argument(
        "--llmux-src",
        type=Path,
        default=REPO / "src",
        help="the llmux source tree to run",
    )
    parser.add_argument("--proxy-cpu", type=int, default=1)
    parser.add_argument("--load-cpu", type=int, default=0)
    parser.add_argument("--output", type=Path, help="JSON results file")
    return parser


def main() -> None:
    """
    Run the scale benchmark, print the table and the checks, write the JSON.
    """
    options = argumentParser().parse_args()
    settings = Settings(
        streams=options.streams,
        rate=options.rate,
        chunks=options.chunks,
        delay=options.delay,
        soak=options.soak,
        soakRate=options.soak_rate,
        cost=options.cost,
        costRate=options.cost_rate,
        settle=options.settle,
    )
    skip = {s for s in options.skip.split(",") if s}
    if settings.soak <= 0:
        skip.add("soak")
    source = llmuxSourceTree(options.llmux_src)
    notes: list[str] = []
    failures: list[str] = []

    proxyCPU: int | None = options.proxy_cpu
    loadCPU: int | None = options.load_cpu
    if {proxyCPU, loadCPU} - os.sched_getaffinity(0) or proxyCPU == loadCPU:
        notes.append("not pinned: the requested cores are not available")
        proxyCPU = loadCPU = None
    if loadCPU is not None:
        os.sched_setaffinity(0, {loadCPU})

    # Every process started inherits the limit: the proxy holds two
    # descriptors per open stream, the client and the backend one.
    needed = 2 * settings.peakOpen() + 200
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(
            resource.RLIMIT_NOFILE, (max(hard, needed), max(hard, needed))
        )
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if soft < needed:
        notes.append(
            f"open-file limit {soft} (could not raise it) is under the {needed} that"
            f" about {settings.peakOpen()} open streams need: streams may fail"
        )

    names = [n for n in options.targets.split(",") if n]
    variants: dict[str, Path] = {}
    for spec in options.compare:
        name, _, path = spec.partition("=")
        if not name or not path or f"llmux-{name}" in names:
            raise SystemExit(f"--compare {spec}: expected NAME=DIR, a new NAME")
        variants[f"llmux-{name}"] = llmuxSourceTree(Path(path))
        names.append(f"llmux-{name}")
    if "nginx" in names and shutil.which("nginx") is None:
        names.remove("nginx")
        notes.append("nginx not installed (apt-get install nginx): nginx skipped")
    if shutil.which("nstat") is None:
        notes.append(
            "nstat not installed (apt-get install iproute2): listen counters"
            " read from /proc/net/netstat"
        )
    backlogs = listenBacklogs(names, source, variants, options.backlog)
    for name in names:
        if name in backlogs or name.startswith("llmux"):
            label = LABELS.get(name, name)
            LABELS[name] = f"{label} (backlog {backlogs.get(name) or 50})"
    for note in notes:
        log("NOTE: " + note)

    workdir = Path(tempfile.mkdtemp(prefix="llmux-scale-"))
    processes = Processes(workdir)
    started = time.time()
    configs: dict[str, Any] = {}
    ramp: dict[str, dict[str, Any]] = {}
    costs: dict[str, dict[str, Any]] = {}
    soak: dict[str, dict[str, Any]] = {}
    try:
        backendPort = freePort()
        backendProcess = processes.start(
            "backend",
            [sys.executable, str(HERE / "backend.py"), "--port", str(backendPort)],
            loadCPU,
        )
        waitForPort(backendPort)
        log(f"work directory {workdir}; targets: {', '.join(names)}")
        active = startTargets(
            processes,
            names,
            (backendPort, backendPort),
            source,
            proxyCPU,
            backendProcess,
            variants,
            configs,
            backlogs=backlogs,
            treqOptions=["--gc-stats"],
            nginxConnections=min(hard - 100, 2 * settings.peakOpen() + 1000),
        )
        backend = Target("backend", backendPort, backendProcess, [backendProcess.pid])
        bench = Bench(settings, backend, loadCPU, proxyCPU)
        for target in active:
            if target.name.startswith("llmux"):
                snapshot = gcSnapshot(target)
                figures = gcDelta(snapshot, snapshot)
                if "pause_max_ms" not in figures:
                    notes.append(
                        f"{target.name}: no llmux_gc_full_pause_seconds in its"
                        " /metrics: full GC pauses n/a"
                        + (
                            ""
                            if figures.get("collections")
                            else ", and no python_gc_collections_total:"
                            " full GC count n/a"
                        )
                    )
        if "ramp" not in skip:
            ramp = runRamp(bench, active, failures)
        if "cost" not in skip:
            costs = runCost(bench, active, failures)
        if "soak" not in skip:
            soak = runSoak(bench, active, failures)
    finally:
        processes.stopAll()
    shutil.rmtree(workdir, ignore_errors=True)

    for phase, results in (("ramp", ramp), ("soak", soak)):
        direct = results.get("direct")
        if direct and (direct["client"]["loop_lag_ms"]["p99"] or 0) > 5:
            notes.append(
                f"{phase}: the client's loop ran late (p99"
                f" {direct['client']['loop_lag_ms']['p99']} ms)"
                " even against direct: the load core may be what limits the figures"
            )
    notes += failures
    summary = summarise(ramp, soak, costs)
    goals = checks(settings, summary)
    result = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "elapsed_s": round(time.time() - started, 1),
        "command": " ".join(sys.argv),
        "machine": machine(),
        "llmux_source": sourceState(source),
        "llmux_configs": configs,
        "settings": asdict(settings),
        "listen_backlogs": {
            name: backlogs.get(name, 50)
            for name in names
            if name == "treq" or name.startswith("llmux")
        },
        "compare_sources": {name: sourceState(path) for name, path in variants.items()},
        "open_file_limit": soft,
        "pinning": {"proxy_cpu": proxyCPU, "load_cpu": loadCPU},
        "notes": notes,
        "summary": summary,
        "checks": goals,
        "raw": {"ramp": ramp, "cost": costs, "soak": soak},
    }
    output = options.output
    if output is None:
        folder = HERE / "results"
        folder.mkdir(exist_ok=True)
        output = folder / time.strftime("scale-%Y%m%d-%H%M%S.json")
        (folder / "scale-latest.json").write_text(json.dumps(result, indent=2))
    output.write_text(json.dumps(result, indent=2))
    printReport(summary, settings, goals, notes)
    print(f"\nresults: {output} ({result['elapsed_s']} s)")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    main()
