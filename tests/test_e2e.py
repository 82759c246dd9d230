"""
End-to-end tests: the whole llmux service over loopback, with real C{sh}
hooks and real fake backends.

Two kinds of backend are used. In-process fake backends (always up) with
hooks that only record what ran keep most tests fast; the demo's hooks, which
start and stop fake backend processes for real, prove that a drained model is
not put to sleep under a running stream.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.internet.utils import getProcessValue
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool, ResponseDone
from twisted.web.iweb import IResponse

from llmux.config import Config, parseConfig
from llmux.policies.fifo import FifoPolicy
from llmux.service import LlmuxService, makeLlmuxService
from llmux.switcher import Active
from llmux.testing.fakebackend import makeSite

from .helpers import freePort

ROOT = FilePath(__file__).parent().parent()
DEMO_HOOKS = ROOT.descendant(["examples", "demo", "hooks"])


class Harness:
    """
    A running llmux service for one test, plus the client side.
    """

    def __init__(self, case: TestCase) -> None:
        self.case = case
        self.directory = FilePath(case.mktemp())
        self.directory.makedirs()
        self.hookLog = self.directory.child("hooks.log")
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.service: LlmuxService | None = None

    def backend(self, model: str, chunkDelay: float = 0.05, chunks: int = 8) -> int:
        """
        Start an in-process fake backend for C{model}; return its port.
        """
        port = reactor.listenTCP(
            0, makeSite(model, reactor, chunkDelay, chunks), interface="127.0.0.1"
        )
        self.case.addCleanup(port.stopListening)
        return port.getHost().port

    def recordingModel(
        self, port: int, wake: str = "", sleep: str = ""
    ) -> dict[str, Any]:
        """
        Settings for a model whose hooks append "<hook> <model>" to the hook
        log, then run C{wake}/C{sleep} extra shell code. A successful wake
        leaves a C{<model>.awake} file, which sleep removes and alive checks.
        """
        log = self.hookLog.path

        def hook(name: str, extra: str) -> str:
            return f'echo "{name} $LLMUX_MODEL" >> {log}\n{extra}'

        return {
            "port": port,
            "wake": hook("wake", wake) + '\ntouch "$LLMUX_MODEL.awake"',
            "sleep": hook("sleep", sleep) + '\nrm -f "$LLMUX_MODEL.awake"',
            "alive": 'test -f "$LLMUX_MODEL.awake"',
        }

    def start(
        self,
        models: dict[str, Any],
        settings: dict[str, Any] | None = None,
        **policy: Any,
    ) -> str:
        """
        Start llmux for C{models}, with top-level C{settings} and C{policy}
        table settings; return its base URL.
        """
        data = {"models": models, "policy": policy, **(settings or {})}
        return self.startConfig(parseConfig(data, self.directory.path))

    def startConfig(self, config: Config) -> str:
        policy = FifoPolicy.fromConfig(config.policy)
        self.service = makeLlmuxService(
            config, policy, "tcp:0:interface=127.0.0.1", reactor
        )
        self.service.startService()
        self.case.addCleanup(self.service.stopService)
        assert self.service.port is not None
        return f"http://127.0.0.1:{self.service.port.getHost().port}"

    def hooks(self) -> list[str]:
        if not self.hookLog.exists():
            return []
        return self.hookLog.getContent().decode().splitlines()

    async def post(self, url: str, body: object, **kwargs: Any) -> IResponse:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        response: IResponse = await treq.post(
            url,
            data=data,
            pool=self.pool,
            headers={"Content-Type": "application/json"},
            **kwargs,
        )
        return response

    async def chat(self, base: str, model: str, **extra: Any) -> dict[str, Any]:
        response = await self.post(
            base + "/v1/chat/completions",
            {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra},
        )
        self.case.assertEqual(response.code, 200)
        result: dict[str, Any] = await response.json()
        return result

    async def stream(self, base: str, model: str) -> StreamCollector:
        """
        Start a streaming chat completion with C{model}; return its collector
        once the first chunk has arrived.
        """
        response = await self.post(
            base + "/v1/chat/completions",
            {
                "model": model,
                "stream": True,
                "messages": [{"role": "user", "content": "hi"}],
            },
        )
        collector = StreamCollector()
        response.deliverBody(collector)
        await self.until(lambda: len(collector.chunks) >= 1)
        return collector

    async def until(self, condition: Any, timeout: float = 10) -> None:
        """
        Wait, polling, until C{condition()} is true.
        """
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                self.case.fail("condition not reached in time")
            await deferLater(reactor, 0.02)


class StreamCollector(Protocol):
    """
    Receives a response body, noting when each chunk arrived.
    """

    def __init__(self) -> None:
        self.chunks: list[tuple[float, bytes]] = []
        self.done: Deferred[None] = Deferred()
        self.reason: Failure | None = None

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append((time.monotonic(), data))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.reason = reason
        self.done.callback(None)

    @property
    def complete(self) -> bool:
        """
        Whether the body ended cleanly (not truncated).
        """
        return self.reason is not None and bool(self.reason.check(ResponseDone))

    @property
    def body(self) -> bytes:
        return b"".join(data for _, data in self.chunks)


async def errorOf(response: IResponse) -> tuple[int, bytes, dict[str, Any]]:
    """
    The status, content type and JSON body of an error response.
    """
    body = await response.json()
    [contentType] = response.headers.getRawHeaders(b"content-type")
    return response.code, contentType, body


def llmuxError(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "llmux_error"}}


class RoutingTests(TestCase):
    """
    Requests reach the model they name, switching as needed.
    """

    timeout = 30

    async def test_switchHookOrder(self) -> None:
        """
        A to B to A: wake A, then sleep A before wake B; repeated requests to
        the active model run no hook; each answer comes from the right model.
        """
        h = Harness(self)
        base = h.start(
            {
                "A": h.recordingModel(h.backend("A")),
                "B": h.recordingModel(h.backend("B")),
            }
        )
        first = await h.chat(base, "A")
        self.assertEqual(first["model"], "A")
        self.assertEqual((await h.chat(base, "A"))["model"], "A")
        self.assertEqual(h.hooks(), ["wake A"])
        self.assertEqual((await h.chat(base, "B"))["model"], "B")
        self.assertEqual((await h.chat(base, "B"))["model"], "B")
        self.assertEqual(h.hooks(), ["wake A", "sleep A", "wake B"])
        self.assertEqual((await h.chat(base, "A"))["model"], "A")
        self.assertEqual(
            h.hooks(), ["wake A", "sleep A", "wake B", "sleep B", "wake A"]
        )

    async def test_portInUse(self) -> None:
        """
        A port that is already taken stops start-up with one clear line.
        """
        h = Harness(self)
        taken = reactor.listenTCP(0, _NoFactory(), interface="127.0.0.1")  # type: ignore[arg-type]
        self.addCleanup(taken.stopListening)
        config = parseConfig({"models": {"A": h.recordingModel(h.backend("A"))}})
        listen = f"tcp:{taken.getHost().port}:interface=127.0.0.1"
        service = makeLlmuxService(config, FifoPolicy(), listen, reactor)
        with self.assertRaises(SystemExit) as caught:
            service.startService()
        self.assertRegex(
            str(caught.exception),
            r"^llmux: error: cannot listen: .*[Aa]ddress already in use",
        )
        await service.stopService()

    async def test_passthrough(self) -> None:
        """
        Method, path, query, body and end-to-end headers reach the backend;
        Host and hop-by-hop headers do not.
        """
        h = Harness(self)
        base = h.start({"A": h.recordingModel(h.backend("A"))})
        body = json.dumps({"model": "A", "x": [1, 2]}).encode()
        response = await treq.request(
            "PUT",
            base + "/echo/some/path?q=1&r=two",
            data=body,
            pool=h.pool,
            headers={
                "Content-Type": "application/json",
                "X-Custom": "kept",
                "Authorization": "Bearer secret",
                "Connection": "X-Hop",
                "X-Hop": "dropped",
                "Keep-Alive": "timeout=5",
            },
        )
        self.assertEqual(response.code, 200)
        echoed = await response.json()
        self.assertEqual(echoed["method"], "PUT")
        self.assertEqual(echoed["path"], "/echo/some/path?q=1&r=two")
        self.assertEqual(echoed["body"], body.decode())
        headers = echoed["headers"]
        self.assertEqual(headers["x-custom"], ["kept"])
        self.assertEqual(headers["authorization"], ["Bearer secret"])
        self.assertNotIn("x-hop", headers)
        self.assertNotIn("keep-alive", headers)
        self.assertNotEqual(headers["host"], [base.removeprefix("http://")])

    async def test_models(self) -> None:
        """
        /v1/models lists the configured models, sorted, in OpenAI form, and
        runs no hook.
        """
        h = Harness(self)
        base = h.start(
            {
                "zeta": h.recordingModel(h.backend("zeta")),
                "alpha": h.recordingModel(h.backend("alpha")),
            }
        )
        response = await treq.get(base + "/v1/models", pool=h.pool)
        self.assertEqual(
            await response.json(),
            {
                "object": "list",
                "data": [
                    {
                        "id": "alpha",
                        "object": "model",
                        "created": 0,
                        "owned_by": "llmux",
                        "aliases": [],
                        "status": {"value": "unloaded"},
                    },
                    {
                        "id": "zeta",
                        "object": "model",
                        "created": 0,
                        "owned_by": "llmux",
                        "aliases": [],
                        "status": {"value": "unloaded"},
                    },
                ],
            },
        )
        self.assertEqual(h.hooks(), [])

    async def test_streamsAsProduced(self) -> None:
        """
        SSE chunks reach the client spread out in time as the backend writes
        them, ending with [DONE].
        """
        h = Harness(self)
        base = h.start(
            {"A": h.recordingModel(h.backend("A", chunkDelay=0.1, chunks=5))}
        )
        await h.chat(base, "A")
        response = await h.post(
            base + "/v1/chat/completions",
            {
                "model": "A",
                "stream": True,
                "messages": [{"role": "user", "content": "hi"}],
            },
        )
        self.assertEqual(
            response.headers.getRawHeaders(b"content-type"), [b"text/event-stream"]
        )
        collector = StreamCollector()
        response.deliverBody(collector)
        await collector.done
        self.assertTrue(collector.complete, collector.reason)
        self.assertTrue(collector.body.endswith(b"data: [DONE]\n\n"))
        times = [t for t, _ in collector.chunks]
        self.assertGreaterEqual(len(times), 4)
        self.assertGreater(times[-1] - times[0], 0.3, "chunks arrived all at once")

    async def test_officialClient(self) -> None:
        """
        The official openai client works through llmux, with and without
        streaming.
        """
        from openai import OpenAI

        h = Harness(self)
        base = h.start({"A": h.recordingModel(h.backend("A"))})
        client = OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
        self.addCleanup(client.close)
        messages = [{"role": "user", "content": "hi"}]

        def complete() -> Any:
            return client.chat.completions.create(model="A", messages=messages)

        def stream() -> list[str]:
            chunks = client.chat.completions.create(
                model="A", messages=messages, stream=True
            )
            return [c.choices[0].delta.content or "" for c in chunks if c.choices]

        completion = await deferToThread(complete)
        self.assertEqual(completion.model, "A")
        self.assertIn("A", completion.choices[0].message.content)
        pieces = await deferToThread(stream)
        self.assertGreater(len([p for p in pieces if p]), 1)


class ErrorTests(TestCase):
    """
    Every error llmux produces is JSON with the right status.
    """

    timeout = 30

    async def test_noModel(self) -> None:
        """
        A body without a model (or not JSON) is 404 "No model specified".
        """
        h = Harness(self)
        base = h.start({"A": h.recordingModel(h.backend("A"))})
        for body in (b"not json", b'{"messages": []}', b'{"model": 7}', b""):
            response = await h.post(base + "/v1/chat/completions", body)
            self.assertEqual(
                await errorOf(response),
                (404, b"application/json", llmuxError("No model specified in request")),
            )
        self.assertEqual(h.hooks(), [])

    async def test_unknownModel(self) -> None:
        """
        A model not in the config is 404 and runs no hook, even when its name
        is full of shell syntax.
        """
        h = Harness(self)
        base = h.start({"A": h.recordingModel(h.backend("A"))})
        name = "x; touch pwned $(touch pwned2) `touch pwned3`"
        response = await h.post(base + "/v1/completions", {"model": name})
        self.assertEqual(
            await errorOf(response),
            (404, b"application/json", llmuxError(f"Model not found: {name}")),
        )
        self.assertEqual(h.hooks(), [])
        for directory in (".", h.directory.path):
            self.assertEqual(
                [p for p in os.listdir(directory) if p.startswith("pwned")], []
            )

    async def test_wakeFailed(self) -> None:
        """
        A wake hook that fails answers 500 with its exit code and stderr, after
        the model's sleep hook cleaned up.
        """
        h = Harness(self)
        broken = h.recordingModel(
            h.backend("B"), wake="echo 'CUDA out of memory' >&2; exit 3"
        )
        base = h.start({"B": broken})
        response = await h.post(base + "/v1/completions", {"model": "B"})
        self.assertEqual(
            await errorOf(response),
            (
                500,
                b"application/json",
                llmuxError("Hook failed for B: exit code 3: CUDA out of memory"),
            ),
        )
        self.assertEqual(h.hooks(), ["wake B", "sleep B"])

    async def test_timeout(self) -> None:
        """
        A request that waits longer than request_timeout_secs for its model is
        504; the switch itself completes, and later requests are served.
        """
        h = Harness(self)
        base = h.start(
            {"A": h.recordingModel(h.backend("A"), wake="sleep 1")},
            request_timeout_secs=0.3,
        )
        response = await h.post(base + "/v1/completions", {"model": "A"})
        self.assertEqual(
            await errorOf(response),
            (
                504,
                b"application/json",
                llmuxError("Request timed out waiting for model"),
            ),
        )
        assert h.service is not None
        switcher = h.service.switcher
        # The wake hook was already running: it completes for later requests.
        await h.until(lambda: switcher.state == Active("A"))
        self.assertEqual((await h.chat(base, "A"))["model"], "A")

    async def test_backendRefused(self) -> None:
        """
        A backend that refuses connections is 502 "Backend error: ...".
        """
        h = Harness(self)
        base = h.start({"A": h.recordingModel(freePort())})
        response = await h.post(base + "/v1/completions", {"model": "A"})
        status, contentType, body = await errorOf(response)
        self.assertEqual((status, contentType), (502, b"application/json"))
        self.assertTrue(body["error"]["message"].startswith("Backend error: "))
        self.assertEqual(body["error"]["type"], "llmux_error")


class _NoFactory:
    def doStart(self) -> None:
        pass

    def doStop(self) -> None:
        pass

    def buildProtocol(self, addr: object) -> None:
        return None


class DemoBackends:
    """
    Models managed by the demo's hooks, which start and stop real fake
    backend processes, each on a free port. The hooks run with this Python,
    and keep their pid and log files in the test's directory; every backend
    is stopped when the test ends.
    """

    def __init__(self, case: TestCase, h: Harness) -> None:
        self.h = h
        self.models: dict[str, dict[str, Any]] = {}
        paths = os.pathsep.join([ROOT.child("src").path, *sys.path])
        environment = {
            **os.environ,
            "PYTHON": sys.executable,
            "PYTHONPATH": paths,
            "TMPDIR": h.directory.path,
        }
        case.patch(os, "environ", environment)
        case.addCleanup(self.stopAll)

    def model(self, name: str) -> dict[str, Any]:
        """
        Settings for model C{name}, served on a free port.
        """
        port = freePort()
        self.models[name] = {
            "port": port,
            "wake": f"{DEMO_HOOKS.child('wake.sh').path} {port}",
            "sleep": f"{DEMO_HOOKS.child('sleep.sh').path} {port}",
            "alive": f"{DEMO_HOOKS.child('alive.sh').path} {port}",
        }
        return self.models[name]

    async def run(self, name: str, hook: str) -> int:
        """
        Run one of C{name}'s hooks by hand, as an operator would.
        """
        env = {**os.environ, "LLMUX_MODEL": name}
        code: int = await getProcessValue(
            "/bin/sh", ["-c", self.models[name][hook]], env=env, reactor=reactor
        )
        return code

    def pid(self, name: str) -> int:
        """
        The process id of C{name}'s backend, from the demo's pid file.
        """
        port = self.models[name]["port"]
        return int(self.h.directory.child(f"llmux-demo-{port}.pid").getContent())

    async def stopAll(self) -> None:
        for name in self.models:
            await self.run(name, "sleep")


class DrainTests(TestCase):
    """
    With the demo's hooks, which really start and stop backend processes.
    """

    timeout = 60

    async def test_streamCompletesBeforeSleep(self) -> None:
        """
        A stream in flight on A completes in full before A's sleep hook
        stops A's backend, although a request for B arrived mid-stream.
        """
        h = Harness(self)
        backends = DemoBackends(self, h)
        models = {"A": backends.model("A"), "B": backends.model("B")}
        base = h.start(models)
        collector = await h.stream(base, "A")
        other = Deferred.fromCoroutine(h.chat(base, "B"))
        await collector.done
        self.assertTrue(collector.complete, collector.reason)
        self.assertTrue(collector.body.endswith(b"data: [DONE]\n\n"))
        self.assertEqual(collector.body.count(b"data: "), 8 + 2 + 1)
        self.assertEqual((await other)["model"], "B")

    async def test_clientGoneReleasesSlot(self) -> None:
        """
        A client that disconnects mid-stream releases its slot, so a switch
        waiting for the model to drain proceeds at once.
        """
        h = Harness(self)
        base = h.start(
            {
                "A": h.recordingModel(h.backend("A", chunkDelay=0.5, chunks=100)),
                "B": h.recordingModel(h.backend("B")),
            }
        )
        collector = await h.stream(base, "A")
        other = Deferred.fromCoroutine(h.chat(base, "B"))
        await deferLater(reactor, 0.2)
        self.assertEqual(h.hooks(), ["wake A"], "A is drained while the stream runs")
        assert h.service is not None
        self.assertEqual(h.service.switcher.inFlight("A"), 1)
        collector.transport.stopProducing()  # type: ignore[attr-defined]
        started = time.monotonic()
        self.assertEqual((await other)["model"], "B")
        self.assertLess(
            time.monotonic() - started, 5, "the switch waited for the whole stream"
        )
        self.assertEqual(h.service.switcher.inFlight("A"), 0)
        self.assertEqual(h.service.switcher.state, Active("B"))
        self.assertEqual(h.hooks(), ["wake A", "sleep A", "wake B"])
