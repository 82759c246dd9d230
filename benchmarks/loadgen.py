"""
Load clients for the llmux benchmarks: raw asyncio sockets, no HTTP library.

Two commands, each printing one JSON object on stdout:

  - C{sse}: open C{--streams} streaming chat completions (optionally spread
    over C{--ramp} seconds), read every Server-Sent Event of every stream and
    report time to first chunk, per-chunk latency (arrival time minus the
    send time the benchmark backend stamps into each event), and every chunk
    or C{[DONE]} that did not arrive. Per-chunk latency through a proxy minus
    the same figure measured directly against the backend is the latency the
    proxy adds to each token.
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
import gc
import json
import re
import time
from collections import Counter
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
    """

    def __init__(self, request: bytes, run: _SSERun) -> None:
        self._request = request
        self._run = run
        self._body = _Body()
        self._events = b""
        self._sent = 0
        self.seqs: set[int] = set()
        self.done = False
        self.finished: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._sent = time.time_ns()
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
                    run.ttfc.append((now - self._sent) / 1e6)
                self.seqs.add(seq)
                run.latencies.append((now - int(match.group(2))) / 1e6)
            elif b"[DONE]" in event:
                self.done = True
        if body.complete:
            self._finish("ok")

    def _finish(self, outcome: str) -> None:
        if not self.finished.done():
            self.finished.set_result(outcome)
        if self._transport is not None:
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._body._mode == "close" and self._body.status == 200:
            self._body.complete = True
            outcome = "ok"
        else:
            outcome = f"connection lost: {exc or 'closed'}"
        if not self.finished.done():
            self.finished.set_result(outcome)


class _SSERun:
    """
    The samples gathered by all streams of one run.
    """

    def __init__(self) -> None:
        self.ttfc: list[float] = []
        self.latencies: list[float] = []


async def runSSE(
    port: int,
    streams: int,
    chunks: int,
    delay: float,
    model: str = "bench",
    ramp: float = 0.0,
    timeout: float = 60.0,
) -> dict[str, Any]:
    """
    Run C{streams} concurrent streams of C{chunks} events C{delay} apart.

    @return: the summary printed by the C{sse} command.
    """
    loop = asyncio.get_running_loop()
    run = _SSERun()
    path = f"/v1/chat/completions?chunks={chunks}&delay={delay}"
    request = _requestBytes(port, path, model, stream=True)
    outcomes: Counter[str] = Counter()
    protocols: list[_StreamProtocol] = []

    async def one(index: int) -> None:
        if ramp:
            await asyncio.sleep(ramp * index / streams)
        try:
            _, protocol = await loop.create_connection(
                lambda: _StreamProtocol(request, run), "127.0.0.1", port
            )
        except OSError as e:
            outcomes[f"connect failed: {e.strerror or e}"] += 1
            return
        protocols.append(protocol)
        try:
            outcome = await asyncio.wait_for(asyncio.shield(protocol.finished), timeout)
        except TimeoutError:
            outcome = "timed out"
            protocol._finish(outcome)
        outcomes[outcome] += 1

    started = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(streams)))
    elapsed = time.monotonic() - started
    received = sum(len(p.seqs) for p in protocols)
    doneCount = sum(1 for p in protocols if p.done)
    complete = sum(
        1 for p in protocols if len(p.seqs) == chunks and p.done and p._body.complete
    )
    return {
        "streams": streams,
        "chunks_per_stream": chunks,
        "delay_s": delay,
        "complete_streams": complete,
        "outcomes": dict(outcomes),
        "chunks_expected": streams * chunks,
        "chunks_received": received,
        "done_expected": streams,
        "done_received": doneCount,
        "lost": streams * chunks - received + streams - doneCount,
        "elapsed_s": round(elapsed, 3),
        "ttfc_ms": _summary(run.ttfc),
        "chunk_latency_ms": _summary(run.latencies),
    }


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
    http = commands.add_parser("http", help="non-streaming requests (wrk fallback)")
    http.add_argument("--port", type=int, required=True)
    http.add_argument("--connections", type=int, default=64)
    http.add_argument("--duration", type=float, default=5.0)
    http.add_argument("--model", default="bench")
    options = parser.parse_args()
    gc.disable()
    if options.command == "sse":
        result = asyncio.run(
            runSSE(
                options.port,
                options.streams,
                options.chunks,
                options.delay,
                options.model,
                options.ramp,
                options.timeout,
            )
        )
    else:
        result = asyncio.run(
            runHTTP(options.port, options.connections, options.duration, options.model)
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
