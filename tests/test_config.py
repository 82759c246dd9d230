"""
Tests for L{llmux.config}: parsing, defaults and one-line errors.
"""

from __future__ import annotations

import json
import os
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from llmux.config import ConfigError, ModelConfig, PolicyConfig, loadConfig, parseConfig

YAML = """\
models:
  llama:
    port: 8001
    wake: ./scripts/wake-llama.sh
    sleep: ./scripts/sleep-llama.sh
    alive: curl -sf http://localhost:8001/health
  mistral: {port: 8002, wake: "w", sleep: "s", alive: "a"}
policy:
  request_timeout_secs: 300
  drain_before_switch: false
  min_active_secs: 5
  quantum_secs: 20
port: 4000
"""


def model(**overrides: Any) -> dict[str, Any]:
    return {"port": 8001, "wake": "w", "sleep": "s", "alive": "a", **overrides}


class LoadTests(SynchronousTestCase):
    """
    Reading files: YAML or JSON by extension.
    """

    def write(self, name: str, text: str) -> str:
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_yaml(self) -> None:
        """
        A YAML file gives typed config objects in file order, with hooks run
        from the file's directory.
        """
        path = self.write("config.yaml", YAML)
        config = loadConfig(path)
        directory = os.path.dirname(os.path.abspath(path))
        self.assertEqual(config.modelNames, ("llama", "mistral"))
        self.assertEqual(
            config.model("llama"),
            ModelConfig(
                name="llama",
                port=8001,
                wake="./scripts/wake-llama.sh",
                sleep="./scripts/sleep-llama.sh",
                alive="curl -sf http://localhost:8001/health",
                directory=directory,
            ),
        )
        self.assertEqual(config.port, 4000)
        self.assertEqual(config.policy.request_timeout_secs, 300)
        self.assertFalse(config.policy.drain_before_switch)
        self.assertEqual(config.policy.min_active_secs, 5)
        self.assertEqual(dict(config.policy.extra), {"quantum_secs": 20})
        self.assertIsNone(config.model("nope"))

    def test_json(self) -> None:
        """
        Any other extension is JSON.
        """
        path = self.write("llmux.conf", json.dumps({"models": {"a": model()}}))
        self.assertEqual(loadConfig(path).modelNames, ("a",))

    def test_inlineScript(self) -> None:
        """
        A multi-line YAML script is kept as written.
        """
        text = (
            "models:\n  a:\n    port: 1\n    wake: |\n      echo one\n      echo two\n"
        )
        text += "    sleep: s\n    alive: a\n"
        config = loadConfig(self.write("c.yml", text))
        self.assertEqual(config.models[0].wake, "echo one\necho two\n")

    def test_defaults(self) -> None:
        """
        Omitted settings take SPEC defaults: port 3000, drain on, no timeout,
        no minimum active time.
        """
        config = parseConfig({"models": {"a": model()}})
        self.assertEqual(config.port, 3000)
        self.assertEqual(config.policy, PolicyConfig())
        self.assertIsNone(config.policy.request_timeout_secs)
        self.assertTrue(config.policy.drain_before_switch)
        self.assertEqual(config.policy.min_active_secs, 0)

    def test_reliabilityDefaults(self) -> None:
        """
        Hook timeouts fit slow model loads; liveness, limits and shutdown have
        the documented defaults.
        """
        config = parseConfig({"models": {"a": model()}})
        self.assertEqual(
            dict(config.hook_timeouts), {"wake": 600, "sleep": 300, "alive": 30}
        )
        self.assertTrue(config.adopt_running)
        self.assertEqual((config.alive_interval_secs, config.alive_failures), (30, 3))
        self.assertEqual(config.max_body_bytes, 32 * 1024 * 1024)
        self.assertEqual(
            (config.body_timeout_secs, config.upstream_timeout_secs), (120, 600)
        )
        self.assertEqual(
            (config.shutdown_timeout_secs, config.sleep_on_shutdown), (30, False)
        )
        self.assertEqual(
            (config.policy.max_queue, config.policy.drain_timeout_secs), (512, None)
        )

    def test_reliabilitySettings(self) -> None:
        """
        Every reliability setting is read from the file; null lifts a limit.
        """
        config = parseConfig(
            {
                "models": {"a": model()},
                "hook_timeouts": {"wake": 1200, "alive": None},
                "adopt_running": False,
                "alive_interval_secs": 0,
                "alive_failures": 5,
                "max_body_bytes": 1024,
                "body_timeout_secs": None,
                "upstream_timeout_secs": 30,
                "shutdown_timeout_secs": 5,
                "sleep_on_shutdown": True,
                "policy": {"max_queue": 2, "drain_timeout_secs": 60},
            }
        )
        self.assertEqual(
            dict(config.hook_timeouts), {"wake": 1200, "sleep": 300, "alive": None}
        )
        self.assertFalse(config.adopt_running)
        self.assertEqual((config.alive_interval_secs, config.alive_failures), (0, 5))
        self.assertEqual(config.max_body_bytes, 1024)
        self.assertEqual(
            (config.body_timeout_secs, config.upstream_timeout_secs), (None, 30)
        )
        self.assertEqual(
            (config.shutdown_timeout_secs, config.sleep_on_shutdown), (5, True)
        )
        self.assertEqual(
            (config.policy.max_queue, config.policy.drain_timeout_secs), (2, 60)
        )

    def test_nullTimeout(self) -> None:
        """
        request_timeout_secs: null means unlimited.
        """
        config = parseConfig(
            {"models": {"a": model()}, "policy": {"request_timeout_secs": None}}
        )
        self.assertIsNone(config.policy.request_timeout_secs)

    def test_missingFile(self) -> None:
        """
        A missing file is one line naming it.
        """
        with self.assertRaises(ConfigError) as caught:
            loadConfig("/nonexistent/config.yaml")
        self.assertEqual(
            str(caught.exception),
            "/nonexistent/config.yaml: cannot read: No such file or directory",
        )

    def test_syntaxErrors(self) -> None:
        """
        YAML and JSON syntax errors name the file and the position, on one line.
        """
        with self.assertRaises(ConfigError) as caught:
            loadConfig(self.write("c.yaml", "models: [\n"))
        self.assertRegex(
            str(caught.exception), r"c\.yaml: invalid YAML at line \d+, column \d+"
        )
        self.assertNotIn("\n", str(caught.exception))
        with self.assertRaises(ConfigError) as caught:
            loadConfig(self.write("c.json", "{"))
        self.assertRegex(
            str(caught.exception), r"c\.json: invalid JSON at line 1, column 2"
        )

    def test_errorNamesFile(self) -> None:
        """
        Validation errors from a file carry the file and the field.
        """
        path = self.write(
            "c.yaml", "models:\n  a: {port: 0, wake: w, sleep: s, alive: a}\n"
        )
        with self.assertRaises(ConfigError) as caught:
            loadConfig(path)
        self.assertEqual(
            str(caught.exception),
            f"{path}: models.a.port: must be from 1 to 65535, not 0",
        )


class ValidationTests(SynchronousTestCase):
    """
    Each kind of mistake gets one line naming the field.
    """

    def assertRejected(self, data: Any, message: str) -> None:
        with self.assertRaises(ConfigError) as caught:
            parseConfig(data)
        self.assertEqual(str(caught.exception), message)

    def test_notAMapping(self) -> None:
        self.assertRejected([1], "must be a mapping with a 'models' table")

    def test_noModels(self) -> None:
        self.assertRejected({}, "models: missing (at least one model is required)")
        self.assertRejected(
            {"models": {}}, "models: is empty (at least one model is required)"
        )
        self.assertRejected(
            {"models": [1]}, "models: must be a mapping of model name to settings"
        )

    def test_missingKey(self) -> None:
        data = {"models": {"a": {"port": 1, "wake": "w", "sleep": "s"}}}
        self.assertRejected(
            data, "models.a.alive: missing (required unless the model has a command)"
        )

    def test_unknownKeys(self) -> None:
        self.assertRejected(
            {"models": {"a": model(wakeup="x")}},
            "models.a.wakeup: unknown key (expected one of: port, wake, sleep, alive,"
            " unload, resources, asleep_resources, unload_after_secs, idle_ttl_secs,"
            " pin, preload, max_in_flight, command, env, cwd, ready, stop_timeout_secs,"
            " backend, sleep_level, aliases, served_model_name)",
        )
        with self.assertRaises(ConfigError) as caught:
            parseConfig({"models": {"a": model()}, "prot": 1})
        self.assertTrue(
            str(caught.exception).startswith(
                "prot: unknown key (expected one of: models, policy, port, "
            )
        )

    def test_wrongTypes(self) -> None:
        self.assertRejected(
            {"models": {"a": model(port="8001")}},
            "models.a.port: must be an integer from 1 to 65535, not '8001'",
        )
        self.assertRejected(
            {"models": {"a": model(port=True)}},
            "models.a.port: must be an integer from 1 to 65535, not True",
        )
        self.assertRejected(
            {"models": {"a": model(wake=["x"])}},
            "models.a.wake[0].path: must be a path starting with '/', not 'x'",
        )
        self.assertRejected(
            {"models": {"a": model(sleep="  ")}},
            "models.a.sleep: must be a non-empty script or a list of HTTP steps",
        )
        self.assertRejected(
            {"models": {"a": model()}, "policy": {"drain_before_switch": "yes"}},
            "policy.drain_before_switch: must be true or false",
        )
        self.assertRejected(
            {"models": {"a": model()}, "policy": {"min_active_secs": -1}},
            "policy.min_active_secs: must be at least 0, not -1",
        )
        self.assertRejected(
            {"models": {"a": model()}, "policy": {"request_timeout_secs": "300"}},
            "policy.request_timeout_secs: must be a number of 0 or more or null, not '300'",
        )
        self.assertRejected(
            {"models": {"a": model()}, "policy": [1]}, "policy: must be a mapping"
        )
        self.assertRejected(
            {"models": {"a": "x"}},
            "models.a: must be a mapping with port, wake, sleep and alive",
        )
        self.assertRejected(
            {"models": {1: model()}}, "models.1: model names must be non-empty strings"
        )

    def test_reliabilityMistakes(self) -> None:
        base: dict[str, Any] = {"models": {"a": model()}}
        cases = [
            (
                {"hook_timeouts": {"load": 5}},
                "hook_timeouts.load: unknown key (expected one of: wake, sleep, alive)",
            ),
            (
                {"hook_timeouts": {"wake": 0}},
                "hook_timeouts.wake: must be above 0, not 0",
            ),
            (
                {"hook_timeouts": [1]},
                "hook_timeouts: must be a mapping of hook name to seconds",
            ),
            ({"adopt_running": "yes"}, "adopt_running: must be true or false"),
            (
                {"alive_failures": 0},
                "alive_failures: must be a whole number of 1 or more, not 0",
            ),
            (
                {"max_body_bytes": "32M"},
                "max_body_bytes: must be a whole number of 1 or more, not '32M'",
            ),
            (
                {"upstream_timeout_secs": 0},
                "upstream_timeout_secs: must be above 0, not 0",
            ),
            ({"sleep_on_shutdown": 1}, "sleep_on_shutdown: must be true or false"),
            (
                {"policy": {"max_queue": 0}},
                "policy.max_queue: must be a whole number of 1 or more, not 0",
            ),
            (
                {"policy": {"drain_timeout_secs": -1}},
                "policy.drain_timeout_secs: must be above 0, not -1",
            ),
        ]
        for extra, message in cases:
            self.assertRejected({**base, **extra}, message)

    def test_portRange(self) -> None:
        self.assertRejected(
            {"models": {"a": model(port=65536)}},
            "models.a.port: must be from 1 to 65535, not 65536",
        )
        self.assertRejected(
            {"models": {"a": model()}, "port": 0},
            "port: must be from 1 to 65535, not 0",
        )

    def test_duplicatePorts(self) -> None:
        self.assertRejected(
            {"models": {"a": model(), "b": model()}},
            "models.b.port: port 8001 is already used by model 'a'",
        )

    @given(
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
            lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
            max_leaves=20,
        )
    )
    def test_anyDataConfigErrorOrConfig(self, data: Any) -> None:
        """
        Whatever a file decodes to, parsing gives a config or a ConfigError,
        never another exception.
        """
        try:
            parseConfig(data)
        except ConfigError as e:
            self.assertNotIn("\n", str(e))


def gpuModel(port: int, **extra: Any) -> dict[str, Any]:
    return {"port": port, "wake": "w", "sleep": "s", "alive": "a", **extra}


class ResidencyConfigTests(SynchronousTestCase):
    """
    The residency keys (SPEC section 9) and their one-line errors.
    """

    def assertRejected(self, data: Any, message: str) -> None:
        with self.assertRaises(ConfigError) as caught:
            parseConfig(data)
        self.assertEqual(str(caught.exception), message)

    def test_full(self) -> None:
        """
        The example of the spec loads, with every key as given.
        """
        config = parseConfig(
            {
                "capacity": {"gpu0": 80, "gpu1": 80, "ram": 256},
                "eviction": "cheapest_wake",
                "models": {
                    "chat": gpuModel(
                        8001,
                        resources={"gpu0": 70, "gpu1": 70},
                        asleep_resources={"ram": 140},
                        unload="./stop-chat.sh",
                        unload_after_secs=600,
                        idle_ttl_secs=1800,
                    ),
                    "coder": gpuModel(8002, resources=[{"gpu0": 30}, {"gpu1": 30}]),
                    "embed": gpuModel(
                        8003,
                        resources={"gpu0": 4},
                        pin=True,
                        preload=True,
                        max_in_flight=8,
                    ),
                },
            }
        )
        self.assertEqual(config.capacity, {"gpu0": 80, "gpu1": 80, "ram": 256})
        self.assertEqual(config.eviction, "cheapest_wake")
        chat, coder, embed = config.models
        self.assertEqual(chat.resources, ({"gpu0": 70, "gpu1": 70},))
        self.assertEqual(chat.asleep_resources, {"ram": 140})
        self.assertEqual(
            (chat.unload, chat.unload_after_secs, chat.idle_ttl_secs),
            ("./stop-chat.sh", 600, 1800),
        )
        self.assertEqual(coder.resources, ({"gpu0": 30}, {"gpu1": 30}))
        self.assertEqual(
            (embed.pin, embed.preload, embed.max_in_flight), (True, True, 8)
        )
        self.assertEqual(
            (coder.unload, coder.idle_ttl_secs, coder.pin, coder.max_in_flight),
            (None, None, False, None),
        )

    def test_defaults(self) -> None:
        """
        Without the new keys: no capacity (one model at a time), lru, and
        every model exclusive.
        """
        config = parseConfig({"models": {"a": gpuModel(1)}})
        self.assertIsNone(config.capacity)
        self.assertEqual(config.eviction, "lru")
        self.assertEqual(config.pools, {"*": 1.0})
        self.assertEqual(config.models[0].placementsWithin(config.pools), ({"*": 1.0},))

    def test_exclusiveWithCapacity(self) -> None:
        """
        A model without resources holds every pool entirely, its own
        asleep_resources included.
        """
        config = parseConfig(
            {
                "capacity": {"gpu": 80, "ram": 100},
                "models": {"a": gpuModel(1, asleep_resources={"ram": 30})},
            }
        )
        self.assertEqual(
            config.models[0].placementsWithin(config.pools), ({"gpu": 80, "ram": 70},)
        )

    def test_mistakes(self) -> None:
        cap = {"gpu": 80, "ram": 100}
        cases: list[tuple[dict[str, Any], str]] = [
            (
                {"capacity": [1], "models": {"a": gpuModel(1)}},
                "capacity: must be a mapping of pool name to units",
            ),
            (
                {"capacity": {}, "models": {"a": gpuModel(1)}},
                "capacity: is empty (name at least one pool, or leave capacity out)",
            ),
            (
                {"capacity": {"gpu": 0}, "models": {"a": gpuModel(1)}},
                "capacity.gpu: must be above 0, not 0",
            ),
            (
                {"models": {"a": gpuModel(1, resources={"gpu": 1})}},
                "models.a.resources: needs a top-level capacity table to count against",
            ),
            (
                {"capacity": cap, "models": {"a": gpuModel(1, resources={"gpu9": 1})}},
                "models.a.resources.gpu9: unknown pool (capacity has: gpu, ram)",
            ),
            (
                {"capacity": cap, "models": {"a": gpuModel(1, resources={"gpu": -2})}},
                "models.a.resources.gpu: must be above 0, not -2",
            ),
            (
                {"capacity": cap, "models": {"a": gpuModel(1, resources=[])}},
                "models.a.resources: is an empty list (give at least one placement)",
            ),
            (
                {
                    "capacity": cap,
                    "models": {"a": gpuModel(1, resources=[{"gpu": 1}, 3])},
                },
                "models.a.resources[1]: must be a mapping of pool name to units",
            ),
            (
                {"capacity": cap, "models": {"a": gpuModel(1, resources={"gpu": 90})}},
                "models.a.resources: can never fit: gpu needs 90 of 80",
            ),
            (
                {
                    "capacity": cap,
                    "models": {
                        "a": gpuModel(1, asleep_resources={"ram": 70}),
                        "b": gpuModel(
                            2, resources={"gpu": 10}, asleep_resources={"ram": 40}
                        ),
                    },
                },
                "models.b.asleep_resources: models without an unload hook keep their"
                " asleep_resources for good, and together ram needs 110 of 100",
            ),
            (
                {
                    "capacity": cap,
                    "models": {
                        "a": gpuModel(
                            1, resources={"gpu": 10}, asleep_resources={"ram": 70}
                        ),
                        "b": gpuModel(2, resources={"ram": 40}),
                    },
                },
                "models.b.resources: can never fit: ram needs 40 of 30 (beside the"
                " asleep_resources other models keep)",
            ),
            (
                {
                    "capacity": cap,
                    "models": {
                        "a": gpuModel(1, resources={"gpu": 50}, pin=True),
                        "b": gpuModel(
                            2, resources=[{"gpu": 40}, {"ram": 20}], pin=True
                        ),
                        "c": gpuModel(3, resources={"gpu": 40}, pin=True),
                    },
                },
                "models.c.pin: cannot be awake together with pinned model(s) a, b:"
                " their resources exceed the capacity",
            ),
            (
                {"models": {"a": gpuModel(1, pin=True), "b": gpuModel(2, pin=True)}},
                "models.b.pin: cannot be awake together with pinned model(s) a:"
                " without a capacity table, one model is awake at a time",
            ),
            (
                {"models": {"a": gpuModel(1, unload_after_secs=60)}},
                "models.a.unload_after_secs: needs an unload hook",
            ),
            (
                {"models": {"a": gpuModel(1, unload="")}},
                "models.a.unload: must be a non-empty script or a list of HTTP steps",
            ),
            (
                {"models": {"a": gpuModel(1, idle_ttl_secs=0)}},
                "models.a.idle_ttl_secs: must be above 0, not 0",
            ),
            (
                {"models": {"a": gpuModel(1, max_in_flight=0)}},
                "models.a.max_in_flight: must be a whole number of 1 or more, not 0",
            ),
            (
                {"models": {"a": gpuModel(1, pin="yes")}},
                "models.a.pin: must be true or false",
            ),
            (
                {"models": {"a": gpuModel(1)}, "eviction": ""},
                "eviction: must be a name, not ''",
            ),
        ]
        for data, message in cases:
            self.assertRejected(data, message)

    def test_pinnedPlacementsSearched(self) -> None:
        """
        Pinned models fit together when some choice of their placements
        does, not only their first placements.
        """
        parseConfig(
            {
                "capacity": {"gpu0": 80, "gpu1": 80},
                "models": {
                    "a": gpuModel(1, resources=[{"gpu0": 50}, {"gpu1": 50}], pin=True),
                    "b": gpuModel(2, resources=[{"gpu0": 50}, {"gpu1": 50}], pin=True),
                },
            }
        )

    def test_policyTable(self) -> None:
        """
        PolicyConfig.table() gives back every key of the policy table.
        """
        config = parseConfig(
            {
                "models": {"a": gpuModel(1)},
                "policy": {"drain_timeout_secs": 9, "max_queue": 3, "quantum_secs": 4},
            }
        )
        self.assertEqual(
            config.policy.table(),
            {
                "request_timeout_secs": None,
                "drain_before_switch": True,
                "drain_timeout_secs": 9,
                "min_active_secs": 0,
                "max_queue": 3,
                "quantum_secs": 4,
            },
        )
