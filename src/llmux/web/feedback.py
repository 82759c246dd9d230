# -*- test-case-name: tests.test_web_feedback -*-
"""
Loading feedback: telling a streaming client that waits for its model what
is going on (C{loading_feedback: comments | reasoning}).

A request whose JSON body says C{"stream": true} and whose model could not
take it at once gets its response started right away: C{200}, C{Content-Type:
text/event-stream}, C{Cache-Control: no-cache}. Until the slot comes, it is
sent one line at once and then one every L{INTERVAL_SECS}:

  - C{comments}: an SSE comment, C{: llmux: waking chat (queue 2, 14 s)},
    which every SSE client skips;
  - C{reasoning}: the same text (and a newline) as the
    C{delta.reasoning_content} of a C{chat.completion.chunk}, which chat UIs
    show as the model "thinking". Only for a request to a
    C{.../chat/completions} endpoint: any other streaming endpoint (legacy
    completions, say) has chunks of another shape, so it gets comments.

Once the status and headers have gone out, nothing can change them: the
backend's body is relayed into the started stream, and every error becomes
an OpenAI-shaped SSE event, C{data: {"error": {"message", "type", "code"}}},
after which the stream ends (no C{data: [DONE]}: the OpenAI clients raise on
the error event, and a C{[DONE]} would only look like a normal end to
others). The C{code} is the HTTP status the error would have had.

The proxy (L{llmux.web.proxy}) only decides when to call in here: after
C{acquire()} returned a L{Deferred} that has not fired yet, so a request
whose model is awake costs nothing (no body parsing, no timer).
"""

from __future__ import annotations

import json
import typing
from typing import Any
from uuid import uuid4

import attrs
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Request

from llmux.interfaces import ISwitcher, ModelState, ModelView
from llmux.logs import observer

__all__ = [
    "INTERVAL_SECS",
    "Feedback",
    "backendErrorEvent",
    "errorEvent",
    "startFeedback",
    "wantsStream",
    "waitingText",
]

_log = Logger(observer=observer)

#: Seconds between two feedback lines.
INTERVAL_SECS = 2.0

#: The most of a backend's error body read to build the error event; the rest
#: is dropped (and the backend connection closed).
MAX_ERROR_BODY = 64 * 1024

#: The longest backend text quoted in an error message.
_MAX_QUOTED = 500

_CHAT_COMPLETIONS = "/chat/completions"


class Owner(typing.Protocol):
    """
    What a L{Feedback} needs of the proxied request it speaks for (the
    proxy's C{_Exchange}).
    """

    request: Request
    clientGone: bool
    ended: bool

    def end(self) -> None:
        """
        The response is over: give the slot back.
        """


def wantsStream(body: bytes) -> bool:
    """
    Whether a request body is a JSON object with C{"stream": true}.
    """
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return False
    return isinstance(document, dict) and document.get("stream") is True


def startFeedback(
    mode: str,
    request: Request,
    body: bytes,
    target: str,
    switcher: ISwitcher,
    clock: IReactorTime,
    model: str,
    name: str,
) -> Feedback | None:
    """
    Start the feedback for a request that waits for its model, if it gets
    any: a streaming request, with feedback on.

    @param mode: C{loading_feedback}: C{off}, C{comments} or C{reasoning}.
    @param body: the request body.
    @param target: the path (and query) the backend is asked for.
    @param model: the model waited for (as the switcher names it).
    @param name: the name the request used (a model's or an alias), which
        the feedback shows.
    @return: the running feedback, whose response has started; or C{None}.
    """
    if mode == "off" or not wantsStream(body):
        return None
    reasoning = mode == "reasoning" and target.split("?", 1)[0].endswith(
        _CHAT_COMPLETIONS
    )
    feedback = Feedback(request, clock, switcher, model, name, reasoning)
    feedback.start()
    return feedback


def waitingText(view: ModelView | None, name: str, waitedSecs: float) -> str:
    """
    One feedback line: C{llmux: waking chat (queue 2, 14 s)}; C{waiting for}
    instead of C{waking} when the model is awake but busy.

    @param view: the model as the switcher shows it, if it does.
    @param name: the model's name as the client used it.
    @param waitedSecs: how long the request has waited.
    """
    queue = 0 if view is None else view.queueDepth
    doing = "waiting for" if view is not None and view.state is _AWAKE else "waking"
    # One line, whatever the name holds: an SSE comment ends at a newline.
    shown = name.replace("\r", " ").replace("\n", " ")
    return f"llmux: {doing} {shown} (queue {queue}, {round(waitedSecs)} s)"


_AWAKE = ModelState.AWAKE


def errorEvent(status: int, message: str, kind: str = "llmux_error") -> bytes:
    """
    An OpenAI-shaped SSE error event.

    @param status: the HTTP status the error would have had.
    """
    error = {"message": message, "type": kind, "code": status}
    return b"data: " + json.dumps({"error": error}).encode("utf-8") + b"\n\n"


def backendErrorEvent(status: int, phrase: bytes, body: bytes) -> bytes:
    """
    The SSE error event for a backend that answered C{status} (not 2xx) to a
    request whose stream had already started.

    The message and type come from the backend's JSON error if it has one,
    whichever shape it takes (OpenAI's and llama.cpp's C{{"error": {...}}},
    vLLM's C{{"object": "error", "message": ...}}, C{{"error": "..."}});
    otherwise the message quotes its body.
    """
    message: str | None = None
    kind: str | None = None
    try:
        document: Any = json.loads(body)
    except (ValueError, RecursionError):
        document = None
    if isinstance(document, dict):
        error = document.get("error")
        source = error if isinstance(error, dict) else document
        if isinstance(error, str) and error:
            message = error
        elif isinstance(source.get("message"), str) and source["message"]:
            message = source["message"]
        if isinstance(source.get("type"), str) and source["type"]:
            kind = source["type"]
    if message is None:
        reason = phrase.decode("latin-1")
        message = f"Backend answered {status} {reason}".rstrip()
        text = body.decode("utf-8", "replace").strip()
        if text:
            message += ": " + text[:_MAX_QUOTED]
    return errorEvent(status, message, kind or "backend_error")


@attrs.define(eq=False)
class Feedback:
    """
    The loading feedback of one waiting request.

    @ivar model: the model waited for, as the switcher names it.
    @ivar name: the model's name as the client used it.
    @ivar reasoning: whether lines go out as C{reasoning_content} chunks
        (otherwise as SSE comments).
    @ivar since: when the wait began (clock time).
    @ivar timer: the pending next line, if any.
    """

    request: Request
    clock: IReactorTime
    switcher: ISwitcher
    model: str
    name: str
    reasoning: bool
    since: float = 0.0
    timer: IDelayedCall | None = None
    completionId: str = attrs.Factory(lambda: "chatcmpl-llmux-" + uuid4().hex[:24])

    def start(self) -> None:
        """
        Start the response, send the first line, and send one every
        L{INTERVAL_SECS} from now on, until L{stop}.
        """
        self.since = self.clock.seconds()
        request = self.request
        request.setResponseCode(200)
        headers = request.responseHeaders
        headers.setRawHeaders(b"content-type", [b"text/event-stream"])
        headers.setRawHeaders(b"cache-control", [b"no-cache"])
        self.resume()

    def resume(self) -> None:
        """
        The request waits (again): send a line now and every
        L{INTERVAL_SECS}.
        """
        if self.timer is None:
            self.tick()

    def stop(self) -> None:
        """
        The wait is over: no more lines.
        """
        timer, self.timer = self.timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def tick(self) -> None:
        """
        Send a line, and arm the next one.
        """
        self.timer = None
        view = None
        for candidate in self.switcher.views():
            if candidate.name == self.model:
                view = candidate
                break
        text = waitingText(view, self.name, self.clock.seconds() - self.since)
        self.request.write(self.line(text))
        self.timer = self.clock.callLater(INTERVAL_SECS, self.tick)

    def line(self, text: str) -> bytes:
        """
        C{text} as an SSE comment or a C{reasoning_content} chunk.
        """
        if not self.reasoning:
            return b": " + text.encode("utf-8") + b"\n\n"
        chunk = {
            "id": self.completionId,
            "object": "chat.completion.chunk",
            "created": int(self.clock.seconds()),
            "model": self.name,
            "choices": [
                {
                    "index": 0,
                    "delta": {"reasoning_content": text + "\n"},
                    "finish_reason": None,
                }
            ],
        }
        return b"data: " + json.dumps(chunk).encode("utf-8") + b"\n\n"

    def fail(self, status: int, message: str) -> None:
        """
        Answer an error of llmux's own (status C{status} had the response
        not started): send it as an error event and end the stream. The
        client must still be there.
        """
        self.stop()
        self.request.write(errorEvent(status, message))
        self.request.finish()

    def errorReader(self, owner: Owner, status: int, phrase: bytes) -> Protocol:
        """
        A protocol to deliver a backend's error response body to: once it
        has it, it sends the backend's error as an error event, ends the
        stream, and ends C{owner}.
        """
        return _ErrorReader(owner, status, phrase)


class _ErrorReader(Protocol):
    """
    Reads a backend's error body (up to L{MAX_ERROR_BODY}), then answers it
    as an error event.

    The backend connection is the producer of the client's response while
    it reads, as for a relayed body: a client that goes away closes it.
    """

    def __init__(self, owner: Owner, status: int, phrase: bytes) -> None:
        self._owner = owner
        self._status = status
        self._phrase = phrase
        self._body: list[bytes] = []
        self._size = 0
        self._producer: IPushProducer | None = None

    def connectionMade(self) -> None:
        self._producer = producer = IPushProducer(self.transport)
        if self._owner.clientGone:
            producer.stopProducing()
            return
        self._owner.request.registerProducer(producer, True)

    def dataReceived(self, data: bytes) -> None:
        if self._size >= MAX_ERROR_BODY:
            return
        self._body.append(data)
        self._size += len(data)
        if self._size >= MAX_ERROR_BODY and self._producer is not None:
            # Enough to say what went wrong: stop reading.
            self._producer.stopProducing()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        owner = self._owner
        if owner.clientGone or owner.ended:
            return
        request = owner.request
        try:
            request.unregisterProducer()
            body = b"".join(self._body)[:MAX_ERROR_BODY]
            request.write(backendErrorEvent(self._status, self._phrase, body))
            request.finish()
        except Exception:
            _log.failure("Answering a backend error in a started stream failed")
            request.loseConnection()
        finally:
            owner.end()
