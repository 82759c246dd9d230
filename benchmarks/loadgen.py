"""
Load clients for the llmux benchmarks: raw asyncio sockets, no HTTP library.

Two commands, each printing one JSON object on stdout:

  - C{sse}: open C{--streams} streaming chat completions (optionally spread
    evenly over C{--ramp} seconds: C{--streams 60000 --ramp 60} is a steady
    1000 new streams/s), read every Server-Sent Event of every stream and
    report time to first chunk (C{ttfc_ms} from the connection being made,
    C{first_chunk_ms} from the start of the request, connecting included),
    per-chunk latency (arrival time minus the send time the benchmark backend
    stamps into each event), and every chunk or C{[DONE]} that did not
    arrive; with C{--window S}, the same per window of S seconds. Per-chunk
    latency through a proxy minus the same figure measured directly against
    the backend is the latency the proxy adds to each token. It also reports
    its own CPU time, peak memory and event-loop lag (how late a 10 ms timer
    ran): a client short of CPU would measure its own delays. C{--engine
    epoll} runs the same streams on a bare C{epoll} loop instead of asyncio,
    for about 70% of the CPU: the scale benchmark's 10,000 streams.
  - C{http}: a fallback for C{wrk}: C{--connections} keep-alive connections
    each sending non-streaming requests back to back for C{--duration}
    seconds; reports requests/s and latency percentiles. It is Python, so it
    tops out near 20,000 requests/s on a core shared with the backend:
    enough for the Twisted proxies, a lower bound for nginx.

The client disables its own garbage collector while it measures (it lives
for one run), so its pauses do not show up as proxy latency.

Examples::

    python benchmarks/loadgen.py sse --port 18900 --streams 100 --chunks 100
    python benchmarks/loadgen.py http --port 18900 --connections 64 --duration 5
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import gc
import heapq
import json
import os
import re
import resource
import select
import socket
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

__all__ = ["percentile", "runHTTP", "runSSE"]

_EVENT = re.compile(rb'"seq":(\d+),"t":(\d+)')


def percentile(values: list[float], fraction: float) -> float | None:
    """
    The C{fraction} quantile of C{values} (nearest rank), or C{None} if
    there are none.
    """
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


def _requestBytes(port: int, path: str, model: str, stream: bool) -> bytes:
    """
    A complete chat completion request, as sent on the wire.
    """
    body = json.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": "Say hello."}],
            "max_tokens": 16,
            **({"stream": True} if stream else {}),
        },
        separators=(",", ":"),
    ).encode()
    return (
        f"POST {path} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        "Content-Type: application/json\r\n"
        "Accept: text/event-stream, application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    ).encode() + body


class _Body:
    """
    Incremental decoding of an HTTP/1.1 response: status line and headers,
    then a chunked, length-delimited or close-delimited body.
    """

    def __init__(self) -> None:
        self.status: int | None = None
        self.complete = False
        self._buffer = b""
        self._mode = ""
        self._remaining = 0

    def feed(self, data: bytes) -> bytes:
        """
        Take received bytes; return the body bytes they complete.
        """
        self._buffer += data
        out: list[bytes] = []
        while True:
            buffer = self._buffer
            if self.status is None:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    break
                lines = buffer[:end].split(b"\r\n")
                self.status = int(lines[0].split(b" ", 2)[1])
                self._mode = "close"
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"transfer-encoding" and b"chunked" in value.lower():
                        self._mode = "chunked"
                    elif name == b"content-length" and self._mode != "chunked":
                        self._mode = "length"
                        self._remaining = int(value)
                self._buffer = buffer[end + 4 :]
                if self._mode == "length" and self._remaining == 0:
                    self.complete = True
                continue
            if self._mode == "close":
                out.append(buffer)
                self._buffer = b""
                break
            if self._mode == "length":
                take = buffer[: self._remaining]
                out.append(take)
                self._remaining -= len(take)
                self._buffer = buffer[len(take) :]
                if self._remaining == 0:
                    self.complete = True
                break
            # chunked
            if self._remaining == 0:
                end = buffer.find(b"\r\n")
                if end < 0:
                    break
                size = int(buffer[:end].split(b";", 1)[0], 16)
                if size == 0:
                    if buffer.find(b"\r\n\r\n") < 0 and len(buffer) < end + 4:
                        break
                    self.complete = True
                    self._buffer = b""
                    break
                self._remaining = size + 2  # data plus its CRLF
                self._buffer = buffer = buffer[end + 2 :]
            take = buffer[: self._remaining]
            self._remaining -= len(take)
            self._buffer = buffer[len(take) :]
            if self._remaining >= 2:
                out.append(take)
            else:
                out.append(take[: len(take) - (2 - self._remaining)])
            if not self._buffer:
                break
        return b"".join(out)


class _StreamProtocol(asyncio.Protocol):
    """
    One streaming request: records the arrival of each event.

    It runs on an asyncio transport (L{runSSE}) or on the bare socket of
    L{_LeanClient}, and calls C{onFinish} with itself once, when the
    stream has ended one way or another (C{outcome} says how).

    @ivar started: when the client began the request (ns, wall clock), just
        before it asked for the connection: the start of the first-chunk
        latency that includes connecting (and so a SYN dropped by a full
        accept queue and sent again a second later).
    """

    def __init__(
        self,
        request: bytes,
        run: _SSERun,
        started: int,
        onFinish: Callable[[_StreamProtocol], None],
    ) -> None:
        self._request = request
        self._run = run
        self._body = _Body()
        self._events = b""
        self._sent = 0
        self._onFinish = onFinish
        self.started = started
        self.seqs: set[int] = set()
        self.done = False
        self.outcome: str | None = None
        self._transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self._transport = transport
        self._sent = time.time_ns()
        self._run.connect.append((self._sent - self.started) / 1e6)
        transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        body = self._body
        events = self._events + body.feed(data)
        if body.status is not None and body.status != 200:
            self._finish(f"status {body.status}")
            return
        *complete, self._events = events.split(b"\n\n")
        run = self._run
        for event in complete:
            match = _EVENT.search(event)
            if match is not None:
                seq = int(match.group(1))
                if not self.seqs:
                    run.firstChunk(now, (now - self._sent) / 1e6, self.started)
                self.seqs.add(seq)
                run.chunk(now, (now - int(match.group(2))) / 1e6)
            elif b"[DONE]" in event:
                self.done = True
        if body.complete:
            self._finish("ok")

    def _finish(self, outcome: str) -> None:
        if self.outcome is None:
            self.outcome = outcome
            self._onFinish(self)
        if self._transport is not None:
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._body._mode == "close" and self._body.status == 200:
            self._body.complete = True
            outcome = "ok"
        else:
            outcome = f"connection lost: {exc or 'closed'}"
        if self.outcome is None:
            self.outcome = outcome
            self._onFinish(self)

    def complete(self, chunks: int) -> bool:
        """
        Whether all C{chunks} events and C{[DONE]} arrived and the body ended.
        """
        return len(self.seqs) == chunks and self.done and self._body.complete


class _SSERun:
    """
    The samples gathered by all streams of one run, and its totals.

    @ivar window: when not 0, the samples are also kept per window of this
        many seconds (by arrival time from the run's start), for a timeline.
    """

    def __init__(self, chunks: int, started: int, window: float) -> None:
        self.chunks = chunks
        self.started = started
        self.window = int(window * 1e9)
        self.ttfc: list[float] = []
        self.firstChunks: list[float] = []
        self.connect: list[float] = []
        self.latencies: list[float] = []
        self.windowChunks: dict[int, list[float]] = {}
        self.windowFirst: dict[int, list[float]] = {}
        self.windowOpen: dict[int, int] = {}
        self.outcomes: Counter[str] = Counter()
        self.received = self.doneCount = self.complete = 0

    def firstChunk(self, now: int, fromConnected: float, started: int) -> None:
        """
        Record the first chunk of a stream, arrived at C{now} (ns).
        """
        self.ttfc.append(fromConnected)
        fromStart = (now - started) / 1e6
        self.firstChunks.append(fromStart)
        if self.window:
            key = (now - self.started) // self.window
            self.windowFirst.setdefault(key, []).append(fromStart)

    def chunk(self, now: int, latency: float) -> None:
        """
        Record a chunk arrived at C{now} (ns), C{latency} ms after it was sent.
        """
        self.latencies.append(latency)
        if self.window:
            key = (now - self.started) // self.window
            self.windowChunks.setdefault(key, []).append(latency)

    def opened(self, count: int) -> None:
        """
        Note that C{count} streams are open (or connecting) now.
        """
        if self.window:
            key = (time.time_ns() - self.started) // self.window
            if count > self.windowOpen.get(key, 0):
                self.windowOpen[key] = count

    def finished(self, stream: _StreamProtocol) -> None:
        """
        Count a stream that has ended (its record can then be dropped).
        """
        self.outcomes[stream.outcome or "?"] += 1
        self.received += len(stream.seqs)
        self.doneCount += stream.done
        self.complete += stream.complete(self.chunks)

    def result(
        self, streams: int, delay: float, ramp: float, elapsed: float, opened: float
    ) -> dict[str, Any]:
        """
        The summary printed by the C{sse} command.
        """
        chunks = self.chunks
        result = {
            "streams": streams,
            "chunks_per_stream": chunks,
            "delay_s": delay,
            "ramp_s": ramp,
            "complete_streams": self.complete,
            "outcomes": dict(self.outcomes),
            "chunks_expected": streams * chunks,
            "chunks_received": self.received,
            "done_expected": streams,
            "done_received": self.doneCount,
            "lost": streams * chunks - self.received + streams - self.doneCount,
            "elapsed_s": round(elapsed, 3),
            "opened_s": round(opened, 3),
            "ttfc_ms": _summary(self.ttfc),
            "first_chunk_ms": _summary(self.firstChunks),
            "connect_ms": _summary(self.connect),
            "chunk_latency_ms": _summary(self.latencies),
        }
        if self.window:
            result["timeline"] = self.timeline()
        return result

    def timeline(self) -> list[dict[str, Any]]:
        """
        The chunk and first-chunk latencies per window, and the most streams
        open at once in it (the C{epoll} client only).
        """
        keys = sorted(
            set(self.windowChunks) | set(self.windowFirst) | set(self.windowOpen)
        )
        return [
            {
                "t_s": round(key * self.window / 1e9, 3),
                "chunk_latency_ms": _summary(self.windowChunks.get(key, [])),
                "first_chunk_ms": _summary(self.windowFirst.get(key, [])),
                "most_open": self.windowOpen.get(key),
            }
            for key in keys
        ]


def _clientFigures(cpuBefore: float, lags: list[float]) -> dict[str, Any]:
    """
    What the client itself cost: CPU seconds, peak memory, and how late its
    loop ran a timer due every 10 ms (when the client is short of CPU, every
    latency it measures is late by about this much).
    """
    return {
        "cpu_s": round(time.process_time() - cpuBefore, 3),
        "loop_lag_ms": _summary(lags),
        "max_rss_mib": round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
        ),
    }


class _LoopLag:
    """
    Measures how late the asyncio loop runs a timer due every C{interval} s.
    """

    def __init__(self, interval: float = 0.01) -> None:
        self._loop = asyncio.get_running_loop()
        self._interval = interval
        self._due = self._loop.time() + interval
        self.lags: list[float] = []
        self._handle = self._loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        now = self._loop.time()
        self.lags.append((now - self._due) * 1000)
        self._due = now + self._interval
        self._handle = self._loop.call_at(self._due, self._tick)

    def stop(self) -> None:
        self._handle.cancel()


async def runSSE(
    port: int,
    streams: int,
    chunks: int,
    delay: float,
    model: str = "bench",
    ramp: float = 0.0,
    timeout: float = 60.0,
    window: float = 0.0,
) -> dict[str, Any]:
    """
    Run C{streams} concurrent streams of C{chunks} events C{delay} apart,
    opened at an even pace over C{ramp} seconds (stream I{i} at
    C{ramp * i / streams}; all at once when C{ramp} is 0), on asyncio.

    A stream's record is summed up and dropped when it ends, so a long run
    at a steady rate keeps only the open ones.

    @param timeout: seconds a stream may take once connected.
    @param window: when not 0, also report the latencies per window of this
        many seconds (C{timeline}).
    @return: the summary printed by the C{sse} command.
    """
    loop = asyncio.get_running_loop()
    run = _SSERun(chunks, time.time_ns(), window)
    request = _requestBytes(port, _ssePath(chunks, delay), model, stream=True)
    lag = _LoopLag()
    cpuBefore = time.process_time()

    async def one() -> None:
        started = time.time_ns()
        finished: asyncio.Future[None] = loop.create_future()

        def onFinish(stream: _StreamProtocol) -> None:
            run.finished(stream)
            finished.set_result(None)

        try:
            _, protocol = await loop.create_connection(
                lambda: _StreamProtocol(request, run, started, onFinish),
                "127.0.0.1",
                port,
            )
        except OSError as e:
            run.outcomes[f"connect failed: {e.strerror or e}"] += 1
            return
        try:
            await asyncio.wait_for(asyncio.shield(finished), timeout)
        except TimeoutError:
            protocol._finish("timed out")

    started = loop.time()
    pending: set[asyncio.Task[None]] = set()
    for index in range(streams):
        wait = started + ramp * index / streams - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        task = loop.create_task(one())
        pending.add(task)
        task.add_done_callback(pending.discard)
    opened = loop.time() - started
    while pending:
        await asyncio.gather(*list(pending))
    elapsed = loop.time() - started
    lag.stop()
    result = run.result(streams, delay, ramp, elapsed, opened)
    result["client"] = {"engine": "asyncio", **_clientFigures(cpuBefore, lag.lags)}
    return result


def _ssePath(chunks: int, delay: float) -> str:
    """
    The request target that asks the benchmark backend for C{chunks} events
    C{delay} seconds apart.
    """
    return f"/v1/chat/completions?chunks={chunks}&delay={delay}"


class _SocketTransport:
    """
    The little of a transport L{_StreamProtocol} uses, on a bare socket.
    """

    __slots__ = ("_client", "_socket", "closed")

    def __init__(self, client: _LeanClient, sock: socket.socket) -> None:
        self._client = client
        self._socket = sock
        self.closed = False

    def write(self, data: bytes) -> None:
        self._socket.sendall(data)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._client.forget(self._socket)


class _LeanClient:
    """
    The C{sse} client without asyncio: non-blocking sockets on one
    C{epoll}, the same stream records (L{_StreamProtocol}) and the same
    figures as L{runSSE}, for a fraction of the CPU per stream (asyncio's
    connection set-up, tasks, futures and timeouts cost about as much as the
    kernel's side of a loopback connection). The scale benchmark opens
    10,000 streams at 1,000 a second from one process on the core it shares
    with the backend, which asyncio could not do without becoming the
    bottleneck.
    """

    def __init__(self, port: int, run: _SSERun, request: bytes) -> None:
        self._address = ("127.0.0.1", port)
        self._run = run
        self._request = request
        self._epoll = select.epoll()
        #: fd -> (socket, stream, connected yet)
        self._open: dict[int, list[Any]] = {}
        self._deadlines: list[tuple[float, int, int, _StreamProtocol]] = []
        self._opened = 0
        #: The most streams open at once.
        self.maxOpen = 0

    def open(self, timeout: float) -> None:
        """
        Start one stream.
        """
        started = time.time_ns()
        stream = _StreamProtocol(self._request, self._run, started, self._run.finished)
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        except OSError as e:  # out of file descriptors: the target fell behind
            self._run.outcomes[f"connect failed: {e.strerror or e}"] += 1
            return
        sock.setblocking(False)
        error = sock.connect_ex(self._address)
        if error not in (0, errno.EINPROGRESS):
            sock.close()
            self._run.outcomes[f"connect failed: {os.strerror(error)}"] += 1
            return
        fd = sock.fileno()
        self._open[fd] = [sock, stream, False]
        self._epoll.register(fd, select.EPOLLOUT)
        self.maxOpen = max(self.maxOpen, len(self._open))
        self._run.opened(len(self._open))
        self._opened += 1
        deadline = (time.monotonic() + timeout, self._opened, fd, stream)
        heapq.heappush(self._deadlines, deadline)

    def forget(self, sock: socket.socket) -> None:
        """
        Stop watching C{sock} and close it.
        """
        fd = sock.fileno()
        if self._open.pop(fd, None) is not None:
            self._epoll.unregister(fd)
        sock.close()

    def pending(self) -> int:
        """
        How many streams are open.
        """
        return len(self._open)

    def poll(self, timeout: float) -> None:
        """
        Wait up to C{timeout} seconds and handle what the sockets report.
        """
        for fd, _ in self._epoll.poll(timeout):
            entry = self._open.get(fd)
            if entry is None:
                continue
            sock, stream, connected = entry
            if not connected:
                error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if error:
                    self.forget(sock)
                    stream.outcome = f"connect failed: {os.strerror(error)}"
                    self._run.outcomes[stream.outcome] += 1
                    continue
                entry[2] = True
                self._epoll.modify(fd, select.EPOLLIN)
                stream.connection_made(_SocketTransport(self, sock))
                continue
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError as e:
                self.forget(sock)
                stream.connection_lost(e)
                continue
            if data:
                stream.data_received(data)
            else:
                self.forget(sock)
                stream.connection_lost(None)

    def expire(self) -> None:
        """
        End the streams that have run past their deadline.
        """
        now = time.monotonic()
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            _, _, fd, stream = heapq.heappop(deadlines)
            if stream.outcome is None:
                entry = self._open.get(fd)
                if entry is not None and entry[1] is stream:
                    if not entry[2]:  # still connecting: not counted by _finish
                        self.forget(entry[0])
                    stream._finish("timed out")


def runSSELean(
    port: int,
    streams: int,
    chunks: int,
    delay: float,
    model: str = "bench",
    ramp: float = 0.0,
    timeout: float = 60.0,
    window: float = 0.0,
) -> dict[str, Any]:
    """
    L{runSSE} on L{_LeanClient}: the same streams, schedule and summary.
    """
    run = _SSERun(chunks, time.time_ns(), window)
    request = _requestBytes(port, _ssePath(chunks, delay), model, stream=True)
    client = _LeanClient(port, run, request)
    cpuBefore = time.process_time()
    lags: list[float] = []
    tick = 0.01
    started = time.monotonic()
    nextTick = started + tick
    nextExpiry = started + 1.0
    index = 0
    opened = 0.0
    while index < streams or client.pending():
        now = time.monotonic()
        while index < streams and started + ramp * index / streams <= now:
            client.open(timeout)
            index += 1
            if index == streams:
                opened = time.monotonic() - started
        if now >= nextTick:
            lags.append((now - nextTick) * 1000)
            nextTick = now + tick
        if now >= nextExpiry:
            client.expire()
            nextExpiry = now + 1.0
        wake = nextTick
        if index < streams:
            wake = min(wake, started + ramp * index / streams)
        client.poll(max(0.0, wake - time.monotonic()))
    elapsed = time.monotonic() - started
    result = run.result(streams, delay, ramp, elapsed, opened)
    result["client"] = {
        "engine": "epoll",
        "max_open": client.maxOpen,
        **_clientFigures(cpuBefore, lags),
    }
    return result


def _summary(values: list[float]) -> dict[str, float | int | None]:
    """
    Count and percentiles of C{values}.
    """

    def rounded(x: float | None) -> float | None:
        return None if x is None else round(x, 4)

    return {
        "n": len(values),
        "p50": rounded(percentile(values, 0.50)),
        "p90": rounded(percentile(values, 0.90)),
        "p99": rounded(percentile(values, 0.99)),
        "max": rounded(max(values) if values else None),
    }


class _RequestProtocol(asyncio.Protocol):
    """
    One keep-alive connection sending requests back to back.
    """

    def __init__(self, request: bytes, run: _HTTPRun) -> None:
        self._request = request
        self._run = run
        self._body = _Body()
        self._sent = 0
        self._transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._send()

    def _send(self) -> None:
        assert self._transport is not None
        self._body = _Body()
        self._sent = time.perf_counter_ns()
        self._transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        body = self._body
        body.feed(data)
        if not body.complete:
            return
        run = self._run
        if body.status == 200:
            run.latencies.append((time.perf_counter_ns() - self._sent) / 1000)
        else:
            run.errors += 1
        if run.running:
            self._send()
        elif self._transport is not None:
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._run.running:
            self._run.errors += 1
        if not self.closed.done():
            self.closed.set_result(None)


class _HTTPRun:
    """
    The state shared by the connections of one C{http} run.
    """

    def __init__(self) -> None:
        self.running = True
        self.errors = 0
        self.latencies: list[float] = []


async def runHTTP(
    port: int, connections: int, duration: float, model: str = "bench"
) -> dict[str, Any]:
    """
    Send non-streaming requests on C{connections} connections for
    C{duration} seconds.

    @return: the summary printed by the C{http} command, in the shape of the
        harness's wrk script (latencies in microseconds).
    """
    loop = asyncio.get_running_loop()
    run = _HTTPRun()
    request = _requestBytes(port, "/v1/chat/completions", model, stream=False)
    started = time.monotonic()
    protocols = []
    for _ in range(connections):
        _, protocol = await loop.create_connection(
            lambda: _RequestProtocol(request, run), "127.0.0.1", port
        )
        protocols.append(protocol)
    await asyncio.sleep(duration)
    run.running = False
    count = len(run.latencies)
    elapsed = time.monotonic() - started
    await asyncio.wait([p.closed for p in protocols], timeout=5)
    latencies = run.latencies[:count]
    return {
        "requests": count,
        "duration_us": int(elapsed * 1e6),
        "errors": {"status": run.errors},
        "p50_us": percentile(latencies, 0.50),
        "p90_us": percentile(latencies, 0.90),
        "p99_us": percentile(latencies, 0.99),
        "max_us": max(latencies) if latencies else None,
        "mean_us": sum(latencies) / count if count else None,
    }


def main() -> None:
    """
    Parse the command line, run one load, print its JSON summary.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    sse = commands.add_parser("sse", help="concurrent SSE streams")
    sse.add_argument("--port", type=int, required=True)
    sse.add_argument("--streams", type=int, default=100)
    sse.add_argument("--chunks", type=int, default=100)
    sse.add_argument("--delay", type=float, default=0.02)
    sse.add_argument("--model", default="bench")
    sse.add_argument("--ramp", type=float, default=0.0, help="seconds to open all")
    sse.add_argument("--timeout", type=float, default=60.0)
    sse.add_argument(
        "--window", type=float, default=0.0, help="seconds per timeline window"
    )
    sse.add_argument(
        "--engine",
        choices=("asyncio", "epoll"),
        default="asyncio",
        help="asyncio, or a bare epoll loop at a fraction of the CPU per stream",
    )
    http = commands.add_parser("http", help="non-streaming requests (wrk fallback)")
    http.add_argument("--port", type=int, required=True)
    http.add_argument("--connections", type=int, default=64)
    http.add_argument("--duration", type=float, default=5.0)
    http.add_argument("--model", default="bench")
    options = parser.parse_args()
    gc.disable()
    if options.command == "sse":
        args = (
            options.port,
            options.streams,
            options.chunks,
            options.delay,
            options.model,
            options.ramp,
            options.timeout,
            options.window,
        )
        if options.engine == "epoll":
            result = runSSELean(*args)
        else:
            result = asyncio.run(runSSE(*args))
    else:
        result = asyncio.run(
            runHTTP(options.port, options.connections, options.duration, options.model)
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
