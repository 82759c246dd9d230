"""
Tests for the hook forms of the config (L{llmux.hookconfig}, the
C{command}/C{backend} keys of L{llmux.config}, L{llmux.presets}).
"""

from __future__ import annotations

import os
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from llmux.config import ConfigError, ModelConfig, parseConfig
from llmux.hookconfig import HttpStep, Managed, parseCommand


def modelOf(settings: dict[str, Any], directory: str = "/srv/llmux") -> ModelConfig:
    """
    The one model of a config whose only model has C{settings}.
    """
    return parseConfig({"models": {"m": {"port": 8001, **settings}}}, directory).models[
        0
    ]


class StepTests(SynchronousTestCase):
    """
    Hooks given as lists of HTTP steps.
    """

    def test_steps(self) -> None:
        """
        Every key of a step is read; a string is a GET of that path.
        """
        model = modelOf(
            {
                "wake": [
                    {
                        "method": "post",
                        "path": "/wake_up",
                        "json": {"a": 1},
                        "headers": {"X-Token": "t"},
                        "expect": [200, 204],
                        "timeout_secs": 5,
                    },
                    "/health",
                ],
                "sleep": [{"method": "PUT", "url": "http://10.0.0.2:9/s", "body": "x"}],
                "alive": "curl -fs localhost:8001/health",
            }
        )
        assert isinstance(model.wake, tuple)
        first, second = model.wake
        self.assertEqual(first.method, "POST")
        self.assertEqual(first.url(8001), "http://127.0.0.1:8001/wake_up")
        self.assertEqual((first.json, first.hasJSON), ({"a": 1}, True))
        self.assertEqual(dict(first.headers), {"X-Token": "t"})
        self.assertEqual((first.expect, first.timeoutSecs), ((200, 204), 5.0))
        self.assertEqual(second, HttpStep("GET", "/health"))
        assert isinstance(model.sleep, tuple)
        self.assertEqual(model.sleep[0].url(8001), "http://10.0.0.2:9/s")
        self.assertEqual(model.sleep[0].body, b"x")
        self.assertEqual(model.alive, "curl -fs localhost:8001/health")

    def test_accepts(self) -> None:
        """
        Without C{expect}, any 2xx succeeds; with it, only those statuses.
        """
        self.assertTrue(HttpStep("GET", "/").accepts(204))
        self.assertFalse(HttpStep("GET", "/").accepts(302))
        self.assertTrue(HttpStep("GET", "/", expect=(404,)).accepts(404))
        self.assertFalse(HttpStep("GET", "/", expect=(404,)).accepts(200))

    def test_badSteps(self) -> None:
        """
        Each mistake in a step is one line naming the step and the key.
        """
        cases = [
            (
                [{"method": "FETCH", "path": "/x"}],
                "models.m.wake[0].method: must be one of",
            ),
            ([{"method": "GET; rm -rf /", "path": "/x"}], "models.m.wake[0].method:"),
            (
                [{"path": "x"}],
                "models.m.wake[0].path: must be a path starting with '/'",
            ),
            ([{"path": "/a b"}], "models.m.wake[0].path: must be a path"),
            (
                [{"url": "ftp://h/x"}],
                "models.m.wake[0].url: must be an http:// or https://",
            ),
            ([{"url": "http://h:99999/"}], "models.m.wake[0].url: is not a valid URL"),
            ([{"method": "GET"}], "models.m.wake[0]: give either path"),
            (
                [{"path": "/a", "url": "http://h/"}],
                "models.m.wake[0]: give either path",
            ),
            (
                [{"path": "/a", "json": {}, "body": ""}],
                "models.m.wake[0].body: give json or body",
            ),
            (
                [{"path": "/a", "expect": "200"}],
                "models.m.wake[0].expect: must be an HTTP status",
            ),
            ([{"path": "/a", "expect": 99}], "models.m.wake[0].expect:"),
            (
                [{"path": "/a", "timeout_secs": 0}],
                "models.m.wake[0].timeout_secs: must be a positive",
            ),
            (
                [{"path": "/a", "headers": {"X": "a\r\nb"}}],
                "models.m.wake[0].headers.'X': holds",
            ),
            ([{"path": "/a", "verb": "GET"}], "models.m.wake[0].verb: unknown key"),
            (["/ok", 3], "models.m.wake[1]: must be a mapping"),
            ([], "models.m.wake: is an empty list"),
            (
                {"path": "/a"},
                "models.m.wake: must be a shell script (a string) or a list",
            ),
        ]
        for wake, message in cases:
            with self.subTest(wake=wake):
                with self.assertRaises(ConfigError) as caught:
                    modelOf({"wake": wake, "sleep": "s", "alive": "a"})
                self.assertTrue(
                    str(caught.exception).startswith(message), str(caught.exception)
                )


class ProcessTests(SynchronousTestCase):
    """
    Models with a C{command}: the process llmux runs for them.
    """

    def test_commandAlone(self) -> None:
        """
        A command alone makes every hook an action on the process: wake
        starts it, sleep stops it, alive checks it; there is no unload.
        """
        model = modelOf({"command": "vllm serve Qwen/Qwen3-8B --port 8001"})
        assert model.process is not None
        self.assertEqual(
            model.process.argv, ("vllm", "serve", "Qwen/Qwen3-8B", "--port", "8001")
        )
        self.assertEqual(model.process.cwd, "/srv/llmux")
        self.assertEqual(model.process.ready, HttpStep("GET", "/health"))
        self.assertEqual(model.process.stop_timeout_secs, 30.0)
        self.assertEqual(
            (model.wake, model.sleep, model.alive, model.unload),
            (Managed.START, Managed.STOP, Managed.READY, None),
        )

    def test_companions(self) -> None:
        """
        C{env}, C{cwd} (relative to the config file), C{ready} and
        C{stop_timeout_secs} are read.
        """
        model = modelOf(
            {
                "command": ["server", "--flag"],
                "env": {"CUDA_VISIBLE_DEVICES": 1, "HF_HOME": "/data"},
                "cwd": "models/a",
                "ready": {"path": "/v1/models", "expect": 200},
                "stop_timeout_secs": 5,
            }
        )
        assert model.process is not None
        self.assertEqual(model.process.argv, ("server", "--flag"))
        self.assertEqual(
            dict(model.process.env), {"CUDA_VISIBLE_DEVICES": "1", "HF_HOME": "/data"}
        )
        self.assertEqual(model.process.cwd, os.path.join("/srv/llmux", "models/a"))
        self.assertEqual(
            model.process.ready, HttpStep("GET", "/v1/models", expect=(200,))
        )
        self.assertEqual(model.process.stop_timeout_secs, 5.0)

    def test_shellSyntax(self) -> None:
        """
        A command with shell syntax runs through C{sh -c}; plain words are
        run as they are.
        """
        self.assertEqual(parseCommand("a b"), ("a", "b"))
        self.assertEqual(
            parseCommand("exec server >log 2>&1"),
            ("/bin/sh", "-c", "exec server >log 2>&1"),
        )
        self.assertEqual(
            parseCommand("server --name 'my model'"),
            ("/bin/sh", "-c", "server --name 'my model'"),
        )

    def test_explicitSleepKeepsProcess(self) -> None:
        """
        With a command and its own sleep hook, the process keeps running
        while asleep, and unloading stops it.
        """
        model = modelOf(
            {"command": "server", "sleep": [{"method": "POST", "path": "/sleep"}]}
        )
        self.assertEqual((model.wake, model.unload), (Managed.START, Managed.STOP))
        assert isinstance(model.sleep, tuple)

    def test_badProcess(self) -> None:
        """
        Mistakes about the process are one line each.
        """
        cases = [
            ({"command": ""}, "models.m.command: must be a non-empty string or list"),
            ({"command": []}, "models.m.command: must be a non-empty string or list"),
            (
                {"command": ["a", 1]},
                "models.m.command: must be a non-empty string or list",
            ),
            ({"command": "a", "env": ["X=1"]}, "models.m.env: must be a mapping"),
            ({"command": "a", "env": {"X=Y": "1"}}, "models.m.env: must be a mapping"),
            ({"command": "a", "env": {"X": True}}, "models.m.env: must be a mapping"),
            ({"command": "a", "cwd": ""}, "models.m.cwd: must be a directory"),
            (
                {"command": "a", "ready": "health"},
                "models.m.ready.path: must be a path",
            ),
            (
                {"command": "a", "stop_timeout_secs": 0},
                "models.m.stop_timeout_secs: must be above 0",
            ),
            (
                {"wake": "w", "sleep": "s", "alive": "a", "env": {}},
                "models.m.env: needs a command",
            ),
            (
                {"wake": "w", "sleep": "s", "alive": "a", "ready": "/h"},
                "models.m.ready: needs a command",
            ),
            (
                {"wake": "w", "sleep": "s"},
                "models.m.alive: missing (required unless the model has a command)",
            ),
        ]
        for settings, message in cases:
            with self.subTest(settings=settings):
                with self.assertRaises(ConfigError) as caught:
                    modelOf(settings)
                self.assertTrue(
                    str(caught.exception).startswith(message), str(caught.exception)
                )


class PresetTests(SynchronousTestCase):
    """
    C{backend: vllm} and C{backend: sglang}.
    """

    def calls(self, hook: object) -> list[str]:
        assert isinstance(hook, tuple)
        return [step.describe() for step in hook]

    def test_vllmLevel1(self) -> None:
        """
        vLLM's sleep mode, level 1 (the default).
        """
        model = modelOf({"backend": "vllm"})
        self.assertEqual(self.calls(model.wake), ["POST /wake_up"])
        self.assertEqual(self.calls(model.sleep), ["POST /sleep?level=1"])
        self.assertEqual(self.calls(model.alive), ["GET /health", "GET /is_sleeping"])
        self.assertEqual((model.process, model.backend), (None, "vllm"))

    def test_vllmLevel2(self) -> None:
        """
        Level 2 discards the weights: waking reloads them and resets the
        prefix cache.
        """
        model = modelOf({"backend": "vllm", "sleep_level": 2})
        self.assertEqual(
            self.calls(model.wake),
            ["POST /wake_up", "POST /collective_rpc", "POST /reset_prefix_cache"],
        )
        assert isinstance(model.wake, tuple)
        self.assertEqual(model.wake[1].json, {"method": "reload_weights"})
        self.assertEqual(self.calls(model.sleep), ["POST /sleep?level=2"])

    def test_sglang(self) -> None:
        """
        SGLang releases and resumes its memory.
        """
        model = modelOf({"backend": "sglang"})
        self.assertEqual(self.calls(model.wake), ["POST /resume_memory_occupation"])
        self.assertEqual(self.calls(model.sleep), ["POST /release_memory_occupation"])

    def test_overrides(self) -> None:
        """
        The model's own keys win over the preset's; with a command, the
        preset's sleep keeps the process running and unload stops it.
        """
        model = modelOf(
            {"backend": "vllm", "alive": "true", "command": "vllm serve m --port 8001"}
        )
        self.assertEqual(model.alive, "true")
        self.assertEqual(self.calls(model.sleep), ["POST /sleep?level=1"])
        self.assertEqual(model.unload, Managed.STOP)

    def test_badPresets(self) -> None:
        """
        Unknown backends and misplaced sleep levels are one line each.
        """
        cases = [
            (
                {"backend": "tgi"},
                "models.m.backend: unknown backend 'tgi' (expected one of: vllm, sglang)",
            ),
            (
                {"backend": "vllm", "sleep_level": 3},
                "models.m.sleep_level: must be 1 or 2, not 3",
            ),
            (
                {"backend": "sglang", "sleep_level": 2},
                "models.m.sleep_level: needs backend: vllm",
            ),
            (
                {"command": "x", "sleep_level": 1},
                "models.m.sleep_level: needs backend: vllm",
            ),
        ]
        for settings, message in cases:
            with self.subTest(settings=settings):
                with self.assertRaises(ConfigError) as caught:
                    modelOf(settings)
                self.assertEqual(str(caught.exception), message)
