"""
The llmux benchmark harness: one command, one table, one JSON file.

    python benchmarks/run.py            # full run, about 6 minutes
    python benchmarks/run.py --quick    # smaller run, under 2 minutes

It starts, on 127.0.0.1 only:

  - the benchmark backend (C{benchmarks/backend.py}) and, one at a time, the
    load generators (C{wrk} and C{benchmarks/loadgen.py}), pinned to the
    load core (default 0);
  - the targets, pinned to the proxy core (default 1), all in front of the
    same backend port: I{direct} (the backend itself, no proxy), I{nginx}
    (a plain reverse proxy, one worker; skipped when C{nginx} is not
    installed), I{treq} (a minimal Twisted + treq streaming proxy built the
    way llmux's proxy leaf is, C{benchmarks/treq_proxy.py}), I{rp}
    (C{twisted.web.proxy.ReverseProxyResource}, C{benchmarks/rp_proxy.py})
    and I{llmux} itself, run through its console-script entry point
    (C{llmux._cli.main}) from this checkout's C{src/} on a config whose
    hooks start nothing; with C{--capacity}, also I{llmux-capacity}: the
    same llmux on a config with a C{capacity:} table and two models awake
    at once (L{CAPACITY}, L{RESIDENTS}).

Then it measures, target after target in each round (so slow drifts of the
machine hit every target alike), and reports medians over the rounds:

  1. non-streaming requests at concurrency 1, 16 and 64 (C{wrk}, or the
     Python fallback in C{loadgen.py http} when C{wrk} is missing):
     requests/s, latency p50/p99, added latency against I{direct}, and the
     target's CPU time per request (utime + stime of its processes, from
     C{/proc}, over the run, divided by the requests served);
  2. 100 concurrent streams of 100 chunks 20 ms apart: time to first chunk,
     per-chunk latency (the backend stamps each event with its send time),
     added latency against I{direct}, every chunk and C{[DONE]} counted, and
     CPU time per chunk (the phase's CPU time less what the stream requests
     cost as plain requests, divided by the chunks relayed);
  3. 2000 concurrent slow streams (opened over 2 s): all complete, nothing
     lost, peak resident memory of the target;
  4. llmux's switch overhead: a second llmux with two models on two backend
     ports, instant hooks, and requests alternating between the models. The
     wake hook is C{exec date +%s%N >> wake-times}: the time stamp is the
     last thing the hook process does before it exits. The backend stamps
     the time each recorded request began to arrive. The difference, per
     switch, is what llmux adds between the hook's exit and the first byte
     forwarded (Twisted noticing the exit, the switcher releasing the
     waiter, treq sending the request).

Results go to C{benchmarks/results/<time>.json} and C{benchmarks/results/
latest.json}; the table is printed at the end. C{--profile} instead runs
py-spy on llmux under load and writes the hottest functions (see
C{benchmarks/README.md}).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CLOCK_TICK = os.sysconf("SC_CLK_TCK")

#: The order targets are shown in.
TARGET_ORDER = ("direct", "nginx", "treq", "rp", "llmux")
LABELS = {
    "direct": "direct (no proxy)",
    "nginx": "nginx",
    "treq": "minimal treq proxy",
    "rp": "ReverseProxyResource",
    "llmux": "llmux",
    "llmux-capacity": "llmux with capacity",
}

#: The target C{--capacity} adds: llmux from the same source tree as
#: I{llmux}, on a config with a C{capacity:} table (residency, issue 11).
CAPACITY_TARGET = "llmux-capacity"
#: Its capacity table.
CAPACITY: dict[str, float] = {"gpu0": 80, "gpu1": 80}
#: Its models and what each adds to the plain model entry: the measured model
#: keeps the name C{bench} (the load generators ask for it), and a second
#: model, awake too, on the backend's second port, so every request is
#: served with two residents booked against the capacity.
RESIDENTS: dict[str, dict[str, Any]] = {
    "bench": {"resources": {"gpu0": 30}},
    "resident": {"resources": {"gpu1": 30}, "preload": True},
}
#: The name under which C{--compare} gives the tree that the I{within 5% of
#: before} targets compare llmux against (issue 11): C{--compare before=DIR}.
BEFORE_TARGET = "llmux-before"


@dataclass
class Settings:
    """
    What one run measures and for how long.
    """

    rounds: int
    durations: dict[int, int]
    warmup: int
    streams: int = 100
    streamChunks: int = 100
    streamDelay: float = 0.02
    streamRounds: int = 3
    scaleStreams: int = 2000
    scaleChunks: int = 20
    scaleDelay: float = 0.5
    scaleRamp: float = 2.0
    switches: int = 100


FULL = Settings(rounds=3, durations={1: 3, 16: 3, 64: 5}, warmup=2)
QUICK = Settings(
    rounds=1,
    durations={1: 2, 16: 2, 64: 2},
    warmup=1,
    streamRounds=1,
    scaleChunks=8,
    scaleDelay=0.4,
    switches=30,
)


# -- processes -----------------------------------------------------------------


def freePort() -> int:
    """
    A TCP port on 127.0.0.1 that nothing listens on right now.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def waitForPort(port: int, timeout: float = 30.0) -> None:
    """
    Wait until something accepts connections on C{port}.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=1),
        ):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout}s")


def pinnedTo(cpu: int | None) -> Callable[[], None] | None:
    """
    A C{preexec_fn} that pins the child to C{cpu} (no pinning if C{None}).
    """
    if cpu is None:
        return None

    def pin() -> None:
        os.sched_setaffinity(0, {cpu})

    return pin


def processTree(pid: int) -> list[int]:
    """
    C{pid} and its descendants (nginx's master and workers, for instance).
    """
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def cpuSeconds(pids: list[int]) -> float:
    """
    User plus system CPU seconds used so far by C{pids} (all their threads).
    """
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICK


def statusField(pids: list[int], key: str) -> int:
    """
    The sum over C{pids} of the C{/proc/<pid>/status} field C{key}: in KiB
    for C{VmRSS} and C{VmHWM}, a count for C{Threads}.
    """
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(key + ":"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


@dataclass
class Target:
    """
    One thing requests are sent to, and the processes whose CPU it costs.
    """

    name: str
    port: int
    process: subprocess.Popen[bytes] | None = None
    pids: list[int] = field(default_factory=list)

    def refreshPids(self) -> None:
        """
        Find the target's processes again (nginx's workers, for instance).
        """
        if self.process is not None:
            self.pids = processTree(self.process.pid)


class Processes:
    """
    The processes a run started; all are stopped by L{stopAll}.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._started: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(
        self,
        name: str,
        argv: list[str],
        cpu: int | None,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """
        Start C{argv} pinned to C{cpu}, its output in C{<workdir>/<name>.log}.
        """
        log = open(self.workdir / f"{name}.log", "wb")
        process = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=pinnedTo(cpu),
            env=env,
            cwd=self.workdir,
        )
        log.close()
        self._started.append((name, process))
        return process

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        """
        SIGTERM, then SIGKILL if it has not exited 10 s later.
        """
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def stopAll(self) -> None:
        """
        Stop every process started, the last started first.
        """
        for _, process in reversed(self._started):
            self.stop(process)


# -- llmux ---------------------------------------------------------------------


def sourceEnvironment(source: Path) -> dict:
    """
    An environment whose Python imports llmux from the source tree
    C{source} first.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(source)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    return env


#: The listen backlog llmux gives the port it builds (llmux.tap.LISTEN_BACKLOG).
LLMUX_BACKLOG = 1024


def sseCommand(
    port: int,
    streams: int,
    chunks: int,
    delay: float,
    ramp: float,
    timeout: float,
    *options: str,
) -> list[str]:
    """
    The command line of C{loadgen.py sse} against C{port}, with further
    C{options} (C{--engine epoll}, ...).
    """
    return [
        sys.executable,
        str(HERE / "loadgen.py"),
        "sse",
        *options,
        "--port",
        str(port),
        "--streams",
        str(streams),
        "--chunks",
        str(chunks),
        "--delay",
        str(delay),
        "--ramp",
        str(ramp),
        "--timeout",
        str(timeout),
    ]


def llmuxCommand(
    source: Path, configPath: Path, port: int, backlog: int | None = LLMUX_BACKLOG
) -> tuple[list[str], dict]:
    """
    The command line and environment that run llmux through its console
    script entry point, from the source tree C{source}, listening on
    127.0.0.1 with C{backlog}: by default the backlog llmux gives the port
    it builds itself; C{None} or 0 for none in C{--listen}, so Twisted's 50.
    """
    env = sourceEnvironment(source)
    listen = f"tcp:{port}:interface=127.0.0.1"
    if backlog:
        listen += f":backlog={backlog}"
    argv = [
        sys.executable,
        "-c",
        "from llmux._cli import main; main()",
        "--config",
        str(configPath),
        "--listen",
        listen,
    ]
    return argv, env


def writeConfig(
    path: Path,
    models: dict[str, tuple[int, str]],
    capacity: dict[str, float] | None = None,
    extra: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """
    Write an llmux config (JSON, which llmux reads as such): model name ->
    (backend port, wake hook); sleep and alive hooks are C{true}. With
    C{capacity}, the config declares that C{capacity:} table, and C{extra}
    adds keys to models' entries (C{resources}, C{preload}, ...).

    @return: the config written.
    """
    config: dict[str, Any] = {
        "models": {
            name: {
                "port": port,
                "wake": wake,
                "sleep": "true",
                "alive": "true",
                **(extra or {}).get(name, {}),
            }
            for name, (port, wake) in models.items()
        },
    }
    if capacity is not None:
        config = {"capacity": capacity, **config}
    path.write_text(json.dumps(config, indent=2))
    return config


def llmuxSourceTree(path: Path) -> Path:
    """
    The directory to put on C{PYTHONPATH} to run the llmux of C{path}: the
    directory holding the C{llmux} package, or a checkout whose C{src/} does.
    Anything else is an error: Python would silently import the installed
    llmux instead.
    """
    path = path.resolve()
    for candidate in (path, path / "src"):
        if (candidate / "llmux" / "__init__.py").is_file():
            return candidate
    raise SystemExit(f"{path}: no llmux package in it or in its src/")


def residencyStatus(port: int) -> dict[str, Any]:
    """
    The residency part of llmux's C{/llmux/status}: the models awake, the
    capacity, what is used of it, and each model's state and holdings.
    """
    status = json.loads(request(port, "/llmux/status")[1])
    return {
        "awake": status.get("awake"),
        "capacity": status.get("capacity"),
        "used": status.get("used"),
        "models": {
            name: {"state": model.get("state"), "holds": model.get("holds")}
            for name, model in status.get("models", {}).items()
        },
    }


def waitForResidents(port: int, timeout: float = 15.0) -> dict[str, Any]:
    """
    Wait until every model of L{RESIDENTS} is awake in the llmux listening
    on C{port}, and return its L{residencyStatus}.
    """
    deadline = time.monotonic() + timeout
    while True:
        status = residencyStatus(port)
        if set(status["awake"] or ()) >= set(RESIDENTS):
            return status
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{CAPACITY_TARGET}: expected {sorted(RESIDENTS)} awake, "
                f"status says {json.dumps(status)}"
            )
        time.sleep(0.1)


# -- load ------------------------------------------------------------------------


def request(port: int, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    """
    One blocking HTTP request to 127.0.0.1:C{port}.
    """
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST" if body is not None else "GET",
    )
    with urllib.request.urlopen(req, timeout=30) as response:
        return response.status, response.read()


def chatBody(model: str, stream: bool = False) -> bytes:
    """
    A small chat completion request body for C{model}.
    """
    payload: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": "Say hello."}],
    }
    if stream:
        payload["stream"] = True
    return json.dumps(payload).encode()


class Load:
    """
    Runs the load generators, pinned to the load core.
    """

    def __init__(self, cpu: int | None, useWrk: bool) -> None:
        self.cpu = cpu
        self.useWrk = useWrk

    def http(self, port: int, connections: int, duration: float) -> dict[str, Any]:
        """
        Non-streaming requests for C{duration} seconds.
        """
        if self.useWrk:
            argv = [
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{max(1, round(duration))}s",
                "--timeout",
                "5s",
                "-s",
                str(HERE / "wrk_post.lua"),
                f"http://127.0.0.1:{port}/v1/chat/completions",
            ]
            out = self._run(argv, duration + 30)
            for line in out.splitlines():
                if line.startswith("WRKJSON "):
                    result: dict[str, Any] = json.loads(line[len("WRKJSON ") :])
                    return result
            raise RuntimeError(f"wrk printed no summary:\n{out}")
        argv = [
            sys.executable,
            str(HERE / "loadgen.py"),
            "http",
            "--port",
            str(port),
            "--connections",
            str(connections),
            "--duration",
            str(duration),
        ]
        return self._json(argv, duration + 30)

    def sse(
        self, port: int, streams: int, chunks: int, delay: float, ramp: float = 0.0
    ) -> dict[str, Any]:
        """
        C{streams} concurrent streams of C{chunks} chunks C{delay} apart.
        """
        timeout = chunks * delay + ramp + 30
        argv = sseCommand(port, streams, chunks, delay, ramp, timeout)
        return self._json(argv, timeout + 60)

    def _json(self, argv: list[str], timeout: float) -> dict[str, Any]:
        """
        Run a load client and return the JSON object it printed last.
        """
        result: dict[str, Any] = json.loads(self._run(argv, timeout).splitlines()[-1])
        return result

    def _run(self, argv: list[str], timeout: float) -> str:
        """
        Run C{argv} pinned to the load core; return its standard output.
        """
        done = subprocess.run(
            argv,
            capture_output=True,
            timeout=timeout,
            preexec_fn=pinnedTo(self.cpu),
            env={**os.environ, "BENCH_MODEL": "bench"},
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{argv[0]} failed ({done.returncode}):\n{done.stderr.decode()}"
            )
        return done.stdout.decode()


@contextlib.contextmanager
def measuringCPU(target: Target, into: dict[str, Any]) -> Iterator[None]:
    """
    Put the CPU seconds C{target} used inside the block into C{into}.
    """
    target.refreshPids()
    before = cpuSeconds(target.pids)
    yield
    into["cpu_s"] = round(cpuSeconds(target.pids) - before, 3)


class RSSSampler:
    """
    Samples a target's resident memory while a load runs in a thread-free
    way: the caller calls L{sample} between polls of the load process.
    """

    def __init__(self, target: Target) -> None:
        target.refreshPids()
        self.pids = target.pids
        self.peakKiB = statusField(self.pids, "VmRSS")
        self.threads = 0

    def sample(self) -> None:
        """
        Take one sample of memory and threads.
        """
        self.peakKiB = max(self.peakKiB, statusField(self.pids, "VmRSS"))
        self.threads = max(self.threads, statusField(self.pids, "Threads"))


# -- the phases ------------------------------------------------------------------


def log(message: str) -> None:
    """
    Print a progress line on stderr.
    """
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def runHTTPPhase(
    targets: list[Target], load: Load, settings: Settings
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """
    Non-streaming rounds: every concurrency on every target, per round.
    """
    results: dict[str, dict[str, list[dict[str, Any]]]] = {
        t.name: {str(c): [] for c in settings.durations} for t in targets
    }
    for target in targets:
        log(f"warming up {target.name}")
        load.http(target.port, 64, settings.warmup)
        load.http(target.port, 1, 1)
    for round_ in range(settings.rounds):
        for target in targets:
            for concurrency, duration in settings.durations.items():
                one: dict[str, Any] = {}
                with measuringCPU(target, one):
                    one.update(load.http(target.port, concurrency, duration))
                seconds = one["duration_us"] / 1e6
                one["rps"] = round(one["requests"] / seconds, 1)
                one["cpu_us_per_request"] = (
                    round(one["cpu_s"] * 1e6 / one["requests"], 1)
                    if one["requests"]
                    else None
                )
                results[target.name][str(concurrency)].append(one)
                log(
                    f"round {round_ + 1} {target.name} c={concurrency}: "
                    f"{one['rps']:.0f} req/s, p50 {one['p50_us'] / 1000:.2f} ms, "
                    f"p99 {one['p99_us'] / 1000:.2f} ms, "
                    f"{one['cpu_us_per_request']} us CPU/req, "
                    f"errors {sum(one['errors'].values())}"
                )
    return results


#: The two ways the 100 streams start: all at once, so every 20 ms the
#: backend sends one chunk of every stream in the same instant (as a batching
#: inference server does after each decoding step) and the proxy relays a
#: burst of 100 chunks; or staggered evenly over one chunk interval, so
#: chunks arrive one at a time and the figure is the proxy's latency alone,
#: without the queueing inside a burst.
STREAM_MODES = ("together", "staggered")


def runStreamPhase(
    targets: list[Target], load: Load, settings: Settings
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """
    Rounds of C{streams} concurrent streams on every target, in both
    L{STREAM_MODES}.

    @return: mode -> target name -> one result per round.
    """
    results: dict[str, dict[str, list[dict[str, Any]]]] = {
        mode: {t.name: [] for t in targets} for mode in STREAM_MODES
    }
    for round_ in range(settings.streamRounds):
        for mode in STREAM_MODES:
            ramp = settings.streamDelay if mode == "staggered" else 0.0
            for target in targets:
                one: dict[str, Any] = {}
                with measuringCPU(target, one):
                    one.update(
                        load.sse(
                            target.port,
                            settings.streams,
                            settings.streamChunks,
                            settings.streamDelay,
                            ramp,
                        )
                    )
                results[mode][target.name].append(one)
                log(
                    f"streams ({mode}) round {round_ + 1} {target.name}: "
                    f"{one['complete_streams']}/{one['streams']} complete, "
                    f"lost {one['lost']}, TTFC p50 {one['ttfc_ms']['p50']} ms, "
                    f"chunk p50 {one['chunk_latency_ms']['p50']} ms "
                    f"p99 {one['chunk_latency_ms']['p99']} ms, CPU {one['cpu_s']} s"
                )
    return results


def runScalePhase(
    targets: list[Target], load: Load, settings: Settings
) -> dict[str, dict[str, Any]]:
    """
    C{scaleStreams} slow streams through each target, one target at a time,
    with its peak resident memory.
    """
    results: dict[str, dict[str, Any]] = {}
    for target in targets:
        sampler = RSSSampler(target)
        before = sampler.peakKiB
        argv = [
            sys.executable,
            str(HERE / "loadgen.py"),
            "sse",
            "--port",
            str(target.port),
            "--streams",
            str(settings.scaleStreams),
            "--chunks",
            str(settings.scaleChunks),
            "--delay",
            str(settings.scaleDelay),
            "--ramp",
            str(settings.scaleRamp),
            "--timeout",
            str(settings.scaleChunks * settings.scaleDelay + 60),
        ]
        one: dict[str, Any] = {}
        with measuringCPU(target, one):
            process = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                preexec_fn=pinnedTo(load.cpu),
            )
            while process.poll() is None:
                sampler.sample()
                time.sleep(0.05)
            out, err = process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"scale client failed:\n{err.decode()}")
        one.update(json.loads(out.decode().splitlines()[-1]))
        one["rss_before_mib"] = round(before / 1024, 1)
        one["peak_rss_mib"] = round(sampler.peakKiB / 1024, 1)
        one["vm_hwm_mib"] = round(statusField(target.pids, "VmHWM") / 1024, 1)
        one["threads"] = sampler.threads
        results[target.name] = one
        log(
            f"scale {target.name}: {one['complete_streams']}/{one['streams']} "
            f"complete, lost {one['lost']}, peak RSS {one['peak_rss_mib']} MiB, "
            f"outcomes {one['outcomes']}"
        )
    return results


def runSwitchPhase(
    processes: Processes,
    source: Path,
    ports: tuple[int, int],
    cpu: int | None,
    switches: int,
) -> dict[str, Any]:
    """
    Alternate requests between two models on two backend ports, with instant
    hooks, and time hook exit -> first byte at the backend for each switch.
    """
    workdir = processes.workdir
    stamps = workdir / "wake-times"
    stamps.write_text("")
    wake = f"exec date +%s%N >> {stamps}"
    configPath = workdir / "switch-config.json"
    writeConfig(configPath, {"a": (ports[0], wake), "b": (ports[1], wake)})
    port = freePort()
    argv, env = llmuxCommand(source, configPath, port)
    process = processes.start("llmux-switch", argv, cpu, env)
    try:
        waitForPort(port)
        request(port, "/v1/chat/completions", chatBody("a"))  # cold start
        request(ports[0], "/_bench/arrivals")  # forget earlier arrivals
        stamps.write_text("")
        totals = []
        for i in range(switches):
            model = "b" if i % 2 == 0 else "a"
            started = time.perf_counter()
            status, _ = request(port, "/v1/chat/completions?record=1", chatBody(model))
            totals.append((time.perf_counter() - started) * 1000)
            if status != 200:
                raise RuntimeError(f"switch request answered {status}")
        arrivals = json.loads(request(ports[0], "/_bench/arrivals")[1])
        wakes = [int(line) for line in stamps.read_text().split()]
    finally:
        processes.stop(process)
    if len(wakes) != switches or len(arrivals) != switches:
        raise RuntimeError(
            f"expected {switches} wakes and arrivals, got {len(wakes)} and "
            f"{len(arrivals)}"
        )
    overheads = [(a - w) / 1e6 for w, a in zip(wakes, arrivals, strict=True)]
    return {
        "switches": switches,
        "overhead_ms": _summary(overheads),
        "request_ms": _summary(totals),
        "overheads_ms": [round(x, 3) for x in overheads],
        "wake_exit_ns": wakes,
        "backend_arrival_ns": arrivals,
    }


def _summary(values: list[float]) -> dict[str, float | None]:
    """
    Percentiles, minimum and maximum of C{values}, rounded.
    """
    ordered = sorted(values)

    def rank(fraction: float) -> float | None:
        if not ordered:
            return None
        index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
        return round(ordered[index], 3)

    return {
        "p50": rank(0.5),
        "p99": rank(0.99),
        "min": rank(0.0),
        "max": rank(1.0),
    }


def wakeupLatency(
    fromCPU: int | None, toCPU: int | None, samples: int = 100, gap: float = 0.02
) -> dict[str, float | None]:
    """
    The machine's own floor for the latency figures: how long a process
    blocked on a socket takes to run after another process, idle for C{gap}
    seconds, sends it a time stamp (one way, from C{fromCPU} to C{toCPU}).
    On a virtual machine an idle virtual CPU may take milliseconds to be
    woken, and every low-rate measurement (concurrency 1, switches) pays it.
    """
    # Datagrams, not a byte stream: two time stamps sent while the receiver
    # waits for a core must not arrive as one (it would then wait forever
    # for a hundredth, and the harness with it).
    sender, receiver = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:  # the receiver
        try:
            sender.close()
            if toCPU is not None:
                os.sched_setaffinity(0, {toCPU})
            delays = []
            for _ in range(samples):
                stamp = int(receiver.recv(64))
                delays.append(time.time_ns() - stamp)
            receiver.sendall(json.dumps(delays).encode() + b"\n")
        finally:
            os._exit(0)
    receiver.close()
    if fromCPU is not None:
        os.sched_setaffinity(0, {fromCPU})
    try:
        for _ in range(samples):
            time.sleep(gap)
            sender.send(str(time.time_ns()).encode())
        data = b""
        while not data.endswith(b"\n"):
            chunk = sender.recv(65536)
            if not chunk:
                raise RuntimeError("the wake-up latency receiver exited early")
            data += chunk
    finally:
        os.waitpid(pid, 0)
        sender.close()
        if toCPU is not None:
            os.sched_setaffinity(0, {toCPU})
    summary = _summary([d / 1e6 for d in json.loads(data)])
    return {
        "p50_ms": summary["p50"],
        "p99_ms": summary["p99"],
        "max_ms": summary["max"],
    }


# -- profiling -------------------------------------------------------------------


def runProfile(
    llmux: Target, load: Load, settings: Settings, outdir: Path
) -> dict[str, Any]:
    """
    Sample llmux with py-spy under non-streaming load at concurrency 64 and
    under the streaming load, and summarise where its CPU time goes. The
    collapsed stacks go to C{outdir/profile-<load>.txt}.
    """
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists() and not shutil.which(spy):
        raise SystemExit("py-spy is not installed: pip install py-spy")
    report: dict[str, Any] = {}
    for name, work, seconds in (
        ("http-c64", lambda: load.http(llmux.port, 64, 10.0), 10),
        (
            "streams",
            lambda: load.sse(llmux.port, settings.streams, 300, settings.streamDelay),
            6,
        ),
    ):
        raw = outdir / f"profile-{name}.txt"
        spyProcess = subprocess.Popen(
            [
                spy,
                "record",
                "--pid",
                str(llmux.pids[0]),
                "--rate",
                "250",
                "--duration",
                str(seconds),
                "--nonblocking",
                "--gil",
                "--format",
                "raw",
                "--output",
                str(raw),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=pinnedTo(load.cpu),
        )
        time.sleep(0.5)
        work()
        spyProcess.wait(60)
        report[name] = summariseProfile(raw)
        report[name]["raw"] = str(raw)
    return report


def summariseProfile(path: Path, top: int = 30) -> dict[str, Any]:
    """
    Self and inclusive shares of the samples per function, from py-spy's
    collapsed stacks (C{frame;frame;... count} lines, frames as
    C{name (file:line)}), line numbers dropped; plus the inclusive share of
    every llmux function.
    """
    selfCounts: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
        selfCounts[frames[-1]] = selfCounts.get(frames[-1], 0) + n
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + n

    def share(counts: dict[str, int], keep: Callable[[str], bool]) -> list[Any]:
        ordered = sorted(counts.items(), key=lambda kv: -kv[1])
        chosen = [(f, n) for f, n in ordered if keep(f)][:top]
        return [(frame, round(100 * n / max(total, 1), 1)) for frame, n in chosen]

    return {
        "samples": total,
        "self_pct": share(selfCounts, lambda f: True),
        "total_pct": share(inclusive, lambda f: "twisted/scripts" not in f),
        "llmux_total_pct": share(
            inclusive, lambda f: "(llmux/" in f and "_cli.py" not in f
        ),
    }


# -- reporting -------------------------------------------------------------------


def median(values: list[float | None]) -> float | None:
    """
    The median of the values that are not C{None}.
    """
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarise(
    http: dict[str, dict[str, list[dict[str, Any]]]],
    streams: dict[str, dict[str, list[dict[str, Any]]]],
    scale: dict[str, dict[str, Any]],
    switch: dict[str, Any] | None,
) -> dict[str, dict[str, Any]]:
    """
    One flat dictionary of figures per target: medians over the rounds.
    """
    summary: dict[str, dict[str, Any]] = {}
    for name, byConcurrency in http.items():
        figures: dict[str, Any] = {}
        for c, runs in byConcurrency.items():
            figures[f"rps_c{c}"] = median([r["rps"] for r in runs])
            figures[f"p50_ms_c{c}"] = median([r["p50_us"] / 1000 for r in runs])
            figures[f"p99_ms_c{c}"] = median([r["p99_us"] / 1000 for r in runs])
            figures[f"cpu_us_per_request_c{c}"] = median(
                [r["cpu_us_per_request"] for r in runs]
            )
            figures[f"errors_c{c}"] = sum(sum(r["errors"].values()) for r in runs)
        summary[name] = figures
    for mode, byTarget in streams.items():
        prefix = "" if mode == "together" else "stag_"
        for name, runs in byTarget.items():
            figures = summary.setdefault(name, {})
            figures[f"{prefix}ttfc_p50_ms"] = median(
                [r["ttfc_ms"]["p50"] for r in runs]
            )
            figures[f"{prefix}ttfc_p99_ms"] = median(
                [r["ttfc_ms"]["p99"] for r in runs]
            )
            figures[f"{prefix}chunk_p50_ms"] = median(
                [r["chunk_latency_ms"]["p50"] for r in runs]
            )
            figures[f"{prefix}chunk_p99_ms"] = median(
                [r["chunk_latency_ms"]["p99"] for r in runs]
            )
            figures[f"{prefix}stream_lost"] = sum(r["lost"] for r in runs)
            complete = sum(r["complete_streams"] for r in runs)
            figures[f"{prefix}streams_complete"] = (
                f"{complete}/{sum(r['streams'] for r in runs)}"
            )
            perRequest = figures.get("cpu_us_per_request_c64") or 0.0
            figures[f"{prefix}cpu_us_per_chunk"] = median(
                [
                    (r["cpu_s"] * 1e6 - perRequest * r["streams"])
                    / r["chunks_received"]
                    if r["chunks_received"]
                    else None
                    for r in runs
                ]
            )
    for name, one in scale.items():
        figures = summary.setdefault(name, {})
        figures["scale_complete"] = f"{one['complete_streams']}/{one['streams']}"
        figures["scale_lost"] = one["lost"]
        figures["scale_peak_rss_mib"] = one["peak_rss_mib"]
        figures["scale_chunk_p99_ms"] = one["chunk_latency_ms"]["p99"]
        figures["scale_threads"] = one.get("threads")
    direct = summary.get("direct", {})
    for figures in summary.values():
        for key in (
            "p50_ms_c1",
            "p99_ms_c1",
            "ttfc_p50_ms",
            "ttfc_p99_ms",
            "chunk_p50_ms",
            "chunk_p99_ms",
            "stag_ttfc_p50_ms",
            "stag_chunk_p50_ms",
            "stag_chunk_p99_ms",
        ):
            figures[f"added_{key}"] = _minus(figures.get(key), direct.get(key))
    if switch is not None:
        figures = summary.setdefault("llmux", {})
        figures["switch_overhead_p50_ms"] = switch["overhead_ms"]["p50"]
        figures["switch_overhead_p99_ms"] = switch["overhead_ms"]["p99"]
        figures["switch_request_p50_ms"] = switch["request_ms"]["p50"]
    return summary


def _minus(a: float | None, b: float | None) -> float | None:
    """
    C{a - b}, or C{None} if either is missing.
    """
    return None if a is None or b is None else round(a - b, 4)


#: The rows of the table: key, label, how to compare (ratio or difference).
ROWS: list[tuple[str, str, str]] = [
    ("rps_c1", "req/s, concurrency 1", "ratio"),
    ("rps_c16", "req/s, concurrency 16", "ratio"),
    ("rps_c64", "req/s, concurrency 64", "ratio"),
    ("p50_ms_c1", "latency p50 c=1 (ms)", "ratio"),
    ("p99_ms_c1", "latency p99 c=1 (ms)", "ratio"),
    ("added_p50_ms_c1", "added latency p50 c=1 (ms)", "ratio"),
    ("added_p99_ms_c1", "added latency p99 c=1 (ms)", "ratio"),
    ("p50_ms_c64", "latency p50 c=64 (ms)", "ratio"),
    ("p99_ms_c64", "latency p99 c=64 (ms)", "ratio"),
    ("cpu_us_per_request_c1", "CPU per request, c=1 (us)", "ratio"),
    ("cpu_us_per_request_c64", "CPU per request, c=64 (us)", "ratio"),
    ("ttfc_p50_ms", "100 streams: first chunk p50 (ms)", "ratio"),
    ("ttfc_p99_ms", "100 streams: first chunk p99 (ms)", "ratio"),
    ("added_chunk_p50_ms", "100 streams: added per-chunk p50 (ms)", "ratio"),
    ("added_chunk_p99_ms", "100 streams: added per-chunk p99 (ms)", "ratio"),
    ("stream_lost", "100 streams: chunks+[DONE] lost", "none"),
    ("added_stag_chunk_p50_ms", "staggered: added per-chunk p50 (ms)", "ratio"),
    ("added_stag_chunk_p99_ms", "staggered: added per-chunk p99 (ms)", "ratio"),
    ("stag_stream_lost", "staggered: chunks+[DONE] lost", "none"),
    ("cpu_us_per_chunk", "CPU per chunk (us)", "ratio"),
    ("scale_complete", "2000 slow streams complete", "none"),
    ("scale_lost", "2000 slow streams: lost", "none"),
    ("scale_peak_rss_mib", "2000 slow streams: peak RSS (MiB)", "ratio"),
    ("scale_chunk_p99_ms", "2000 slow streams: chunk latency p99 (ms)", "ratio"),
    ("scale_threads", "2000 slow streams: threads", "none"),
    ("switch_overhead_p50_ms", "switch overhead p50 (ms)", "none"),
    ("switch_overhead_p99_ms", "switch overhead p99 (ms)", "none"),
]


def formatValue(value: Any) -> str:
    """
    A figure as the table shows it.
    """
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    return str(value)


def ratio(a: Any, b: Any) -> str:
    """
    C{a / b} as C{"1.23x"}, or C{"-"} if either is missing.
    """
    if not isinstance(a, int | float) or not isinstance(b, int | float) or not b:
        return "-"
    return f"{a / b:.2f}x"


def table(
    summary: dict[str, dict[str, Any]], rows: list[tuple[str, str, str]] = ROWS
) -> str:
    """
    The results as a Markdown table: one column per target, then llmux's
    ratios to the minimal treq proxy, to direct and to nginx. C{rows}: key,
    label, and C{"ratio"} where the ratios make sense.
    """
    names = [n for n in TARGET_ORDER if n in summary]
    names += [n for n in summary if n not in TARGET_ORDER]
    header = ["metric", *(LABELS.get(n, n) for n in names)]
    header += ["llmux / treq", "llmux / direct", "llmux / nginx"]
    capacity = summary.get(CAPACITY_TARGET, {})
    if capacity:
        header.append("with capacity / llmux")
    lines = [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join(["---"] + ["---:"] * (len(header) - 1)) + " |",
    ]
    llmux = summary.get("llmux", {})
    for key, label, compare in rows:
        if not any(key in summary[n] for n in names):
            continue
        cells = [label] + [formatValue(summary[n].get(key)) for n in names]
        for other in ("treq", "direct", "nginx"):
            if compare == "ratio" and other in summary and llmux:
                cells.append(ratio(llmux.get(key), summary[other].get(key)))
            else:
                cells.append("-")
        if capacity:
            cells.append(
                ratio(capacity.get(key), llmux.get(key))
                if compare == "ratio" and llmux
                else "-"
            )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def targets(summary: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """
    The issue's targets, each with the figure reached and whether it is met.
    """
    llmux = summary.get("llmux", {})
    treq = summary.get("treq", {})
    rp = summary.get("rp", {})
    checks: list[tuple[str, Any, Any, Callable[[Any], bool]]] = []
    throughput = (
        llmux.get("rps_c64") / treq["rps_c64"]
        if llmux.get("rps_c64") and treq.get("rps_c64")
        else None
    )
    checks.append(
        (
            "throughput c=64 vs minimal treq proxy",
            throughput,
            ">= 0.90",
            lambda v: v >= 0.9,
        )
    )
    cpuRatio = (
        treq["cpu_us_per_request_c64"] / llmux["cpu_us_per_request_c64"]
        if llmux.get("cpu_us_per_request_c64") and treq.get("cpu_us_per_request_c64")
        else None
    )
    checks.append(
        (
            "CPU-time throughput (treq CPU/req / llmux CPU/req)",
            cpuRatio,
            ">= 0.90",
            lambda v: v >= 0.9,
        )
    )
    rpRatio = (
        llmux.get("rps_c64") / rp["rps_c64"]
        if llmux.get("rps_c64") and rp.get("rps_c64")
        else None
    )
    checks.append(
        ("throughput c=64 vs ReverseProxyResource", rpRatio, "> 1.00", lambda v: v > 1)
    )
    checks += [
        (
            "added latency p50 c=1 (ms)",
            llmux.get("added_p50_ms_c1"),
            "< 0.5",
            lambda v: v < 0.5,
        ),
        (
            "added latency p99 c=1 (ms)",
            llmux.get("added_p99_ms_c1"),
            "< 2",
            lambda v: v < 2,
        ),
        (
            "added per-chunk p99, 100 streams (ms)",
            llmux.get("added_chunk_p99_ms"),
            "< 3",
            lambda v: v < 3,
        ),
        (
            "2000 streams: chunks lost",
            llmux.get("scale_lost"),
            "== 0",
            lambda v: v == 0,
        ),
        (
            "2000 streams: peak RSS (MiB)",
            llmux.get("scale_peak_rss_mib"),
            "< 120 MB (114.4 MiB)",
            lambda v: v < 120e6 / 2**20,
        ),
        (
            "switch overhead p99 (ms)",
            llmux.get("switch_overhead_p99_ms"),
            "< 5",
            lambda v: v < 5,
        ),
    ]
    checks += fastPathChecks(summary)
    return [
        {
            "target": name,
            "value": None if value is None else round(value, 3),
            "goal": goal,
            "met": None if value is None else bool(test(value)),
        }
        for name, value, goal, test in checks
    ]


def fastPathChecks(
    summary: dict[str, dict[str, Any]],
) -> list[tuple[str, Any, Any, Callable[[Any], bool]]]:
    """
    Issue 11's targets, "the fast path (a request for an awake model) within
    5% of before, with and without C{capacity:}", for the targets present:
    llmux with capacity against llmux, and llmux and llmux with capacity
    against the tree given as C{--compare before=DIR}. Each on CPU time per
    request and requests/s at concurrency 64.
    """
    pairs = [
        (CAPACITY_TARGET, "llmux"),
        ("llmux", BEFORE_TARGET),
        (CAPACITY_TARGET, BEFORE_TARGET),
    ]
    checks: list[tuple[str, Any, Any, Callable[[Any], bool]]] = []
    for name, base in pairs:
        if name not in summary or base not in summary:
            continue
        figures, baseFigures = summary[name], summary[base]
        cpu = figures.get("cpu_us_per_request_c64")
        baseCPU = baseFigures.get("cpu_us_per_request_c64")
        rps = figures.get("rps_c64")
        baseRPS = baseFigures.get("rps_c64")
        checks += [
            (
                f"CPU per request c=64, {name} / {base}",
                cpu / baseCPU if cpu and baseCPU else None,
                "<= 1.05",
                lambda v: v <= 1.05,
            ),
            (
                f"throughput c=64, {name} / {base}",
                rps / baseRPS if rps and baseRPS else None,
                ">= 0.95",
                lambda v: v >= 0.95,
            ),
        ]
    return checks


def machine() -> dict[str, Any]:
    """
    What the run ran on.
    """
    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError):
        memory = Path("/proc/meminfo").read_text().split("\n", 1)[0]
        info["memory_gib"] = round(int(memory.split()[1]) / 2**20, 1)
    for module in ("twisted", "treq"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            info[module] = version(module)
    with contextlib.suppress(Exception):
        info["wrk"] = subprocess.run(
            ["wrk", "-v"], capture_output=True, text=True
        ).stdout.split("\n")[0]
    with contextlib.suppress(Exception):
        info["nginx"] = subprocess.run(
            ["nginx", "-v"], capture_output=True, text=True
        ).stderr.strip()
    return info


def sourceState(source: Path) -> dict[str, Any]:
    """
    Which llmux was measured: the source tree, and its git commit and
    whether it had uncommitted changes, when it is in a git checkout.
    """
    state: dict[str, Any] = {"path": str(source)}
    with contextlib.suppress(Exception):
        commit = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(source), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        state.update(commit=commit, uncommitted_changes=bool(dirty))
    return state


# -- main ------------------------------------------------------------------------


def startTargets(
    processes: Processes,
    names: list[str],
    backendPorts: tuple[int, int],
    source: Path,
    cpu: int | None,
    backend: subprocess.Popen[bytes],
    variants: dict[str, Path],
    configs: dict[str, Any],
    *,
    backlogs: dict[str, int] | None = None,
    treqOptions: list[str] | None = None,
    nginxConnections: int = 8192,
) -> list[Target]:
    """
    Start every requested target in front of the first of C{backendPorts}
    (the second serves the other model of L{CAPACITY_TARGET}).

    @param backend: the backend process, whose costs I{direct} reports.
    @param variants: extra llmux targets: name -> source tree.
    @param configs: filled with the config of each llmux target.
    @param backlogs: target name -> listen backlog, for the llmux targets
        and I{treq} (otherwise llmux's default and Twisted's 50); nginx
        listens with a backlog of 4096 (its template).
    @param treqOptions: more command-line options for I{treq}.
    @param nginxConnections: nginx's C{worker_connections} (two per stream:
        client and backend), and its open-file limit.
    """
    backlogs = backlogs or {}
    backendPort, otherPort = backendPorts
    workdir = processes.workdir
    started: list[Target] = []
    for name in names:
        if name == "direct":
            # Its CPU and memory are the backend's own.
            started.append(Target("direct", backendPort, backend))
            continue
        port = freePort()
        if name == "llmux" or name in variants:
            configPath = workdir / f"config-{name}.json"
            configs[name] = writeConfig(configPath, {"bench": (backendPort, "true")})
            argv, env = llmuxCommand(
                variants.get(name, source), configPath, port, backlogs.get(name)
            )
            process = processes.start(name, argv, cpu, env)
        elif name == CAPACITY_TARGET:
            configPath = workdir / f"config-{name}.json"
            configs[name] = writeConfig(
                configPath,
                {"bench": (backendPort, "true"), "resident": (otherPort, "true")},
                capacity=CAPACITY,
                extra=RESIDENTS,
            )
            argv, env = llmuxCommand(source, configPath, port, backlogs.get(name))
            process = processes.start(name, argv, cpu, env)
        elif name in ("treq", "rp"):
            script = "treq_proxy.py" if name == "treq" else "rp_proxy.py"
            argv = [
                sys.executable,
                str(HERE / script),
                "--port",
                str(port),
                "--backend-port",
                str(backendPort),
            ]
            if name == "treq":
                if name in backlogs:
                    argv += ["--backlog", str(backlogs[name])]
                argv += treqOptions or []
            # The treq baseline sends through llmux's own backend client.
            process = processes.start(name, argv, cpu, sourceEnvironment(source))
        elif name == "nginx":
            prefix = workdir / "nginx"
            prefix.mkdir()
            config = (HERE / "nginx.conf.template").read_text()
            for key, value in (
                ("@PREFIX@", str(prefix)),
                ("@PORT@", str(port)),
                ("@BACKEND_PORT@", str(backendPort)),
                ("@WORKER_CONNECTIONS@", str(nginxConnections)),
                ("@RLIMIT_NOFILE@", str(max(16384, nginxConnections + 100))),
            ):
                config = config.replace(key, value)
            (prefix / "nginx.conf").write_text(config)
            argv = [
                "nginx",
                "-p",
                str(prefix),
                "-c",
                str(prefix / "nginx.conf"),
                "-g",
                "daemon off;",
            ]
            process = processes.start("nginx", argv, cpu)
        else:
            raise SystemExit(f"unknown target {name!r}")
        waitForPort(port)
        target = Target(name, port, process)
        started.append(target)
    # llmux wakes its model on the first request; do it before measuring.
    for target in started:
        status, _ = request(target.port, "/v1/chat/completions", chatBody("bench"))
        if status != 200:
            raise RuntimeError(f"{target.name} answered {status}")
        if target.name == CAPACITY_TARGET:
            residents = waitForResidents(target.port)
            log(f"{target.name}: awake {residents['awake']}, used {residents['used']}")
        target.refreshPids()
    return started


def argumentParser() -> argparse.ArgumentParser:
    """
    The command line of the harness.
    """
    parser = argparse.ArgumentParser(
        description="Benchmark llmux against the backend, nginx and Twisted baselines."
    )
    parser.add_argument("--quick", action="store_true", help="a shorter run (~2 min)")
    parser.add_argument(
        "--targets",
        default=",".join(TARGET_ORDER),
        help="comma-separated subset of: "
        + ", ".join(TARGET_ORDER)
        + f" (and {CAPACITY_TARGET}, which --capacity adds)",
    )
    parser.add_argument(
        "--skip",
        default="",
        help="comma-separated phases to skip: http, streams, scale, switch",
    )
    parser.add_argument(
        "--llmux-src",
        type=Path,
        default=REPO / "src",
        help="the llmux source tree to run (default: this checkout's src/)",
    )
    parser.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="NAME=SRC",
        help="also run the llmux source tree SRC (a checkout or its src/) as target"
        " llmux-NAME (repeatable); with NAME 'before', llmux (and llmux-capacity)"
        " are checked against it at the end",
    )
    parser.add_argument(
        "--capacity",
        action="store_true",
        help="also run llmux (from --llmux-src, not the --compare trees) on a config"
        " with a capacity: table and two models awake, as target " + CAPACITY_TARGET,
    )
    parser.add_argument("--proxy-cpu", type=int, default=1)
    parser.add_argument("--load-cpu", type=int, default=0)
    parser.add_argument("--rounds", type=int, help="override the number of rounds")
    parser.add_argument("--output", type=Path, help="JSON results file")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile llmux with py-spy instead of benchmarking",
    )
    return parser


def main() -> None:
    """
    Run the benchmark, print the table, write the JSON results.
    """
    options = argumentParser().parse_args()
    settings = QUICK if options.quick else FULL
    if options.rounds:
        settings = replace(settings, rounds=options.rounds, streamRounds=options.rounds)
    skip = {s for s in options.skip.split(",") if s}
    source = llmuxSourceTree(options.llmux_src)

    notes: list[str] = []
    proxyCPU: int | None = options.proxy_cpu
    loadCPU: int | None = options.load_cpu
    available = os.sched_getaffinity(0)
    if {options.proxy_cpu, options.load_cpu} - available or proxyCPU == loadCPU:
        notes.append("not pinned: the requested cores are not available")
        proxyCPU = loadCPU = None
    if loadCPU is not None:
        os.sched_setaffinity(0, {loadCPU})

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < 3 * settings.scaleStreams + 100:
        notes.append(f"open-file limit {hard} is too low for the scale phase")
        skip.add("scale")

    names = [n for n in options.targets.split(",") if n]
    if options.capacity and CAPACITY_TARGET not in names:
        # Right after llmux, so the two run next to each other in each round.
        after = names.index("llmux") + 1 if "llmux" in names else len(names)
        names.insert(after, CAPACITY_TARGET)
    variants: dict[str, Path] = {}
    for spec in options.compare:
        name, _, path = spec.partition("=")
        if not name or not path:
            raise SystemExit(f"--compare {spec}: expected NAME=DIR")
        if f"llmux-{name}" in (*names, CAPACITY_TARGET):
            raise SystemExit(f"--compare {spec}: the name llmux-{name} is taken")
        variants[f"llmux-{name}"] = llmuxSourceTree(Path(path))
        names.append(f"llmux-{name}")
    useWrk = shutil.which("wrk") is not None
    if not useWrk:
        notes.append(
            "wrk not installed (apt-get install wrk): non-streaming load uses the"
            " Python fallback in loadgen.py, which tops out near 20k req/s"
        )
    if "nginx" in names and shutil.which("nginx") is None:
        names.remove("nginx")
        notes.append("nginx not installed (apt-get install nginx): nginx skipped")
    if "llmux" not in names:
        skip.add("switch")
    for note in notes:
        log("NOTE: " + note)

    calibration = wakeupLatency(proxyCPU, loadCPU)
    log(
        f"wake-up latency of an idle process on this machine: p50 "
        f"{calibration['p50_ms']} ms, p99 {calibration['p99_ms']} ms"
    )

    workdir = Path(tempfile.mkdtemp(prefix="llmux-bench-"))
    processes = Processes(workdir)
    load = Load(loadCPU, useWrk)
    started = time.time()
    configs: dict[str, Any] = {}
    residency: dict[str, Any] | None = None
    try:
        backendPorts = (freePort(), freePort())
        backendArgv = [sys.executable, str(HERE / "backend.py")]
        for port in backendPorts:
            backendArgv += ["--port", str(port)]
        backend = processes.start("backend", backendArgv, loadCPU)
        for port in backendPorts:
            waitForPort(port)
        log(f"work directory {workdir}; targets: {', '.join(names)}")
        active = startTargets(
            processes, names, backendPorts, source, proxyCPU, backend, variants, configs
        )
        capacityTarget = next((t for t in active if t.name == CAPACITY_TARGET), None)
        if capacityTarget is not None:
            residency = {"at_start": residencyStatus(capacityTarget.port)}
        if options.profile:
            llmux = next(t for t in active if t.name in ("llmux", CAPACITY_TARGET))
            results = HERE / "results"
            results.mkdir(exist_ok=True)
            report = runProfile(llmux, load, settings, results)
            (results / "profile.json").write_text(json.dumps(report, indent=2))
            printProfile(report)
            return
        http = {} if "http" in skip else runHTTPPhase(active, load, settings)
        streams = {} if "streams" in skip else runStreamPhase(active, load, settings)
        scale = {} if "scale" in skip else runScalePhase(active, load, settings)
        switch = None
        if "switch" not in skip:
            switch = runSwitchPhase(
                processes, source, backendPorts, proxyCPU, settings.switches
            )
            log(
                f"switch overhead p50 {switch['overhead_ms']['p50']} ms, "
                f"p99 {switch['overhead_ms']['p99']} ms"
            )
        if capacityTarget is not None and residency is not None:
            # Were both models still awake after the load?
            residency["at_end"] = residencyStatus(capacityTarget.port)
            missing = set(RESIDENTS) - set(residency["at_end"]["awake"] or ())
            if missing:
                notes.append(
                    f"{CAPACITY_TARGET}: {', '.join(sorted(missing))} no longer"
                    f" awake at the end: {json.dumps(residency['at_end'])}"
                )
    finally:
        processes.stopAll()
    # Kept when the run failed: the processes' logs are in it.
    shutil.rmtree(workdir, ignore_errors=True)

    summary = summarise(http, streams, scale, switch)
    goals = targets(summary)
    result = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "elapsed_s": round(time.time() - started, 1),
        "mode": "quick" if options.quick else "full",
        "machine": machine(),
        "llmux_source": sourceState(source),
        "compare_sources": {name: sourceState(path) for name, path in variants.items()},
        "llmux_configs": configs,
        "residency": residency,
        "settings": asdict(settings),
        "pinning": {"proxy_cpu": proxyCPU, "load_cpu": loadCPU},
        "load_generator": "wrk" if useWrk else "loadgen.py http",
        "wakeup_latency_ms": calibration,
        "notes": notes,
        "summary": summary,
        "targets": goals,
        "raw": {"http": http, "streams": streams, "scale": scale, "switch": switch},
    }
    output = options.output
    if output is None:
        results = HERE / "results"
        results.mkdir(exist_ok=True)
        output = results / time.strftime("%Y%m%d-%H%M%S.json")
        (results / "latest.json").write_text(json.dumps(result, indent=2))
    output.write_text(json.dumps(result, indent=2))
    printReport(summary, goals, calibration, notes)
    print(f"\nresults: {output} ({result['elapsed_s']} s)")


def printReport(
    summary: dict[str, dict[str, Any]],
    goals: list[dict[str, Any]],
    calibration: dict[str, float | None],
    notes: list[str],
) -> None:
    """
    Print the table, the targets met and missed, and the notes.
    """
    print()
    print(table(summary))
    print()
    for goal in goals:
        verdict = {True: "met", False: "MISSED", None: "not measured"}[goal["met"]]
        value = formatValue(goal["value"])
        print(f"- {goal['target']}: {value} (goal {goal['goal']}): {verdict}")
    print(
        "- machine floor: a process idle for 20 ms takes p50 "
        f"{calibration['p50_ms']} ms, p99 {calibration['p99_ms']} ms to wake up"
        " (bounds every p99 at low rates)"
    )
    for note in notes:
        print(f"- note: {note}")


def printProfile(report: dict[str, Any]) -> None:
    """
    Print the summary of L{runProfile}.
    """
    for name, data in report.items():
        print(f"\n== {name}: {data['samples']} samples ({data['raw']})")
        print("-- self time")
        for frame, pct in data["self_pct"]:
            print(f"{pct:5.1f}%  {frame}")
        print("-- inclusive time")
        for frame, pct in data["total_pct"]:
            print(f"{pct:5.1f}%  {frame}")
        print("-- inclusive time, llmux functions")
        for frame, pct in data["llmux_total_pct"]:
            print(f"{pct:5.1f}%  {frame}")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    main()
