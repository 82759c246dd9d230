# -*- test-case-name: tests.test_fakebackend -*-
"""
A fake OpenAI-compatible inference server, for tests and for the demo.

It answers chat and text completions, as one JSON document or as Server-Sent
Events streamed one chunk per C{chunkDelay} seconds on an injected clock, and
lists its one model. Every answer says which model produced it ("Hello from
llama: token 1 token 2 ..."), so a human watching a demo sees the routing.

A few endpoints exist only to exercise a proxy:

  - C{ANY /echo/...}: the request as the backend saw it, as JSON;
  - C{GET /slow-headers?delay=S}: nothing at all for C{S} seconds;
  - C{GET /stream-bytes?size=N&chunk=M}: C{N} bytes in C{M}-byte writes,
    produced only as fast as the client reads them;
  - C{GET /die-midstream?after=K}: C{K} SSE chunks, then the connection
    closes without an end of body, like a backend that crashed.

It can play a real server's sleep mode (L{llmux.testing.sleepmode} has the
details), so that tests and the demo need no GPU; C{backend} (C{--backend})
picks one:

  - C{plain} (the default): no sleep mode, always serving;
  - C{vllm}: vLLM's development-mode sleep API: C{POST /sleep?level=1|2},
    C{POST /wake_up[?tags=...]}, C{GET /is_sleeping}, C{POST /collective_rpc}
    (C{{"method": "reload_weights"}}, needed after a level-2 sleep) and
    C{POST /reset_prefix_cache};
  - C{sglang}: SGLang's C{POST /release_memory_occupation} and
    C{POST /resume_memory_occupation}, each with a JSON body (C{{}}).

While asleep, released, or awake without weights, generation (C{/v1/chat/
completions}, C{/v1/completions}) is refused with a 503 JSON error;
C{/health} and C{/v1/models} still answer. With C{readyAfter}
(C{--ready-after S}), for the first C{S} seconds the server is still loading
weights: C{/health} answers 503 and generation is refused.

The fake reports what it was asked: every request to a control endpoint
(those above and C{/health}) is recorded in order, the last 1000 of them, and
listed by C{GET /_fake/calls} as C{{"calls": [{"method": "POST", "path":
"/sleep?level=1", "json": null}, ...]}} (C{DELETE /_fake/calls} forgets
them); in-process, L{FakeBackend.calls} has them as
L{llmux.testing.sleepmode.Call}s. C{GET /_fake/state} shows the engine's
state.

Serve L{makeSite} in-process, or run it as a program::

    python -m llmux.testing.fakebackend --port 8001 --model llama
    python -m llmux.testing.fakebackend --port 8002 --model qwen --backend vllm

The program stops cleanly (exit 0) on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import itertools
import json
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any, cast

from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.protocol import ServerFactory
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from zope.interface import implementer

from .sleepmode import (
    BACKENDS,
    CONTROL_PATHS,
    Ask,
    Call,
    CallLog,
    Engine,
    EngineError,
    Handler,
    makeEngine,
)

__all__ = ["FakeBackend", "FakeSite", "main", "makeSite"]

DEFAULT_CHUNK_DELAY = 0.05
DEFAULT_CHUNKS = 8

_log = Logger(namespace="llmux.testing.fakebackend")

JSONObject = dict[str, Any]


class _HTTPError(Exception):
    """
    An error answer: an HTTP status and an OpenAI-style message.
    """

    def __init__(self, code: int, message: str, allow: Sequence[bytes] = ()):
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.allow = allow


def _sse(payload: object) -> bytes:
    """
    One Server-Sent Events frame carrying C{payload} as JSON.
    """
    return b"data: " + json.dumps(payload).encode("utf-8") + b"\n\n"


_DONE = b"data: [DONE]\n\n"


def _tokens(model: str, count: int) -> list[str]:
    """
    The C{count} pieces of text a completion is made of; joined, they read
    C{"Hello from <model>: token 1 token 2 ..."}.
    """
    return [f"Hello from {model}:" if i == 0 else f" token {i}" for i in range(count)]


def _countWords(value: object) -> int:
    """
    A rough token count for C{prompt} or C{messages}: whitespace-separated
    words in every string inside C{value}.
    """
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):
        return sum(_countWords(v) for v in value)
    if isinstance(value, dict):
        return sum(_countWords(v) for v in value.values())
    return 0


def _body(request: Request) -> bytes:
    """
    The whole request body.
    """
    content = request.content
    if content is None:
        return b""
    content.seek(0)
    data: bytes = content.read()
    return data


def _readJSON(request: Request) -> JSONObject:
    """
    The request body as a JSON object.

    @raise _HTTPError: 400 if it is not one.
    """
    try:
        body = json.loads(_body(request))
    except ValueError as e:
        raise _HTTPError(400, f"Invalid JSON body: {e}") from None
    if not isinstance(body, dict):
        raise _HTTPError(400, "The request body must be a JSON object")
    return body


def _intArg(request: Request, name: bytes, default: int) -> int:
    """
    The non-negative integer query argument C{name}, or C{default}.
    """
    return int(_floatArg(request, name, default, integer=True))


def _floatArg(
    request: Request, name: bytes, default: float, integer: bool = False
) -> float:
    """
    The non-negative number query argument C{name}, or C{default}.

    @raise _HTTPError: 400 if it is present but not such a number.
    """
    values = (request.args or {}).get(name)
    if not values:
        return default
    try:
        value = int(values[0]) if integer else float(values[0])
    except ValueError:
        value = -1
    if not 0 <= value < float("inf"):
        kind = "integer" if integer else "number"
        raise _HTTPError(400, f"{name.decode()} must be a non-negative {kind}")
    return value


class _EventStream:
    """
    Write a Server-Sent Events response on a timer.

    C{first} goes out at once with the headers, then one of C{timed} every
    C{delay} seconds, then C{last} right after the final timed one; then
    C{end} ends the response. If the client goes away first, the timer stops.
    """

    def __init__(
        self,
        request: Request,
        clock: IReactorTime,
        delay: float,
        first: bytes,
        timed: Sequence[bytes],
        last: bytes,
        end: Callable[[Request], None],
    ):
        self._request = request
        self._clock = clock
        self._delay = delay
        self._first = first
        self._timed = list(timed)
        self._last = last
        self._end = end
        self._sent = 0
        self._call: IDelayedCall | None = None
        self._ended = False

    def start(self) -> None:
        """
        Send the headers and C{first}, and start the timer.
        """
        request = self._request
        request.setHeader(b"content-type", b"text/event-stream")
        request.setHeader(b"cache-control", b"no-cache")
        request.notifyFinish().addErrback(self._clientGone)
        request.write(self._first)
        self._next()

    def _next(self) -> None:
        """
        Schedule the next timed event, or end the stream.
        """
        if self._sent < len(self._timed):
            self._call = self._clock.callLater(self._delay, self._tick)
        else:
            self._call = None
            self._ended = True
            self._request.write(self._last)
            self._end(self._request)

    def _tick(self) -> None:
        """
        Send one timed event.
        """
        self._request.write(self._timed[self._sent])
        self._sent += 1
        self._next()

    def _clientGone(self, reason: Failure) -> None:
        """
        The client hung up: stop the timer.
        """
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        if not self._ended:
            _log.info(
                "client went away after {sent} of {total} chunks: {uri}",
                sent=self._sent,
                total=len(self._timed),
                uri=self._request.uri.decode("latin-1"),
            )


def _finish(request: Request) -> None:
    """
    End a response normally.
    """
    request.finish()


def _drop(request: Request) -> None:
    """
    Close the connection without ending the response, like a crashed backend:
    what was written still reaches the client, the end of body never does.
    """
    _log.info(
        "dropping the connection mid-stream: {uri}", uri=request.uri.decode("latin-1")
    )
    request.loseConnection()


@implementer(IPushProducer)
class _BytesProducer:
    """
    Write C{size} bytes to a request in C{chunk}-byte writes, pausing whenever
    the client's connection cannot take more.
    """

    def __init__(self, request: Request, size: int, chunk: int):
        self._request = request
        self._remaining = size
        self._chunk = chunk
        self._paused = False
        self._done = False

    def start(self) -> None:
        """
        Register with the request and start writing.
        """
        request = self._request
        request.setHeader(b"content-type", b"application/octet-stream")
        request.setHeader(b"content-length", b"%d" % (self._remaining,))
        request.notifyFinish().addErrback(lambda _: self.stopProducing())
        request.registerProducer(self, True)
        self.resumeProducing()

    def pauseProducing(self) -> None:
        """
        The client's connection is full: stop writing.
        """
        self._paused = True

    def resumeProducing(self) -> None:
        """
        Write until paused or done; finish when done.
        """
        self._paused = False
        while self._remaining and not self._paused and not self._done:
            size = min(self._chunk, self._remaining)
            self._remaining -= size
            self._request.write(b"x" * size)
        if not self._remaining and not self._done:
            self._done = True
            self._request.unregisterProducer()
            self._request.finish()

    def stopProducing(self) -> None:
        """
        The client went away: never write again.
        """
        self._done = True


class FakeBackend(Resource):
    """
    The whole fake server, one leaf resource dispatching on method and path.

    @ivar model: the model this backend serves; every answer names it.
    @ivar engine: the sleep-mode state of the server it plays.
    """

    isLeaf = True

    def __init__(
        self,
        model: str,
        clock: IReactorTime,
        chunkDelay: float = DEFAULT_CHUNK_DELAY,
        chunks: int = DEFAULT_CHUNKS,
        *,
        backend: str = "plain",
        readyAfter: float = 0.0,
    ):
        """
        @param backend: the server to play, one of C{plain}, C{vllm} and
            C{sglang}.
        @param readyAfter: seconds from now on C{clock} during which the
            server is still loading its weights.

        @raise ValueError: for an unknown C{backend}.
        """
        super().__init__()
        self.model = model
        self.engine: Engine = makeEngine(backend, model)
        self._clock = clock
        self._chunkDelay = chunkDelay
        self._chunks = chunks
        self._readyAt = clock.seconds() + readyAfter
        self._calls = CallLog()
        self._ids = itertools.count(1)
        self._routes: dict[bytes, dict[bytes, Callable[[Request], bytes | int]]] = {
            b"/v1/chat/completions": {b"POST": self._chat},
            b"/v1/completions": {b"POST": self._completion},
            b"/v1/models": {b"GET": self._models},
            b"/health": {b"GET": self._health},
            b"/slow-headers": {b"GET": self._slowHeaders},
            b"/stream-bytes": {b"GET": self._streamBytes},
            b"/die-midstream": {b"GET": self._dieMidstream},
            b"/_fake/calls": {b"GET": self._listCalls, b"DELETE": self._clearCalls},
            b"/_fake/state": {b"GET": self._state},
        }
        for path, methods in self.engine.routes().items():
            self._routes[path] = {
                method: self._control(handler) for method, handler in methods.items()
            }

    @property
    def calls(self) -> tuple[Call, ...]:
        """
        The requests to control endpoints so far (the last 1000), oldest
        first.
        """
        return self._calls.calls

    def clearCalls(self) -> None:
        """
        Forget the recorded calls, so that a test sees only what follows.
        """
        self._calls.clear()

    @property
    def ready(self) -> bool:
        """
        Whether the server has finished loading its weights.
        """
        return self._clock.seconds() >= self._readyAt

    def render(self, request: Request) -> bytes | int:
        """
        Record a control call, dispatch to the handler for the request's
        method and path; render every error as an OpenAI-style JSON error.
        """
        request.setHeader(b"x-fake-backend", self.model.encode("utf-8"))
        if request.path in CONTROL_PATHS:
            self._calls.record(_callOf(request))
        try:
            return self._handlerFor(request)(request)
        except _HTTPError as e:
            if e.allow:
                request.setHeader(b"allow", b", ".join(e.allow))
            return self._json(request, e.code, _errorBody(e.message))
        except EngineError as e:
            return self._json(request, e.code, e.document())

    def _handlerFor(self, request: Request) -> Callable[[Request], bytes | int]:
        """
        The handler for C{request}, or raise a 404 or 405 L{_HTTPError}.
        """
        path = request.path
        if path == b"/echo" or path.startswith(b"/echo/"):
            return self._echo
        methods = self._routes.get(path)
        if methods is None:
            raise _HTTPError(404, f"Unknown path: {path.decode('latin-1')}")
        handler = methods.get(request.method)
        if handler is None:
            raise _HTTPError(
                405,
                f"Method {request.method.decode('latin-1')} not allowed",
                allow=sorted(methods),
            )
        return handler

    def _json(self, request: Request, code: int, body: object) -> bytes:
        """
        Answer C{request} with C{body} as JSON.
        """
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(body).encode("utf-8")

    def _control(self, handler: Handler) -> Callable[[Request], bytes]:
        """
        A request handler that asks the engine's C{handler} and renders its
        answer.
        """

        def render(request: Request) -> bytes:
            answer = handler(_askOf(request))
            request.setResponseCode(answer.code)
            if answer.contentType is not None:
                request.setHeader(b"content-type", answer.contentType)
            return answer.body

        return render

    def _checkServing(self) -> None:
        """
        Refuse to generate while loading, or while the engine cannot.

        @raise EngineError: 503, saying why.
        """
        if not self.ready:
            raise _loading(self._readyAt - self._clock.seconds())
        refusal = self.engine.refusal()
        if refusal is not None:
            raise refusal

    def _plan(self, body: JSONObject) -> tuple[list[str], str]:
        """
        The pieces of text to answer C{body} with, and the finish reason:
        C{chunks} pieces, or C{max_tokens} if that is fewer ("length").
        """
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        if limit is None:
            return _tokens(self.model, self._chunks), "stop"
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            raise _HTTPError(400, "max_tokens must be a non-negative integer")
        if limit < self._chunks:
            return _tokens(self.model, limit), "length"
        return _tokens(self.model, self._chunks), "stop"

    def _usage(self, prompt: object, completion: int) -> JSONObject:
        """
        An OpenAI C{usage} object.
        """
        prompt = _countWords(prompt)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def _streamRequested(self, body: JSONObject) -> tuple[bool, bool]:
        """
        Whether C{body} asks for a stream, and for a usage chunk at its end.
        """
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise _HTTPError(400, "stream must be a boolean")
        options = body.get("stream_options") or {}
        return stream, isinstance(options, dict) and bool(options.get("include_usage"))

    def _chat(self, request: Request) -> bytes | int:
        """
        C{POST /v1/chat/completions}.
        """
        self._checkServing()
        body = _readJSON(request)
        stream, includeUsage = self._streamRequested(body)
        pieces, reason = self._plan(body)
        usage = self._usage(body.get("messages"), len(pieces))
        base = {
            "id": f"chatcmpl-fake-{next(self._ids)}",
            "created": int(self._clock.seconds()),
            "model": self.model,
        }
        if not stream:
            message = {"role": "assistant", "content": "".join(pieces)}
            choice = {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": reason,
            }
            answer = {"object": "chat.completion", **base, "choices": [choice]}
            return self._json(request, 200, {**answer, "usage": usage})

        def chunk(delta: JSONObject, finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None}
            choice["finish_reason"] = finish
            return _sse({**chunkBase, "choices": [choice]})

        chunkBase = {"object": "chat.completion.chunk", **base}
        last = chunk({}, reason)
        if includeUsage:
            last += _sse({**chunkBase, "choices": [], "usage": usage})
        _EventStream(
            request,
            self._clock,
            self._chunkDelay,
            first=chunk({"role": "assistant", "content": ""}),
            timed=[chunk({"content": piece}) for piece in pieces],
            last=last + _DONE,
            end=_finish,
        ).start()
        return NOT_DONE_YET

    def _completion(self, request: Request) -> bytes | int:
        """
        C{POST /v1/completions}.
        """
        self._checkServing()
        body = _readJSON(request)
        stream, includeUsage = self._streamRequested(body)
        pieces, reason = self._plan(body)
        usage = self._usage(body.get("prompt"), len(pieces))
        base = {
            "id": f"cmpl-fake-{next(self._ids)}",
            "object": "text_completion",
            "created": int(self._clock.seconds()),
            "model": self.model,
        }

        def choice(text: str, finish: str | None) -> JSONObject:
            return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}

        if not stream:
            answer = {**base, "choices": [choice("".join(pieces), reason)]}
            return self._json(request, 200, {**answer, "usage": usage})
        last = _sse({**base, "choices": [choice("", reason)]})
        if includeUsage:
            last += _sse({**base, "choices": [], "usage": usage})
        _EventStream(
            request,
            self._clock,
            self._chunkDelay,
            first=b"",
            timed=[_sse({**base, "choices": [choice(p, None)]}) for p in pieces],
            last=last + _DONE,
            end=_finish,
        ).start()
        return NOT_DONE_YET

    def _models(self, request: Request) -> bytes:
        """
        C{GET /v1/models}: the one model, in OpenAI list form.
        """
        model = {"id": self.model, "object": "model", "created": 0, "owned_by": "fake"}
        return self._json(request, 200, {"object": "list", "data": [model]})

    def _health(self, request: Request) -> bytes:
        """
        C{GET /health}: ok once loaded, asleep or not, as vLLM and SGLang
        answer.

        @raise EngineError: 503 while still loading.
        """
        if not self.ready:
            raise _loading(self._readyAt - self._clock.seconds())
        return self._json(request, 200, {"status": "ok"})

    def _listCalls(self, request: Request) -> bytes:
        """
        C{GET /_fake/calls}: the recorded control calls, oldest first.
        """
        calls = [call.asJSON() for call in self._calls.calls]
        return self._json(request, 200, {"calls": calls})

    def _clearCalls(self, request: Request) -> bytes:
        """
        C{DELETE /_fake/calls}: forget the recorded calls.
        """
        self._calls.clear()
        return self._json(request, 200, {"calls": []})

    def _state(self, request: Request) -> bytes:
        """
        C{GET /_fake/state}: which server this plays, whether it has loaded,
        and its engine's state.
        """
        state = {"backend": self.engine.kind, "ready": self.ready}
        return self._json(request, 200, {**state, **self.engine.state()})

    def _echo(self, request: Request) -> bytes:
        """
        C{ANY /echo/...}: method, path with query, headers (lower-case names
        to lists of values) and body as text.
        """
        headers: dict[str, list[str]] = {}
        for name, values in request.requestHeaders.getAllRawHeaders():
            key = name.decode("latin-1").lower()
            headers.setdefault(key, []).extend(v.decode("latin-1") for v in values)
        echo = {
            "method": request.method.decode("latin-1"),
            "path": request.uri.decode("latin-1"),
            "headers": headers,
            "body": _body(request).decode("utf-8", "replace"),
        }
        return self._json(request, 200, echo)

    def _slowHeaders(self, request: Request) -> int:
        """
        C{GET /slow-headers?delay=S}: send nothing for C{S} seconds, then a
        small JSON answer.
        """
        delay = _floatArg(request, b"delay", 1.0)

        def answer() -> None:
            request.write(self._json(request, 200, {"status": "ok", "delay": delay}))
            request.finish()

        def clientGone(reason: Failure) -> None:
            if call.active():
                call.cancel()

        call = self._clock.callLater(delay, answer)
        request.notifyFinish().addErrback(clientGone)
        return NOT_DONE_YET

    def _streamBytes(self, request: Request) -> int:
        """
        C{GET /stream-bytes?size=N&chunk=M}: N bytes (default 1 MiB) in
        M-byte writes (default 64 KiB), honouring backpressure.
        """
        size = _intArg(request, b"size", 1 << 20)
        chunk = _intArg(request, b"chunk", 1 << 16)
        if chunk == 0:
            raise _HTTPError(400, "chunk must be a positive integer")
        _BytesProducer(request, size, chunk).start()
        return NOT_DONE_YET

    def _dieMidstream(self, request: Request) -> int:
        """
        C{GET /die-midstream?after=K}: K chat chunks, one per chunk delay,
        then the connection drops without an end of body.
        """
        after = _intArg(request, b"after", 2)
        base = {
            "id": f"chatcmpl-fake-{next(self._ids)}",
            "object": "chat.completion.chunk",
            "created": int(self._clock.seconds()),
            "model": self.model,
        }
        timed = [
            _sse({**base, "choices": [{"index": 0, "delta": {"content": piece}}]})
            for piece in _tokens(self.model, after)
        ]
        _EventStream(
            request,
            self._clock,
            self._chunkDelay,
            first=b"",
            timed=timed,
            last=b"",
            end=_drop,
        ).start()
        return NOT_DONE_YET


def _errorBody(message: str) -> JSONObject:
    """
    An OpenAI-style error document.
    """
    return {"error": {"message": message, "type": "invalid_request_error"}}


def _loading(remaining: float) -> EngineError:
    """
    The 503 of a server still loading its weights, C{remaining} seconds more.
    """
    return EngineError(
        503,
        f"The model is still loading (ready in {remaining:.1f} s)",
        "ServiceUnavailableError",
    )


def _callOf(request: Request) -> Call:
    """
    The L{Call} that C{request} makes, its body as JSON if it is JSON.
    """
    data = _body(request)
    try:
        body = json.loads(data) if data.strip() else None
    except ValueError:
        body = None
    return Call(request.method.decode("latin-1"), request.uri.decode("latin-1"), body)


def _askOf(request: Request) -> Ask:
    """
    What C{request} asks a control endpoint.
    """
    query = {
        name.decode("latin-1"): [v.decode("latin-1") for v in values]
        for name, values in (request.args or {}).items()
    }
    return Ask(query, _body(request))


class FakeSite(Site):
    """
    A L{Site} serving a L{FakeBackend}, whose access log is one
    L{twisted.logger} line per request.

    @ivar backend: the backend, to read its recorded calls and state.
    """

    noisy = False

    def __init__(self, resource: FakeBackend, clock: IReactorTime):
        super().__init__(resource, reactor=clock)
        self.backend = resource
        self._model = resource.model

    def logPrefix(self) -> str:
        """
        What the listening port's log lines are tagged with.
        """
        return "fakebackend"

    def log(self, request: Request) -> None:  # type: ignore[override]
        """
        Log a finished request.
        """
        _log.info(
            "{model}: {method} {uri} -> {code} ({length} bytes)",
            model=self._model,
            method=request.method.decode("latin-1"),
            uri=request.uri.decode("latin-1"),
            code=request.code,
            length=request.sentLength,
        )


def makeSite(
    model: str,
    clock: IReactorTime,
    chunkDelay: float = DEFAULT_CHUNK_DELAY,
    chunks: int = DEFAULT_CHUNKS,
    *,
    backend: str = "plain",
    readyAfter: float = 0.0,
) -> FakeSite:
    """
    A L{Site} serving a fake backend for C{model}; its C{backend} attribute
    is the L{FakeBackend}.

    @param clock: times stream chunks, C{/slow-headers} and C{readyAfter},
        and the site's own connection timeouts.
    @param chunkDelay: seconds between two streamed chunks.
    @param chunks: content chunks in a completion, unless C{max_tokens}
        asks for fewer.
    @param backend: the server to play: C{plain}, C{vllm} or C{sglang}.
    @param readyAfter: seconds from now during which the server is loading.
    """
    resource = FakeBackend(
        model, clock, chunkDelay, chunks, backend=backend, readyAfter=readyAfter
    )
    return FakeSite(resource, clock)


def _nonNegative(kind: Callable[[str], float]) -> Callable[[str], float]:
    """
    An argparse type: C{kind}, and not negative.
    """

    def parse(text: str) -> float:
        value = kind(text)
        if not 0 <= value < float("inf"):
            raise argparse.ArgumentTypeError(f"must be >= 0: {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def parseArgs(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """
    Parse the command line.
    """
    parser = argparse.ArgumentParser(
        prog="python -m llmux.testing.fakebackend",
        description="A fake OpenAI-compatible inference server.",
    )
    parser.add_argument("--port", type=int, required=True, help="0 picks a port")
    parser.add_argument("--model", required=True, help="the model name to serve")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--chunk-delay",
        type=_nonNegative(float),
        default=DEFAULT_CHUNK_DELAY,
        help="seconds between streamed chunks (default %(default)s)",
    )
    parser.add_argument(
        "--chunks",
        type=_nonNegative(int),
        default=DEFAULT_CHUNKS,
        help="content chunks per completion (default %(default)s)",
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="plain",
        help="the server whose sleep mode to play (default %(default)s)",
    )
    parser.add_argument(
        "--ready-after",
        type=_nonNegative(float),
        default=0.0,
        metavar="SECONDS",
        help="answer /health with 503 and refuse generation for this long "
        "after start, like a server loading weights (default %(default)s)",
    )
    options = parser.parse_args(argv)
    if not 0 <= options.port <= 65535:
        parser.error(f"--port must be in 0..65535: {options.port}")
    return options


def main(argv: Sequence[str] | None = None) -> int:
    """
    Serve a fake backend until SIGTERM or SIGINT; log to stdout.
    """
    options = parseArgs(argv)
    # Until the reactor runs and installs its own handler (which stops it),
    # SIGTERM would kill the process without running cleanup: exit instead.
    signal.signal(signal.SIGTERM, _exitOnSignal)

    from twisted.internet import reactor
    from twisted.internet.error import CannotListenError
    from twisted.logger import globalLogBeginner, textFileLogObserver

    globalLogBeginner.beginLoggingTo(
        [textFileLogObserver(sys.stdout)], redirectStandardIO=False
    )
    site = makeSite(
        options.model,
        reactor,
        options.chunk_delay,
        int(options.chunks),
        backend=options.backend,
        readyAfter=options.ready_after,
    )
    try:
        port = reactor.listenTCP(
            options.port, cast(ServerFactory, site), interface=options.host
        )
    except CannotListenError as e:
        _log.error("cannot listen: {error}", error=e)
        return 1
    _log.info(
        "fake backend for {model} listening on {host}:{port}, playing {backend}",
        model=options.model,
        host=options.host,
        port=getattr(port.getHost(), "port", options.port),
        backend=options.backend,
    )
    reactor.run()
    return 0


def _exitOnSignal(signum: int, frame: object) -> None:
    """
    A signal handler: exit the program normally.
    """
    raise SystemExit(0)


if __name__ == "__main__":
    sys.exit(main())
