"""
The backend recipes of docs/backends.md (C{examples/backends/*.yaml}) load as
llmux would load them and mean what the document says; and the demo,
C{examples/backends/demo.yaml}, runs for real: llmux starts two fake vLLM
servers itself, switches between them with vLLM's sleep-mode calls, restarts
one that crashed, and stops both when it stops.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any

import treq
import yaml
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase, TestCase

from llmux.config import Config, ModelConfig, loadConfig
from llmux.hookconfig import HttpStep, Managed

from .helpers import freePort, isRunning
from .test_e2e import Harness

ROOT = FilePath(__file__).parent().parent()
EXAMPLES = ROOT.descendant(["examples", "backends"])
SRC = ROOT.child("src").path


def load(name: str) -> Config:
    return loadConfig(EXAMPLES.child(name).path)


def lines(hook: object) -> list[str]:
    """
    The steps of an HTTP-step hook as C{"METHOD target"} lines.
    """
    assert isinstance(hook, tuple), hook
    return [step.describe() for step in hook if isinstance(step, HttpStep)]


def model(config: Config, name: str) -> ModelConfig:
    found = config.model(name)
    assert found is not None, name
    return found


class ExampleConfigTests(SynchronousTestCase):
    """
    Each recipe loads, and its models have the hooks the document says.
    """

    def test_all(self) -> None:
        """
        Every C{examples/backends/*.yaml} loads; every model whose server
        llmux runs itself gives that server the model's port (in its command
        line or its environment), unless a container's settings do.
        """
        names = sorted(p.basename() for p in EXAMPLES.globChildren("*.yaml"))
        self.assertEqual(
            names,
            [
                "demo.yaml",
                "docker.yaml",
                "llama-server.yaml",
                "ollama.yaml",
                "sglang.yaml",
                "tgi.yaml",
                "vllm-sleep-level1.yaml",
                "vllm-sleep-level2.yaml",
                "vllm-start-stop.yaml",
            ],
        )
        for name in names:
            config = load(name)
            for m in config.models:
                self.assertEqual(m.directory, EXAMPLES.path, name)
                process = m.process
                # A created container has its ports; `docker start` does not.
                if process is None or process.argv[:2] == ("docker", "start"):
                    continue
                words = [*process.argv, *process.env.values()]
                self.assertIn(str(m.port), " ".join(words), name)

    def test_vllmSleepLevel1(self) -> None:
        """
        C{backend: vllm} with a command: the server starts on the first wake
        and keeps running while asleep; sleep and wake are vLLM's calls;
        alive also asks C{/is_sleeping}; unloading stops the process.
        """
        config = load("vllm-sleep-level1.yaml")
        for m in config.models:
            assert m.process is not None
            self.assertEqual(m.backend, "vllm")
            self.assertIn("--enable-sleep-mode", m.process.argv)
            self.assertEqual(m.process.env["VLLM_SERVER_DEV_MODE"], "1")
            self.assertEqual(m.process.ready.describe(), "GET /health")
            self.assertEqual(lines(m.wake), ["POST /wake_up"])
            self.assertEqual(lines(m.sleep), ["POST /sleep?level=1"])
            self.assertEqual(lines(m.alive), ["GET /health", "GET /is_sleeping"])
            assert isinstance(m.alive, tuple)
            self.assertEqual(dict(m.alive[1].expectJSON), {"is_sleeping": False})
            self.assertIs(m.unload, Managed.STOP)
        llama = model(config, "llama-8b").process
        assert llama is not None
        self.assertEqual(llama.stop_timeout_secs, 60)
        self.assertEqual(model(config, "mistral-7b").unload_after_secs, 3600)
        self.assertEqual(config.hook_timeouts["wake"], 900)

    def test_vllmSleepLevel2(self) -> None:
        """
        At level 2 the preset's wake has three steps, the second reloading
        the weights; a model's own wake overrides the preset's.
        """
        config = load("vllm-sleep-level2.yaml")
        qwen = model(config, "qwen-14b")
        self.assertEqual(lines(qwen.sleep), ["POST /sleep?level=2"])
        self.assertEqual(
            lines(qwen.wake),
            ["POST /wake_up", "POST /collective_rpc", "POST /reset_prefix_cache"],
        )
        assert isinstance(qwen.wake, tuple)
        self.assertEqual(qwen.wake[1].json, {"method": "reload_weights"})
        gemma = model(config, "gemma-12b")
        self.assertEqual(
            lines(gemma.wake),
            [
                "POST /wake_up?tags=weights",
                "POST /collective_rpc",
                "POST /wake_up?tags=kv_cache",
                "POST /reset_prefix_cache",
            ],
        )
        assert isinstance(gemma.wake, tuple)
        self.assertEqual(gemma.wake[1].timeoutSecs, 300)
        self.assertEqual(lines(gemma.sleep), ["POST /sleep?level=2"])

    def test_vllmStartStop(self) -> None:
        """
        A command alone: wake starts the process, sleep stops it, alive
        checks it; nothing to unload. A list command runs as it is.
        """
        config = load("vllm-start-stop.yaml")
        for m in config.models:
            self.assertIsNotNone(m.process)
            self.assertIs(m.wake, Managed.START)
            self.assertIs(m.sleep, Managed.STOP)
            self.assertIs(m.alive, Managed.READY)
            self.assertIsNone(m.unload)
            self.assertIsNone(m.backend)
        qwen = model(config, "qwen-7b").process
        assert qwen is not None
        self.assertEqual(qwen.argv[:2], ("/opt/vllm/bin/vllm", "serve"))
        self.assertEqual(qwen.env, {"HF_HOME": "/srv/hf-cache"})
        self.assertEqual(qwen.ready.describe(), "GET /v1/models")
        self.assertEqual(qwen.ready.expect, (200,))

    def test_sglang(self) -> None:
        """
        The sglang preset: release and resume with a JSON body; its alive is
        only C{/health} unless the model overrides it.
        """
        config = load("sglang.yaml")
        for m in config.models:
            assert m.process is not None
            self.assertEqual(m.backend, "sglang")
            self.assertIn("--enable-memory-saver", m.process.argv)
            self.assertIn("--enable-weights-cpu-backup", m.process.argv)
            self.assertEqual(lines(m.sleep), ["POST /release_memory_occupation"])
            self.assertEqual(lines(m.wake), ["POST /resume_memory_occupation"])
            assert isinstance(m.wake, tuple)
            self.assertTrue(m.wake[0].hasJSON)
            self.assertEqual(m.wake[0].json, {})
            self.assertIs(m.unload, Managed.STOP)
        self.assertEqual(lines(model(config, "qwen-7b").alive), ["GET /health"])
        self.assertEqual(
            lines(model(config, "llama-8b").alive), ["GET /health_generate"]
        )

    def test_llamaServer(self) -> None:
        """
        llama-server as a managed process, one run from its own directory.
        """
        config = load("llama-server.yaml")
        gemma = model(config, "gemma-9b")
        assert gemma.process is not None
        self.assertEqual(gemma.process.cwd, "/srv/models")
        self.assertEqual(gemma.process.argv[0], "llama-server")
        self.assertIs(gemma.wake, Managed.START)
        coder = model(config, "qwen-coder").process
        assert coder is not None
        self.assertEqual(coder.argv[0], "/usr/local/bin/llama-server")
        self.assertEqual(coder.ready.describe(), "GET /health")
        self.assertEqual(coder.env, {"CUDA_VISIBLE_DEVICES": "0"})

    def test_ollama(self) -> None:
        """
        One C{ollama serve} per model, on the model's port; wake loads the
        model (keep_alive -1) and sleep unloads it (keep_alive 0), naming
        the model in the JSON.
        """
        config = load("ollama.yaml")
        self.assertEqual(config.modelNames, ("llama3.1:8b", "qwen2.5:7b"))
        for m in config.models:
            assert m.process is not None
            self.assertEqual(m.process.argv, ("ollama", "serve"))
            self.assertEqual(m.process.env["OLLAMA_HOST"], f"127.0.0.1:{m.port}")
            self.assertEqual(m.process.ready.describe(), "GET /api/version")
            self.assertEqual(lines(m.wake), ["POST /api/generate"])
            self.assertEqual(lines(m.sleep), ["POST /api/generate"])
            assert isinstance(m.wake, tuple) and isinstance(m.sleep, tuple)
            self.assertEqual(m.wake[0].json, {"model": m.name, "keep_alive": -1})
            self.assertEqual(m.sleep[0].json, {"model": m.name, "keep_alive": 0})
            self.assertIs(m.alive, Managed.READY)
            self.assertIs(m.unload, Managed.STOP)

    def test_tgi(self) -> None:
        """
        TGI's C{docker run} needs a shell (it first removes a leftover
        container), and runs in the foreground with C{--rm --init}.
        """
        tgi = model(load("tgi.yaml"), "mistral-7b")
        assert tgi.process is not None
        self.assertEqual(tgi.process.argv[:2], ("/bin/sh", "-c"))
        script = tgi.process.argv[2]
        self.assertTrue(script.startswith("docker rm -f llmux-tgi-mistral"))
        self.assertIn("exec docker run --rm --init --name llmux-tgi-mistral", script)
        self.assertNotIn(" -d ", script)
        self.assertEqual(tgi.process.stop_timeout_secs, 60)
        self.assertIs(tgi.sleep, Managed.STOP)

    def test_docker(self) -> None:
        """
        A container as a managed process, and one with shell hooks and an
        HTTP-step alive (forms mix).
        """
        config = load("docker.yaml")
        phi = model(config, "phi-4")
        assert phi.process is not None
        self.assertEqual(
            phi.process.argv, ("docker", "start", "--attach", "llmux-phi4")
        )
        gemma = model(config, "gemma-2b")
        self.assertIsNone(gemma.process)
        self.assertIsInstance(gemma.wake, str)
        self.assertEqual(gemma.sleep, "docker stop -t 60 llmux-gemma >/dev/null")
        self.assertEqual(lines(gemma.alive), ["GET /health"])

    def test_demo(self) -> None:
        """
        The demo: two fake vLLM servers that llmux runs, at sleep levels 1
        and 2, started with the python of C{$PYTHON} or the PATH.
        """
        config = load("demo.yaml")
        self.assertEqual(config.modelNames, ("llama", "qwen"))
        for m in config.models:
            assert m.process is not None
            self.assertEqual(m.backend, "vllm")
            self.assertEqual(m.process.argv[:2], ("/bin/sh", "-c"))
            self.assertTrue(m.process.argv[2].startswith("exec ${PYTHON:-python3} -m "))
            self.assertIn(
                f"llmux.testing.fakebackend --backend vllm --port {m.port} "
                f"--model {m.name}",
                m.process.argv[2],
            )
        self.assertEqual(lines(model(config, "llama").sleep), ["POST /sleep?level=1"])
        self.assertEqual(len(lines(model(config, "qwen").wake)), 3)


def demoCopy(case: TestCase) -> tuple[Config, dict[str, int]]:
    """
    The demo config with free ports, run by this test's python (with llmux's
    C{src} on its path), from a temporary directory.

    @return: the config, and each model's port.
    """
    data: dict[str, Any] = yaml.safe_load(EXAMPLES.child("demo.yaml").getContent())
    ports = {}
    pythonpath = os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p)
    for name, settings in data["models"].items():
        old, new = settings["port"], freePort()
        settings["port"] = ports[name] = new
        settings["command"] = settings["command"].replace(
            f"--port {old}", f"--port {new}"
        )
        settings["env"] = {"PYTHON": sys.executable, "PYTHONPATH": pythonpath}
    directory = FilePath(case.mktemp())
    directory.makedirs()
    path = directory.child("demo.yaml")
    path.setContent(yaml.safe_dump(data).encode())
    return loadConfig(path.path), ports


def fakePids(port: int) -> dict[int, list[str]]:
    """
    The processes of the fake backend on C{port} (its python, and any
    C{sh -c} that started it), by pid, with their command lines.
    """
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        line = " ".join(argv)
        if "llmux.testing.fakebackend" in line and f"--port {port} " in line:
            found[int(entry)] = argv
    return found


class DemoTests(TestCase):
    """
    C{examples/backends/demo.yaml}, run for real by the whole llmux service.
    """

    timeout = 60

    async def until(self, condition: Any, what: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                self.fail(f"{what}: not so after {timeout}s")
            await deferLater(reactor, 0.05)

    async def calls(self, h: Harness, port: int) -> list[dict[str, Any]]:
        """
        The control calls the fake on C{port} recorded, but the checks
        (C{GET}s: readiness and alive probes, whose number depends on
        timing).
        """
        response = await treq.get(f"http://127.0.0.1:{port}/_fake/calls", pool=h.pool)
        self.assertEqual(response.code, 200)
        document = json.loads(await response.content())
        return [c for c in document["calls"] if c["method"] != "GET"]

    async def test_demo(self) -> None:
        """
        Each request is answered by its own model: the first request for each
        starts its server, switching puts the other to sleep (the process
        runs on) and switching back wakes it with vLLM's calls, three of
        them at level 2. A server that crashes is started again by the next
        request. Stopping llmux stops both servers.
        """
        config, ports = demoCopy(self)
        h = Harness(self)
        base = h.startConfig(config)
        service = h.service
        assert service is not None and service.processes is not None
        processes = service.processes
        for name in ["llama", "qwen", "llama", "qwen"]:
            answer = await h.chat(base, name)
            self.assertEqual(answer["model"], name)
            content = answer["choices"][0]["message"]["content"]
            self.assertTrue(content.startswith(f"Hello from {name}:"), content)
        self.assertTrue(processes.running("llama"))
        self.assertTrue(processes.running("qwen"))

        llama = await self.calls(h, ports["llama"])
        self.assertEqual(
            [(c["method"], c["path"]) for c in llama],
            [
                ("POST", "/sleep?level=1"),
                ("POST", "/wake_up"),
                ("POST", "/sleep?level=1"),
            ],
        )
        qwen = await self.calls(h, ports["qwen"])
        self.assertEqual(
            [(c["method"], c["path"], c["json"]) for c in qwen],
            [
                ("POST", "/sleep?level=2", None),
                ("POST", "/wake_up", None),
                ("POST", "/collective_rpc", {"method": "reload_weights"}),
                ("POST", "/reset_prefix_cache", None),
            ],
        )

        # qwen is awake: kill its server. llmux sees the exit at once, and
        # the next request starts a new one.
        (python,) = [
            pid
            for pid, argv in fakePids(ports["qwen"]).items()
            if argv[:3] == [sys.executable, "-m", "llmux.testing.fakebackend"]
        ]
        os.kill(python, signal.SIGKILL)
        await self.until(lambda: not processes.running("qwen"), "qwen noticed dead")
        answer = await h.chat(base, "qwen")
        self.assertEqual(answer["model"], "qwen")
        self.assertTrue(processes.running("qwen"))
        self.assertNotIn(python, fakePids(ports["qwen"]))

        pids = {**fakePids(ports["llama"]), **fakePids(ports["qwen"])}
        for port in ports.values():  # sh -c exec'ed the server: no shell left
            self.assertEqual({a[0] for a in fakePids(port).values()}, {sys.executable})
        await service.stopService()
        self.assertFalse(processes.running("llama"))
        self.assertFalse(processes.running("qwen"))
        await self.until(
            lambda: not any(isRunning(pid) for pid in pids), "the servers stopped"
        )
