"""
A fast mock OpenAI-compatible backend for benchmarking llmux.

It is a bare asyncio protocol with just enough HTTP/1.1 to serve the harness
(keep-alive, C{Content-Length} request bodies, chunked responses), so it costs
a few tens of microseconds per request and is not what a benchmark measures.
The test fake (C{llmux.testing.fakebackend}) is a full twisted.web site and
about as slow as the proxies under test, so it would hide their differences.

What it answers, on every port it listens on:

  - C{POST <any path>} whose body asks for C{"stream": true}: Server-Sent
    Events, C{chunks} data events (the first at once, with the headers, then
    one every C{delay} seconds) and then C{data: [DONE]}. Each event carries
    its sequence number and the backend's wall-clock send time in
    nanoseconds (C{"seq":N,"t":NS}) so a client can measure the latency of
    every chunk. C{chunks} and C{delay} come from the query string
    (C{?chunks=100&delay=0.02}), defaulting to 100 and 0.02.
  - any other C{POST}: one small chat completion as JSON.
  - C{GET /health}: C{ok}.
  - C{GET /_bench/collect}: run the garbage collector now (see below) and
    answer how many objects it freed.
  - C{GET /_bench/arrivals}: the wall-clock times (ns) at which requests whose
    target contains C{record=1} began to arrive, as a JSON list; the list is
    then emptied. The switch-overhead measurement uses this.

HTTP/1.0 requests (C{twisted.web.proxy.ReverseProxyResource} sends them) get
an HTTP/1.0 answer delimited by closing the connection when streamed.

It runs with its garbage collector off: with thousands of connections open,
one full collection takes 100 ms or more, and the first chunk of every
stream that arrives meanwhile would wait for it. Its answers leave no
reference cycles; asyncio's closed connections do (a few kB each), which
C{benchmarks/scale.py} frees between phases with C{GET /_bench/collect}.

Run::

    python benchmarks/backend.py --port 18901 --port 18902
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import signal
import time
from urllib.parse import parse_qs

__all__ = ["BackendProtocol", "main"]

DEFAULT_CHUNKS = 100
DEFAULT_DELAY = 0.02

_COMPLETION = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "bench",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello from the bench."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10},
    }
).encode()

_JSON_RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: %d\r\n"
    b"\r\n" % len(_COMPLETION)
) + _COMPLETION

_SSE_HEAD_11 = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/event-stream\r\n"
    b"Cache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n"
    b"\r\n"
)
_SSE_HEAD_10 = (
    b"HTTP/1.0 200 OK\r\n"
    b"Content-Type: text/event-stream\r\n"
    b"Cache-Control: no-cache\r\n"
    b"Connection: close\r\n"
    b"\r\n"
)
_EVENT_START = b'data: {"seq":%d,"t":%d,'
_EVENT_REST = (
    b'"id":"chatcmpl-bench","object":"chat.completion.chunk","model":"bench",'
    b'"choices":[{"index":0,"delta":{"content":" token"},"finish_reason":null}]}'
    b"\n\n"
)
_DONE = b"data: [DONE]\n\n"

#: Request start times (ns) of recorded requests, drained by /_bench/arrivals.
_arrivals: list[int] = []


def _plain(status: bytes, body: bytes, close: bool = False) -> bytes:
    """
    A complete response with a C{text/plain} or JSON body.
    """
    return b"HTTP/1.1 %s\r\nContent-Length: %d\r\n%s\r\n%s" % (
        status,
        len(body),
        b"Connection: close\r\n" if close else b"",
        body,
    )


class BackendProtocol(asyncio.Protocol):
    """
    One client connection: parses requests one after another and answers
    each; a streamed answer holds the connection until it has ended.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._transport: asyncio.Transport | None = None
        self._streaming = False
        self._closed = False
        self._started = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True

    def data_received(self, data: bytes) -> None:
        if not self._buffer:
            self._started = time.time_ns()
        self._buffer += data
        while not self._streaming and not self._closed:
            if not self._handleOne():
                return

    def _handleOne(self) -> bool:
        """
        Answer the first complete request in the buffer, if there is one.

        @return: whether a request was handled.
        """
        buffer = self._buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = buffer[:end]
        lines = head.split(b"\r\n")
        method, target, version = lines[0].split(b" ", 2)
        length = 0
        close = version == b"HTTP/1.0"
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            lowered = name.strip().lower()
            if lowered == b"content-length":
                length = int(value)
            elif lowered == b"connection":
                token = value.strip().lower()
                close = token == b"close" or (
                    version == b"HTTP/1.0" and token != b"keep-alive"
                )
        total = end + 4 + length
        if len(buffer) < total:
            return False
        body = buffer[end + 4 : total]
        self._buffer = buffer[total:]
        started = self._started
        self._started = time.time_ns()
        if b"record=1" in target:
            _arrivals.append(started)
        self._answer(method, target, version, body, close)
        return True

    def _answer(
        self, method: bytes, target: bytes, version: bytes, body: bytes, close: bool
    ) -> None:
        """
        Write the answer to one request; close the connection after it
        if C{close}.
        """
        transport = self._transport
        assert transport is not None
        if method == b"POST":
            if b'"stream":true' in body or b'"stream": true' in body:
                self._stream(target, version == b"HTTP/1.0" or close)
                return
            transport.write(_JSON_RESPONSE)
        elif target.startswith(b"/_bench/collect"):
            payload = json.dumps({"collected": gc.collect()}).encode()
            transport.write(_plain(b"200 OK", payload))
        elif target.startswith(b"/_bench/arrivals"):
            payload = json.dumps(_arrivals).encode()
            _arrivals.clear()
            transport.write(_plain(b"200 OK", payload))
        elif target.startswith(b"/health"):
            transport.write(_plain(b"200 OK", b"ok"))
        else:
            transport.write(_plain(b"404 Not Found", b"not found"))
        if close:
            self._closed = True
            transport.close()

    def _stream(self, target: bytes, http10: bool) -> None:
        """
        Start an SSE answer; it ends after C{chunks} events and C{[DONE]}.
        """
        chunks, delay = DEFAULT_CHUNKS, DEFAULT_DELAY
        _, _, query = target.partition(b"?")
        if query:
            args = parse_qs(query.decode("latin-1"))
            chunks = int(args.get("chunks", [chunks])[0])
            delay = float(args.get("delay", [delay])[0])
        self._streaming = True
        transport = self._transport
        assert transport is not None
        transport.write(_SSE_HEAD_10 if http10 else _SSE_HEAD_11)
        _Stream(self, transport, chunks, delay, http10).send(0)

    def streamEnded(self) -> None:
        """
        The answer being streamed has ended on a connection kept open: answer
        the next request if it has arrived already.
        """
        self._streaming = False
        if self._buffer:
            self.data_received(b"")


class _Stream:
    """
    One SSE answer being sent: C{chunks} events C{delay} seconds apart, the
    first at once, each stamped with its send time.

    A bound method of this object is what the loop's timer holds; nothing
    refers back to it, so an answer leaves no reference cycle behind (the
    backend runs without the garbage collector: see L{main}).
    """

    __slots__ = (
        "_chunks",
        "_delay",
        "_frame",
        "_http10",
        "_loop",
        "_protocol",
        "_start",
        "_transport",
    )

    def __init__(
        self,
        protocol: BackendProtocol,
        transport: asyncio.Transport,
        chunks: int,
        delay: float,
        http10: bool,
    ) -> None:
        self._protocol = protocol
        self._transport = transport
        self._chunks = chunks
        self._delay = delay
        self._http10 = http10
        self._frame = _raw if http10 else _chunked
        self._loop = asyncio.get_running_loop()
        self._start = self._loop.time()

    def send(self, seq: int) -> None:
        """
        Send event C{seq} and schedule the next, or end the answer.
        """
        protocol = self._protocol
        if protocol._closed:
            return
        transport = self._transport
        event = _EVENT_START % (seq, time.time_ns()) + _EVENT_REST
        if seq + 1 < self._chunks:
            transport.write(self._frame(event))
            self._loop.call_at(
                self._start + (seq + 1) * self._delay, self.send, seq + 1
            )
            return
        transport.write(self._frame(event + _DONE))
        if self._http10:
            protocol._closed = True
            transport.close()
            return
        transport.write(b"0\r\n\r\n")
        protocol.streamEnded()


def _chunked(data: bytes) -> bytes:
    """
    C{data} as one chunk of a chunked body.
    """
    return b"%x\r\n%s\r\n" % (len(data), data)


def _raw(data: bytes) -> bytes:
    """
    C{data} as it is: the body of an HTTP/1.0 answer is not framed.
    """
    return data


async def _serve(ports: list[int], backlog: int) -> None:
    """
    Listen on C{ports} until SIGTERM or SIGINT.
    """
    loop = asyncio.get_running_loop()
    servers = [
        await loop.create_server(
            BackendProtocol, "127.0.0.1", port, backlog=backlog, reuse_address=True
        )
        for port in ports
    ]
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print("backend listening on", ", ".join(map(str, ports)), flush=True)
    await stop.wait()
    for server in servers:
        server.close()


def main() -> None:
    """
    Serve on the given ports until SIGTERM or SIGINT.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, action="append", required=True)
    parser.add_argument("--backlog", type=int, default=4096)
    options = parser.parse_args()
    # With thousands of connections open, one full collection of the
    # backend's heap takes 100 ms or more, and every request arriving
    # meanwhile waits: that would show up as the first-chunk latency of
    # whatever is measured. The backend's answers leave no reference cycle;
    # asyncio's closed transports do (about 3 kB each), which the harness
    # frees between phases with GET /_bench/collect.
    gc.disable()
    asyncio.run(_serve(options.port, options.backlog))


if __name__ == "__main__":
    main()
