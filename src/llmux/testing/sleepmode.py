# -*- test-case-name: tests.test_fakebackend_sleep -*-
"""
The sleep modes of real inference servers, as the fake backend plays them.

An engine here is the state a real server keeps about its GPU memory, and the
control endpoints that change it; it knows nothing of sockets, so the fake
backend (L{llmux.testing.fakebackend}) turns requests into L{Ask}s and
L{Answer}s into responses. Three engines:

  - C{plain}: no control endpoints, always serving (the fake's old self);
  - C{vllm}: vLLM's development-mode sleep API (C{VLLM_SERVER_DEV_MODE=1}
    with C{--enable-sleep-mode}): C{/sleep?level=1|2}, C{/wake_up[?tags=]},
    C{/is_sleeping}, C{/collective_rpc} (C{reload_weights} only) and
    C{/reset_prefix_cache};
  - C{sglang}: SGLang's C{/release_memory_occupation} and
    C{/resume_memory_occupation} (C{--enable-memory-saver}).

Where the real servers do something odd, the fake does it too, because a
fake that is kinder than the real thing hides bugs in llmux's presets:

  - vLLM ignores a second C{/sleep} (the first level stands) and a
    C{/wake_up} of an engine that is not asleep, or of a tag that is not
    asleep; it is asleep until every tag (C{weights}, C{kv_cache}) is awake;
  - after a level-2 sleep the weights are gone: the engine wakes, but it
    serves nothing until C{/collective_rpc {"method": "reload_weights"}};
  - SGLang's release and resume take a JSON body (C{{}} will do); without
    one FastAPI answers 422. Resuming memory that is not released kills a
    real SGLang scheduler (a C{KeyError}); the fake answers 500.

The fake is stricter than the real servers where they would fail less
legibly: a sleep level other than 1 or 2, an unknown C{collective_rpc}
method, reloading weights that are still asleep, or an unknown SGLang tag is
an error answer naming the problem.

L{CallLog} remembers what the control endpoints were asked, in order, so a
test can check what llmux sent.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import attrs
from twisted.logger import Logger

__all__ = [
    "BACKENDS",
    "CONTROL_PATHS",
    "Answer",
    "Ask",
    "Call",
    "CallLog",
    "Engine",
    "EngineError",
    "PlainEngine",
    "SGLangEngine",
    "VLLMEngine",
    "makeEngine",
]

JSONObject = dict[str, Any]

BACKENDS = ("plain", "vllm", "sglang")

# Every control endpoint of every engine, and /health: requests to these are
# recorded whatever the engine, so a test also sees a call that the backend
# does not know (a 404 for a plain fake is a finding too).
CONTROL_PATHS = frozenset(
    {
        b"/sleep",
        b"/wake_up",
        b"/is_sleeping",
        b"/collective_rpc",
        b"/reset_prefix_cache",
        b"/release_memory_occupation",
        b"/resume_memory_occupation",
        b"/health",
    }
)

# Enough for any test, small enough that a demo left running for days (and
# probed by a health check every few seconds) stays small.
MAX_CALLS = 1000

_VLLM_TAGS = frozenset({"weights", "kv_cache"})
_SGLANG_TAGS = ("weights", "kv_cache", "cuda_graph")

_log = Logger(namespace="llmux.testing.sleepmode")


@attrs.frozen
class Call:
    """
    One request to a control endpoint.

    @ivar method: the HTTP method, like C{"POST"}.
    @ivar path: the path with its query, as sent, like C{"/sleep?level=1"}.
    @ivar json: the body parsed as JSON; C{None} if empty or not JSON.
    """

    method: str
    path: str
    json: object = None

    @property
    def line(self) -> str:
        """
        C{"METHOD /path?query"}: what a test usually compares.
        """
        return f"{self.method} {self.path}"

    def asJSON(self) -> JSONObject:
        """
        The call as C{GET /_fake/calls} lists it.
        """
        return {"method": self.method, "path": self.path, "json": self.json}


class CallLog:
    """
    The last C{limit} control calls, oldest first.
    """

    def __init__(self, limit: int = MAX_CALLS) -> None:
        self._calls: deque[Call] = deque(maxlen=limit)

    def record(self, call: Call) -> None:
        """
        Remember C{call}, forgetting the oldest if full.
        """
        self._calls.append(call)

    @property
    def calls(self) -> tuple[Call, ...]:
        """
        The remembered calls, oldest first.
        """
        return tuple(self._calls)

    def clear(self) -> None:
        """
        Forget every call, so a test can look at what follows only.
        """
        self._calls.clear()


class EngineError(Exception):
    """
    An answer given instead of doing what was asked: an HTTP status and an
    OpenAI-style JSON error (message, type, and the status as C{code}).
    """

    def __init__(self, code: int, message: str, kind: str = "invalid_request_error"):
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.kind = kind

    def document(self) -> JSONObject:
        """
        The JSON error document.
        """
        error = {"message": self.message, "type": self.kind, "code": self.code}
        return {"error": error}


def _unavailable(message: str, kind: str = "ServiceUnavailableError") -> EngineError:
    """
    A 503: the server is up but cannot generate now.
    """
    return EngineError(503, message, kind)


@attrs.frozen
class Ask:
    """
    What a control endpoint was asked.

    @ivar query: query arguments, each name to its values in order.
    @ivar body: the raw request body.
    """

    query: Mapping[str, Sequence[str]] = attrs.field(factory=dict)
    body: bytes = b""

    def arg(self, name: str) -> str | None:
        """
        The first value of query argument C{name}, if any.
        """
        values = self.query.get(name)
        return values[0] if values else None

    def json(self) -> object:
        """
        The body as JSON; C{None} if the body is empty.

        @raise ValueError: if it is not JSON.
        """
        if not self.body.strip():
            return None
        return json.loads(self.body)


@attrs.frozen
class Answer:
    """
    A control endpoint's answer: a status and a body, JSON or empty.
    """

    code: int = 200
    body: bytes = b""
    contentType: bytes | None = None

    @classmethod
    def document(cls, value: object, code: int = 200) -> Answer:
        """
        An answer whose body is C{value} as JSON.
        """
        return cls(code, json.dumps(value).encode("utf-8"), b"application/json")


Handler = Callable[[Ask], Answer]
Routes = Mapping[bytes, Mapping[bytes, Handler]]


class Engine(Protocol):
    """
    What the fake backend needs of an engine.
    """

    kind: str

    def routes(self) -> Routes:
        """
        The control endpoints: path to method to handler.
        """

    def refusal(self) -> EngineError | None:
        """
        Why generation is refused now, or C{None} if it is served.
        """

    def state(self) -> JSONObject:
        """
        The engine's state as JSON, for C{GET /_fake/state}.
        """


@attrs.define
class PlainEngine:
    """
    A server with no sleep mode: no control endpoints, always serving.
    """

    model: str
    kind: str = "plain"

    def routes(self) -> Routes:
        """
        None.
        """
        return {}

    def refusal(self) -> EngineError | None:
        """
        Never.
        """
        return None

    def state(self) -> JSONObject:
        """
        Nothing to tell.
        """
        return {}


def _sleepLevel(ask: Ask) -> int:
    """
    The C{level} query argument of C{/sleep}: 1 (the default) or 2.

    @raise EngineError: 400 for anything else. vLLM itself answers 500 to a
        level that is not an integer and treats any level but 1 as 2; a test
        fake had better say that the caller is wrong.
    """
    text = ask.arg("level")
    if text is None:
        return 1
    if text not in ("1", "2"):
        raise EngineError(400, f"level must be 1 or 2, not {text!r}")
    return int(text)


@attrs.define
class VLLMEngine:
    """
    vLLM's sleep mode.

    @ivar sleepingTags: the memory kinds asleep; the engine is asleep while
        any is.
    @ivar level: the level of the current (or last) sleep.
    @ivar weightsDiscarded: a level-2 sleep dropped the weights, and no
        C{reload_weights} has put them back.
    """

    model: str
    kind: str = "vllm"
    sleepingTags: set[str] = attrs.field(factory=set)
    level: int | None = None
    weightsDiscarded: bool = False

    @property
    def isSleeping(self) -> bool:
        """
        Whether any memory is asleep, as C{GET /is_sleeping} says.
        """
        return bool(self.sleepingTags)

    def routes(self) -> Routes:
        """
        vLLM's development-mode endpoints.
        """
        return {
            b"/sleep": {b"POST": self._sleep},
            b"/wake_up": {b"POST": self._wakeUp},
            b"/is_sleeping": {b"GET": self._isSleeping},
            b"/collective_rpc": {b"POST": self._collectiveRPC},
            b"/reset_prefix_cache": {b"POST": self._resetPrefixCache},
        }

    def sleep(self, level: int) -> None:
        """
        Put the engine to sleep; a second sleep changes nothing, as in vLLM.
        """
        if self.isSleeping:
            _log.warn("{model}: already asleep; /sleep ignored", model=self.model)
            return
        self.sleepingTags = set(_VLLM_TAGS)
        self.level = level
        # Level 1 keeps a copy of the weights in CPU memory; level 2 does not.
        self.weightsDiscarded = self.weightsDiscarded or level == 2
        # Not "level": the logger keeps that key for the log level.
        _log.info(
            "{model}: asleep (level {sleepLevel})", model=self.model, sleepLevel=level
        )

    def wakeUp(self, tags: Sequence[str]) -> None:
        """
        Wake the memory of C{tags}, or all of it; as in vLLM, waking an engine
        that is not asleep, or a tag that is not asleep, changes nothing.
        """
        if not self.isSleeping:
            _log.warn("{model}: not asleep; /wake_up ignored", model=self.model)
            return
        unknown = sorted(set(tags) - self.sleepingTags)
        if unknown:
            _log.warn(
                "{model}: tags {tags} are not asleep; /wake_up ignored",
                model=self.model,
                tags=unknown,
            )
            return
        self.sleepingTags -= set(tags or _VLLM_TAGS)
        _log.info(
            "{model}: {state}",
            model=self.model,
            state="awake" if not self.isSleeping else f"still asleep: {self._tags()}",
        )

    def reloadWeights(self) -> None:
        """
        Load the weights from disk again, as after a level-2 sleep.

        @raise EngineError: 500 while the weights' memory is asleep: a real
            engine would write to unmapped GPU memory.
        """
        if "weights" in self.sleepingTags:
            raise EngineError(
                500,
                "reload_weights while the weights are asleep: "
                "POST /wake_up (or /wake_up?tags=weights) first",
                "InternalServerError",
            )
        self.weightsDiscarded = False
        _log.info("{model}: weights reloaded", model=self.model)

    def refusal(self) -> EngineError | None:
        """
        Asleep, or awake without weights, the engine cannot generate.
        """
        if self.isSleeping:
            # vLLM's own words and type for this case.
            return _unavailable(
                "Model is currently in sleep mode. Please wake it up first "
                "with a POST request to /wake_up",
                "ModelSleepingError",
            )
        if self.weightsDiscarded:
            return _unavailable(
                "Model weights are not loaded (discarded by a level 2 sleep): "
                'POST /collective_rpc {"method": "reload_weights"} first'
            )
        return None

    def state(self) -> JSONObject:
        """
        Sleeping or not, at which level, which tags, and whether the weights
        are loaded.
        """
        return {
            "is_sleeping": self.isSleeping,
            "sleep_level": self.level,
            "sleeping_tags": sorted(self.sleepingTags),
            "weights_loaded": not self.weightsDiscarded,
        }

    def _tags(self) -> str:
        """
        The sleeping tags, for log lines.
        """
        return ", ".join(sorted(self.sleepingTags))

    def _sleep(self, ask: Ask) -> Answer:
        """
        C{POST /sleep?level=N}: 200, no content.
        """
        self.sleep(_sleepLevel(ask))
        return Answer()

    def _wakeUp(self, ask: Ask) -> Answer:
        """
        C{POST /wake_up[?tags=T&tags=U]}: 200, no content.
        """
        self.wakeUp(ask.query.get("tags", ()))
        return Answer()

    def _isSleeping(self, ask: Ask) -> Answer:
        """
        C{GET /is_sleeping}: C{{"is_sleeping": bool}}.
        """
        return Answer.document({"is_sleeping": self.isSleeping})

    def _collectiveRPC(self, ask: Ask) -> Answer:
        """
        C{POST /collective_rpc {"method": ...}}: only C{reload_weights} is
        known; it answers one C{null} result per worker (one), as vLLM does.
        """
        try:
            body = ask.json()
        except ValueError as e:
            raise EngineError(400, f"JSON decode error: {e}") from None
        if not isinstance(body, dict) or body.get("method") is None:
            raise EngineError(400, "Missing 'method' in request body")
        method = body["method"]
        if method != "reload_weights":
            raise EngineError(
                400, f"Unknown method {method!r}: the fake knows only reload_weights"
            )
        self.reloadWeights()
        return Answer.document({"results": [None]})

    def _resetPrefixCache(self, ask: Ask) -> Answer:
        """
        C{POST /reset_prefix_cache}: 200, no content; there is no cache.
        """
        return Answer()


@attrs.define
class SGLangEngine:
    """
    SGLang's memory saver.

    @ivar releasedTags: the memory kinds released (C{weights}, C{kv_cache},
        C{cuda_graph}); generation is refused while any is.
    """

    model: str
    kind: str = "sglang"
    releasedTags: set[str] = attrs.field(factory=set)

    def routes(self) -> Routes:
        """
        SGLang's release and resume, which take GET as well as POST.
        """
        release = {b"GET": self._release, b"POST": self._release}
        resume = {b"GET": self._resume, b"POST": self._resume}
        return {
            b"/release_memory_occupation": release,
            b"/resume_memory_occupation": resume,
        }

    def release(self, tags: Sequence[str]) -> None:
        """
        Release the memory of C{tags}, or all of it.
        """
        self.releasedTags |= set(tags or _SGLANG_TAGS)
        _log.info(
            "{model}: memory released ({tags})",
            model=self.model,
            tags=", ".join(sorted(self.releasedTags)),
        )

    def resume(self, tags: Sequence[str]) -> None:
        """
        Take back the memory of C{tags}, or all of it.

        @raise EngineError: 500 if some of it is not released: SGLang's
            scheduler removes each tag from its released set, and a missing
            one raises C{KeyError} and takes the server down.
        """
        wanted = set(tags or _SGLANG_TAGS)
        missing = sorted(wanted - self.releasedTags)
        if missing:
            raise EngineError(
                500,
                f"resume of memory that is not released: {', '.join(missing)} "
                "(a real SGLang scheduler dies of a KeyError here)",
                "InternalServerError",
            )
        self.releasedTags -= wanted
        _log.info("{model}: memory resumed", model=self.model)

    def refusal(self) -> EngineError | None:
        """
        With memory released, the engine cannot generate.
        """
        if not self.releasedTags:
            return None
        return _unavailable(
            "GPU memory is released "
            f"({', '.join(sorted(self.releasedTags))}): "
            "POST /resume_memory_occupation first"
        )

    def state(self) -> JSONObject:
        """
        Which memory is released.
        """
        return {"released_tags": sorted(self.releasedTags)}

    def _tagsOf(self, ask: Ask) -> Sequence[str] | Answer:
        """
        The C{tags} of a release or resume body, or the answer to give
        instead: FastAPI's 422 without a JSON object, 400 for bad tags.
        """
        try:
            body = ask.json()
        except ValueError:
            return _unprocessable("json_invalid", "JSON decode error", None)
        if body is None:
            return _unprocessable("missing", "Field required", None)
        if not isinstance(body, dict):
            return _unprocessable(
                "model_attributes_type",
                "Input should be a valid dictionary or object to extract fields from",
                body,
            )
        tags = body.get("tags")
        if tags is None:
            return ()
        if not isinstance(tags, list) or not set(tags) <= set(_SGLANG_TAGS):
            raise EngineError(
                400, f"tags must be a list of {', '.join(_SGLANG_TAGS)}: {tags!r}"
            )
        return tags

    def _release(self, ask: Ask) -> Answer:
        """
        C{POST /release_memory_occupation {"tags": [...]?}}: 200, C{null}.
        """
        tags = self._tagsOf(ask)
        if isinstance(tags, Answer):
            return tags
        self.release(tags)
        return Answer.document(None)

    def _resume(self, ask: Ask) -> Answer:
        """
        C{POST /resume_memory_occupation {"tags": [...]?}}: 200, C{null}.
        """
        tags = self._tagsOf(ask)
        if isinstance(tags, Answer):
            return tags
        self.resume(tags)
        return Answer.document(None)


def _unprocessable(kind: str, message: str, value: object) -> Answer:
    """
    FastAPI's 422 for a request body that does not validate, as SGLang's
    endpoints give it: one error of type C{kind} about the body.
    """
    error = {"type": kind, "loc": ["body"], "msg": message, "input": value}
    return Answer.document({"detail": [error]}, 422)


def makeEngine(kind: str, model: str) -> Engine:
    """
    The engine called C{kind} (one of L{BACKENDS}) for C{model}.

    @raise ValueError: for an unknown kind.
    """
    engines: dict[str, Callable[[str], Engine]] = {
        "plain": PlainEngine,
        "vllm": VLLMEngine,
        "sglang": SGLangEngine,
    }
    if kind not in engines:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}: {kind!r}")
    return engines[kind](model)
