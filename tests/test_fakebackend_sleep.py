"""
Tests for the sleep modes of L{llmux.testing.fakebackend}, played by
L{llmux.testing.sleepmode}.

The unit tests speak HTTP to the backend in memory, with L{StubTreq}, on a
L{Clock}: no reactor, no sockets, no waiting. One test runs the program as a
subprocess and drives vLLM's sleep API over real HTTP.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import attrs
from treq.client import HTTPClient
from treq.testing import StubTreq
from twisted.internet import reactor
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, HTTPConnectionPool

from llmux.testing.fakebackend import FakeBackend, makeSite
from llmux.testing.sleepmode import (
    MAX_CALLS,
    Ask,
    Call,
    CallLog,
    EngineError,
    VLLMEngine,
    makeEngine,
)

from .helpers import freePort
from .test_fakebackend import ProcessEnded, subprocessEnv

CHAT = {"model": "llama", "messages": [{"role": "user", "content": "hi"}]}
RELOAD = {"method": "reload_weights"}


@attrs.frozen
class Reply:
    """
    A response, read whole: status, headers and body.
    """

    code: int
    headers: dict[str, list[str]]
    body: bytes

    def json(self) -> Any:
        """
        The body as JSON.
        """
        return json.loads(self.body)


class InMemoryMixin:
    """
    A fake backend on a L{Clock}, spoken to in memory.
    """

    successResultOf: Any
    assertEqual: Any
    assertIn: Any

    def start(self, backend: str = "plain", readyAfter: float = 0.0) -> FakeBackend:
        """
        Make the backend under test (also L{backend}) and its client.
        """
        self.clock = Clock()
        self.backend = FakeBackend(
            "llama", self.clock, backend=backend, readyAfter=readyAfter
        )
        # StubTreq makes its methods at run time: mypy cannot see them.
        self.http: Any = StubTreq(self.backend)
        return self.backend

    def call(
        self, method: str, path: str, body: object = None, data: bytes | None = None
    ) -> Reply:
        """
        Send a request (C{body} as JSON, or C{data} as is) and read the reply.
        """
        kw: dict[str, Any] = {}
        if body is not None:
            kw["json"] = body
        if data is not None:
            kw["data"] = data
        d = self.http.request(method, "http://fake" + path, **kw)
        self.http.flush()
        response = self.successResultOf(d)
        content = self.http.content(response)
        self.http.flush()
        headers = {
            name.decode().lower(): [v.decode() for v in values]
            for name, values in response.headers.getAllRawHeaders()
        }
        return Reply(response.code, headers, self.successResultOf(content))

    def document(self, method: str, path: str, body: object = None) -> Any:
        """
        The JSON answer to a request that must succeed.
        """
        reply = self.call(method, path, body)
        self.assertEqual((reply.code, reply.body), (200, reply.body))
        self.assertEqual(reply.headers["content-type"], ["application/json"])
        return reply.json()

    def ok(self, method: str, path: str, body: object = None) -> None:
        """
        Send a control request that vLLM answers with 200 and no content.
        """
        reply = self.call(method, path, body)
        self.assertEqual((reply.code, reply.body), (200, b""))

    def error(self, reply: Reply, code: int) -> dict[str, Any]:
        """
        C{reply} is an OpenAI-style JSON error with status C{code}; return
        its C{error} object.
        """
        self.assertEqual((reply.code, reply.body), (code, reply.body))
        self.assertEqual(reply.headers["content-type"], ["application/json"])
        error: dict[str, Any] = reply.json()["error"]
        # The plain fake's own errors (404, 405) have no code.
        self.assertEqual(error.get("code", code), code)
        return error

    def assertServes(self) -> None:
        """
        Both completion endpoints generate.
        """
        chat = self.document("POST", "/v1/chat/completions", CHAT)
        self.assertIn("Hello from llama", chat["choices"][0]["message"]["content"])
        text = self.document("POST", "/v1/completions", {"prompt": "hi"})
        self.assertIn("Hello from llama", text["choices"][0]["text"])

    def assertRefuses(self, words: str) -> None:
        """
        Both completion endpoints, streamed or not, answer 503 with a JSON
        error containing C{words}; models and health still answer.
        """
        for path in ("/v1/chat/completions", "/v1/completions"):
            for stream in (False, True):
                reply = self.call("POST", path, {**CHAT, "stream": stream})
                self.assertIn(words, self.error(reply, 503)["message"])
        self.document("GET", "/v1/models")
        self.assertEqual(self.document("GET", "/health"), {"status": "ok"})

    def isSleeping(self) -> bool:
        """
        What C{GET /is_sleeping} says.
        """
        answer = self.document("GET", "/is_sleeping")
        self.assertEqual(list(answer), ["is_sleeping"])
        sleeping: bool = answer["is_sleeping"]
        return sleeping

    def state(self) -> dict[str, Any]:
        """
        What C{GET /_fake/state} says.
        """
        state: dict[str, Any] = self.document("GET", "/_fake/state")
        return state

    def lines(self) -> list[str]:
        """
        The recorded calls as C{"METHOD /path?query"}.
        """
        return [call.line for call in self.backend.calls]


class VLLMTests(InMemoryMixin, SynchronousTestCase):
    """
    C{backend="vllm"}: vLLM's development-mode sleep API.
    """

    def setUp(self) -> None:
        self.start("vllm")

    def test_awake(self) -> None:
        """
        A new engine is awake, at no level, with its weights, and serves.
        """
        self.assertFalse(self.isSleeping())
        self.assertEqual(
            self.state(),
            {
                "backend": "vllm",
                "ready": True,
                "is_sleeping": False,
                "sleep_level": None,
                "sleeping_tags": [],
                "weights_loaded": True,
            },
        )
        self.assertServes()

    def test_sleepLevel1(self) -> None:
        """
        C{POST /sleep?level=1} answers 200 with no content and puts the
        engine to sleep: generation is refused with vLLM's 503, health and
        models answer. C{POST /wake_up} wakes it, and it serves again.
        """
        self.ok("POST", "/sleep?level=1")
        self.assertTrue(self.isSleeping())
        self.assertEqual(self.state()["sleep_level"], 1)
        self.assertRefuses("sleep mode")
        reply = self.call("POST", "/v1/chat/completions", CHAT)
        self.assertEqual(self.error(reply, 503)["type"], "ModelSleepingError")
        self.ok("POST", "/wake_up")
        self.assertFalse(self.isSleeping())
        self.assertServes()

    def test_sleepDefaultLevel(self) -> None:
        """
        Without C{level}, a sleep is level 1: waking is enough.
        """
        self.ok("POST", "/sleep")
        self.assertEqual(self.state()["sleep_level"], 1)
        self.ok("POST", "/wake_up")
        self.assertServes()

    def test_sleepLevel2(self) -> None:
        """
        After a level-2 sleep, the woken engine has no weights: generation is
        refused until C{POST /collective_rpc {"method": "reload_weights"}},
        which answers one C{null} result.
        """
        self.ok("POST", "/sleep?level=2")
        self.assertTrue(self.isSleeping())
        self.assertRefuses("sleep mode")
        self.ok("POST", "/wake_up")
        self.assertFalse(self.isSleeping())
        self.assertFalse(self.state()["weights_loaded"])
        self.assertRefuses("reload_weights")
        answer = self.document("POST", "/collective_rpc", RELOAD)
        self.assertEqual(answer, {"results": [None]})
        self.assertTrue(self.state()["weights_loaded"])
        self.assertServes()

    def test_presetSequence(self) -> None:
        """
        The calls of llmux's C{backend: vllm} preset with C{sleep_level: 2}
        (sleep; wake, reload, reset the prefix cache) work, and are recorded
        in order with their JSON bodies.
        """
        self.ok("POST", "/sleep?level=2")
        self.ok("POST", "/wake_up")
        self.document("POST", "/collective_rpc", RELOAD)
        self.ok("POST", "/reset_prefix_cache")
        self.assertServes()
        self.assertEqual(
            self.backend.calls,
            (
                Call("POST", "/sleep?level=2"),
                Call("POST", "/wake_up"),
                Call("POST", "/collective_rpc", RELOAD),
                Call("POST", "/reset_prefix_cache"),
            ),
        )

    def test_wakeByTags(self) -> None:
        """
        C{/wake_up?tags=weights} wakes the weights only: the engine is still
        asleep (its KV cache is), weights can be reloaded, and
        C{?tags=kv_cache} then wakes it: vLLM's RLHF sequence.
        """
        self.ok("POST", "/sleep?level=2")
        self.ok("POST", "/wake_up?tags=weights")
        self.assertTrue(self.isSleeping())
        self.assertEqual(self.state()["sleeping_tags"], ["kv_cache"])
        self.document("POST", "/collective_rpc", RELOAD)
        self.assertRefuses("sleep mode")
        self.ok("POST", "/wake_up?tags=kv_cache")
        self.assertFalse(self.isSleeping())
        self.assertServes()

    def test_reloadWhileWeightsAsleep(self) -> None:
        """
        Reloading weights whose memory is asleep is a 500, and leaves them
        unloaded.
        """
        self.ok("POST", "/sleep?level=2")
        reply = self.call("POST", "/collective_rpc", RELOAD)
        self.assertIn("/wake_up", self.error(reply, 500)["message"])
        self.ok("POST", "/wake_up")
        self.assertRefuses("reload_weights")

    def test_reloadWhenAwake(self) -> None:
        """
        Reloading the weights of an awake engine is harmless.
        """
        self.document("POST", "/collective_rpc", RELOAD)
        self.assertServes()

    def test_sleepTwice(self) -> None:
        """
        A second sleep is ignored, as by vLLM: the first level stands.
        """
        self.ok("POST", "/sleep?level=1")
        self.ok("POST", "/sleep?level=2")
        self.assertEqual(self.state()["sleep_level"], 1)
        self.ok("POST", "/wake_up")
        self.assertServes()

    def test_level1AfterLevel2(self) -> None:
        """
        A level-1 sleep does not bring back weights a level-2 sleep dropped.
        """
        self.ok("POST", "/sleep?level=2")
        self.ok("POST", "/wake_up")
        self.ok("POST", "/sleep?level=1")
        self.ok("POST", "/wake_up")
        self.assertRefuses("reload_weights")

    def test_wakeWhenAwake(self) -> None:
        """
        Waking an awake engine is a 200 that changes nothing.
        """
        self.ok("POST", "/wake_up")
        self.ok("POST", "/wake_up?tags=weights")
        self.assertFalse(self.isSleeping())
        self.assertServes()

    def test_wakeUnknownTag(self) -> None:
        """
        Waking a tag that is not asleep is a 200 that changes nothing, as in
        vLLM (which only logs a warning).
        """
        self.ok("POST", "/sleep")
        self.ok("POST", "/wake_up?tags=weights&tags=gpu")
        self.assertEqual(self.state()["sleeping_tags"], ["kv_cache", "weights"])

    def test_badLevel(self) -> None:
        """
        A level other than 1 or 2 is a 400, and the engine stays awake.
        """
        for level in ("0", "3", "deep", ""):
            reply = self.call("POST", f"/sleep?level={level}")
            self.assertIn("level", self.error(reply, 400)["message"])
        self.assertFalse(self.isSleeping())

    def test_collectiveRPCErrors(self) -> None:
        """
        A C{collective_rpc} other than C{reload_weights}, without a method,
        or without a JSON object, is a 400 OpenAI-style error.
        """
        cases = [
            ({"method": "update_weights"}, None, "update_weights"),
            ({"args": []}, None, "Missing 'method'"),
            (None, b"{not json", "JSON decode error"),
            (None, b"", "Missing 'method'"),
            ([1], None, "Missing 'method'"),
        ]
        for body, data, words in cases:
            reply = self.call("POST", "/collective_rpc", body, data)
            error = self.error(reply, 400)
            self.assertIn(words, error["message"])
            self.assertEqual(error["type"], "invalid_request_error")

    def test_resetPrefixCache(self) -> None:
        """
        C{POST /reset_prefix_cache} answers 200, asleep or not.
        """
        self.ok("POST", "/reset_prefix_cache")
        self.ok("POST", "/sleep")
        self.ok("POST", "/reset_prefix_cache?reset_running_requests=true")

    def test_methods(self) -> None:
        """
        Each control endpoint takes the method vLLM gives it; another is a
        405 naming it.
        """
        for method, path, allow in (
            ("GET", "/sleep", "POST"),
            ("GET", "/wake_up", "POST"),
            ("POST", "/is_sleeping", "GET"),
            ("GET", "/collective_rpc", "POST"),
            ("GET", "/reset_prefix_cache", "POST"),
        ):
            reply = self.call(method, path)
            self.error(reply, 405)
            self.assertEqual(reply.headers["allow"], [allow])
        self.assertFalse(self.isSleeping())

    def test_noSGLangEndpoints(self) -> None:
        """
        SGLang's endpoints are unknown to vLLM: 404.
        """
        reply = self.call("POST", "/release_memory_occupation", {})
        self.error(reply, 404)
        self.assertServes()


class SGLangTests(InMemoryMixin, SynchronousTestCase):
    """
    C{backend="sglang"}: SGLang's memory release and resume.
    """

    def setUp(self) -> None:
        self.start("sglang")

    def test_releaseAndResume(self) -> None:
        """
        Releasing memory (C{{}}) answers JSON C{null} and stops generation
        with a 503; health and models still answer. Resuming serves again.
        """
        self.assertServes()
        self.assertIsNone(self.document("POST", "/release_memory_occupation", {}))
        self.assertEqual(
            self.state(),
            {
                "backend": "sglang",
                "ready": True,
                "released_tags": ["cuda_graph", "kv_cache", "weights"],
            },
        )
        self.assertRefuses("resume_memory_occupation")
        self.assertIsNone(self.document("POST", "/resume_memory_occupation", {}))
        self.assertEqual(self.state()["released_tags"], [])
        self.assertServes()

    def test_get(self) -> None:
        """
        SGLang takes GET for these too.
        """
        self.document("GET", "/release_memory_occupation", {})
        self.assertRefuses("released")
        self.document("GET", "/resume_memory_occupation", {})
        self.assertServes()

    def test_bodyRequired(self) -> None:
        """
        Without a JSON object, release and resume are FastAPI's 422, and
        change nothing.
        """
        for path in ("/release_memory_occupation", "/resume_memory_occupation"):
            for data, kind in (
                (b"", "missing"),
                (b"nonsense", "json_invalid"),
                (b"[]", "model_attributes_type"),
            ):
                reply = self.call("POST", path, data=data)
                self.assertEqual(reply.code, 422)
                [detail] = reply.json()["detail"]
                self.assertEqual((detail["type"], detail["loc"]), (kind, ["body"]))
        self.assertServes()

    def test_tags(self) -> None:
        """
        C{tags} releases and resumes part of the memory; generation waits
        until all of it is back.
        """
        self.document("POST", "/release_memory_occupation", {"tags": ["kv_cache"]})
        self.assertEqual(self.state()["released_tags"], ["kv_cache"])
        self.assertRefuses("kv_cache")
        self.document("POST", "/release_memory_occupation", {"tags": None})
        self.document("POST", "/resume_memory_occupation", {"tags": ["weights"]})
        self.assertEqual(self.state()["released_tags"], ["cuda_graph", "kv_cache"])
        body = {"tags": ["kv_cache", "cuda_graph"]}
        self.document("POST", "/resume_memory_occupation", body)
        self.assertServes()

    def test_resumeNotReleased(self) -> None:
        """
        Resuming memory that is not released is a 500 (a real SGLang dies),
        and changes nothing.
        """
        reply = self.call("POST", "/resume_memory_occupation", {})
        self.assertIn("not released", self.error(reply, 500)["message"])
        self.document("POST", "/release_memory_occupation", {"tags": ["kv_cache"]})
        reply = self.call("POST", "/resume_memory_occupation", {})
        self.assertIn("weights", self.error(reply, 500)["message"])
        self.assertEqual(self.state()["released_tags"], ["kv_cache"])

    def test_badTags(self) -> None:
        """
        C{tags} that is not a list of SGLang's tags is a 400.
        """
        for tags in ("weights", ["gpu"], [1]):
            body = {"tags": tags}
            reply = self.call("POST", "/release_memory_occupation", body)
            self.assertIn("tags", self.error(reply, 400)["message"])
        self.assertServes()

    def test_noVLLMEndpoints(self) -> None:
        """
        vLLM's endpoints are unknown to SGLang: 404.
        """
        self.error(self.call("POST", "/sleep?level=1"), 404)
        self.error(self.call("GET", "/is_sleeping"), 404)
        self.assertServes()


class PlainTests(InMemoryMixin, SynchronousTestCase):
    """
    C{backend="plain"}, the default: no sleep mode.
    """

    def test_default(self) -> None:
        """
        A backend made without C{backend} is plain.
        """
        self.assertEqual(FakeBackend("x", Clock()).engine.kind, "plain")
        self.assertEqual(makeSite("x", Clock()).backend.engine.kind, "plain")

    def test_noControlEndpoints(self) -> None:
        """
        Sleep endpoints are 404s (recorded all the same), and it serves.
        """
        self.start()
        self.error(self.call("POST", "/sleep?level=1"), 404)
        self.error(self.call("POST", "/release_memory_occupation", {}), 404)
        self.assertServes()
        self.document("GET", "/health")
        self.assertEqual(self.state(), {"backend": "plain", "ready": True})
        self.assertEqual(
            self.lines(),
            ["POST /sleep?level=1", "POST /release_memory_occupation", "GET /health"],
        )

    def test_unknownBackend(self) -> None:
        """
        An unknown backend is a L{ValueError} naming the known ones.
        """
        with self.assertRaises(ValueError) as raised:
            FakeBackend("x", Clock(), backend="tgi")
        self.assertIn("plain, vllm, sglang", str(raised.exception))

    def test_makeSite(self) -> None:
        """
        L{makeSite} passes C{backend} and C{readyAfter} on; the site's
        C{backend} is the resource it serves.
        """
        site = makeSite("x", Clock(), backend="vllm", readyAfter=3)
        self.assertIs(site.backend, site.resource)
        self.assertIsInstance(site.backend.engine, VLLMEngine)
        self.assertFalse(site.backend.ready)


class CallsTests(InMemoryMixin, SynchronousTestCase):
    """
    The fake reports what its control endpoints were asked.
    """

    def setUp(self) -> None:
        self.start("vllm")

    def test_recorded(self) -> None:
        """
        Control calls are recorded in order: method, path with query as
        sent, and JSON body (C{None} if empty or not JSON), errors too;
        generation, models and the fake's own endpoints are not.
        """
        self.ok("POST", "/sleep?level=2")
        self.call("POST", "/v1/chat/completions", CHAT)
        self.call("GET", "/v1/models")
        self.isSleeping()
        self.call("POST", "/collective_rpc", data=b"{oops")
        self.call("POST", "/collective_rpc", {"method": "x", "args": ["1"]})
        self.ok("POST", "/wake_up?tags=weights&tags=kv_cache")
        self.call("GET", "/health?probe=1")
        self.state()
        self.call("GET", "/echo/sleep")
        self.assertEqual(
            self.backend.calls,
            (
                Call("POST", "/sleep?level=2", None),
                Call("GET", "/is_sleeping", None),
                Call("POST", "/collective_rpc", None),
                Call("POST", "/collective_rpc", {"method": "x", "args": ["1"]}),
                Call("POST", "/wake_up?tags=weights&tags=kv_cache", None),
                Call("GET", "/health?probe=1", None),
            ),
        )
        self.assertEqual(self.lines()[0], "POST /sleep?level=2")

    def test_listed(self) -> None:
        """
        C{GET /_fake/calls} lists the calls as JSON, and is not one.
        """
        self.ok("POST", "/sleep?level=1")
        self.ok("POST", "/wake_up")
        self.document("POST", "/collective_rpc", RELOAD)
        self.assertEqual(
            self.document("GET", "/_fake/calls"),
            {
                "calls": [
                    {"method": "POST", "path": "/sleep?level=1", "json": None},
                    {"method": "POST", "path": "/wake_up", "json": None},
                    {"method": "POST", "path": "/collective_rpc", "json": RELOAD},
                ]
            },
        )
        self.assertEqual(len(self.backend.calls), 3)

    def test_cleared(self) -> None:
        """
        C{DELETE /_fake/calls} and L{FakeBackend.clearCalls} forget the
        calls; later ones are recorded.
        """
        self.ok("POST", "/sleep")
        self.assertEqual(self.document("DELETE", "/_fake/calls"), {"calls": []})
        self.assertEqual(self.backend.calls, ())
        self.ok("POST", "/wake_up")
        self.assertEqual(self.lines(), ["POST /wake_up"])
        self.backend.clearCalls()
        self.assertEqual(self.document("GET", "/_fake/calls"), {"calls": []})

    def test_bounded(self) -> None:
        """
        Only the last L{MAX_CALLS} calls are kept.
        """
        for n in range(MAX_CALLS + 5):
            self.call("GET", f"/health?n={n}")
        lines = self.lines()
        self.assertEqual(len(lines), MAX_CALLS)
        self.assertEqual(lines[0], "GET /health?n=5")
        self.assertEqual(lines[-1], f"GET /health?n={MAX_CALLS + 4}")

    def test_callLog(self) -> None:
        """
        L{CallLog} keeps its C{limit} most recent calls, oldest first.
        """
        log = CallLog(limit=2)
        for path in ("/a", "/b", "/c"):
            log.record(Call("GET", path))
        self.assertEqual([c.path for c in log.calls], ["/b", "/c"])
        self.assertEqual(
            log.calls[0].asJSON(), {"method": "GET", "path": "/b", "json": None}
        )
        log.clear()
        self.assertEqual(log.calls, ())


class ReadyAfterTests(InMemoryMixin, SynchronousTestCase):
    """
    C{readyAfter}: a server still loading its weights.
    """

    def test_loading(self) -> None:
        """
        Until C{readyAfter} seconds have passed on the clock, health is a
        503 and generation is refused; models answer. Then all serve.
        """
        self.start("vllm", readyAfter=5)
        for _ in range(2):
            reply = self.call("GET", "/health")
            self.assertIn("loading", self.error(reply, 503)["message"])
            for path in ("/v1/chat/completions", "/v1/completions"):
                reply = self.call("POST", path, CHAT)
                self.assertIn("loading", self.error(reply, 503)["message"])
            self.document("GET", "/v1/models")
            self.assertFalse(self.backend.ready)
            self.assertFalse(self.state()["ready"])
            self.clock.advance(4.9)
        self.clock.advance(0.1)
        self.assertTrue(self.backend.ready)
        self.assertEqual(self.document("GET", "/health"), {"status": "ok"})
        self.assertServes()

    def test_sayWhen(self) -> None:
        """
        The 503 says how long loading has left.
        """
        self.start(readyAfter=2)
        self.clock.advance(0.5)
        reply = self.call("GET", "/health")
        self.assertIn("ready in 1.5 s", self.error(reply, 503)["message"])

    def test_fromConstruction(self) -> None:
        """
        Loading counts from when the backend is made, on its clock.
        """
        clock = Clock()
        clock.advance(100)
        backend = FakeBackend("x", clock, readyAfter=1)
        self.assertFalse(backend.ready)
        clock.advance(1)
        self.assertTrue(backend.ready)

    def test_zero(self) -> None:
        """
        By default the server is ready at once.
        """
        self.start()
        self.assertTrue(self.backend.ready)
        self.assertEqual(self.document("GET", "/health"), {"status": "ok"})


class EngineTests(SynchronousTestCase):
    """
    The engines and helpers of L{llmux.testing.sleepmode}, without HTTP.
    """

    def test_makeEngine(self) -> None:
        """
        L{makeEngine} makes each kind for a model.
        """
        for kind in ("plain", "vllm", "sglang"):
            engine = makeEngine(kind, "m")
            self.assertEqual(engine.kind, kind)
        self.assertRaises(ValueError, makeEngine, "vLLM", "m")

    def test_vllmRefusal(self) -> None:
        """
        A vLLM engine says why it cannot generate, or nothing.
        """
        engine = VLLMEngine("m")
        self.assertIsNone(engine.refusal())
        engine.sleep(2)
        refusal = engine.refusal()
        assert refusal is not None
        self.assertEqual((refusal.code, refusal.kind), (503, "ModelSleepingError"))
        engine.wakeUp(())
        self.assertIn("not loaded", str(engine.refusal()))
        engine.reloadWeights()
        self.assertIsNone(engine.refusal())

    def test_engineError(self) -> None:
        """
        An L{EngineError} renders as an OpenAI-style error with its status.
        """
        error = EngineError(503, "busy", "ServiceUnavailableError")
        self.assertEqual(
            error.document(),
            {
                "error": {
                    "message": "busy",
                    "type": "ServiceUnavailableError",
                    "code": 503,
                }
            },
        )

    def test_ask(self) -> None:
        """
        L{Ask} gives the first value of a query argument, and the body as
        JSON (C{None} if empty).
        """
        ask = Ask({"tags": ["a", "b"]}, b' {"x": 1} ')
        self.assertEqual((ask.arg("tags"), ask.arg("level")), ("a", None))
        self.assertEqual(ask.json(), {"x": 1})
        self.assertIsNone(Ask().json())
        self.assertRaises(ValueError, Ask(body=b"{").json)


class VLLMProgramTests(TestCase):
    """
    C{python -m llmux.testing.fakebackend --backend vllm}, as a managed
    process runs it.
    """

    timeout = 20

    async def test_sleepWake(self) -> None:
        """
        Over real HTTP: a level-2 sleep, a wake, a weight reload, with
        generation refused until then; the calls are listed; SIGTERM ends
        the program with exit code 0.
        """
        port = freePort()
        child = ProcessEnded()
        argv = [sys.executable, "-m", "llmux.testing.fakebackend"]
        argv += ["--port", str(port), "--model", "qwen", "--backend", "vllm"]
        transport = reactor.spawnProcess(child, sys.executable, argv, subprocessEnv())

        def cleanup() -> Any:
            if not child.ended.called:
                transport.signalProcess("KILL")
                return child.ended
            return None

        self.addCleanup(cleanup)
        http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, False)))
        url = f"http://127.0.0.1:{port}"

        async def call(method: str, path: str, body: object = None) -> tuple[int, Any]:
            kw: dict[str, Any] = {} if body is None else {"json": body}
            response = await http.request(method, url + path, **kw)
            content = await response.content()
            return response.code, json.loads(content) if content else None

        for _ in range(100):
            try:
                self.assertEqual(await call("GET", "/health"), (200, {"status": "ok"}))
                break
            except ConnectionRefusedError:
                self.assertFalse(child.ended.called, child.err)
                await deferLater(reactor, 0.1)
        else:
            self.fail(f"no answer on port {port}: {child.out!r} {child.err!r}")

        self.assertEqual(await call("POST", "/sleep?level=2"), (200, None))
        self.assertEqual(
            await call("GET", "/is_sleeping"), (200, {"is_sleeping": True})
        )
        code, _ = await call("POST", "/v1/chat/completions", CHAT)
        self.assertEqual(code, 503)
        self.assertEqual(await call("POST", "/wake_up"), (200, None))
        self.assertEqual(
            await call("GET", "/is_sleeping"), (200, {"is_sleeping": False})
        )
        code, error = await call("POST", "/v1/chat/completions", CHAT)
        self.assertEqual(code, 503)
        self.assertIn("reload_weights", error["error"]["message"])
        reloaded = await call("POST", "/collective_rpc", RELOAD)
        self.assertEqual(reloaded, (200, {"results": [None]}))
        code, chat = await call("POST", "/v1/chat/completions", CHAT)
        self.assertEqual(code, 200)
        self.assertEqual(chat["model"], "qwen")
        code, listed = await call("GET", "/_fake/calls")
        self.assertEqual(
            [(c["method"], c["path"], c["json"]) for c in listed["calls"]],
            [
                ("GET", "/health", None),
                ("POST", "/sleep?level=2", None),
                ("GET", "/is_sleeping", None),
                ("POST", "/wake_up", None),
                ("GET", "/is_sleeping", None),
                ("POST", "/collective_rpc", RELOAD),
            ],
        )

        transport.signalProcess("TERM")
        reason = await child.ended
        self.assertEqual(getattr(reason, "exitCode", None), 0, child.err)
        self.assertIn(b"listening on 127.0.0.1:%d, playing vllm" % (port,), child.out)
        self.assertIn(b"qwen: asleep (level 2)", child.out)
        self.assertIn(b"qwen: weights reloaded", child.out)
