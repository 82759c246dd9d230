"""
Tests for the C{auth:}, C{cors:} and C{loading_feedback} settings and model
names (C{aliases}, C{served_model_name}) of the config.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from llmux.accessconfig import CorsConfig, Key
from llmux.config import Config, ConfigError, modelNames, parseConfig

SECRET = "s3cr3t-key-for-tests"


def config(directory: str = "/", **top: Any) -> Config:
    """
    A config of models C{chat} (alias C{gpt-4o-mini}) and C{embed}, with the
    given top-level settings.
    """
    models = {
        "chat": {
            "port": 8001,
            "wake": "w",
            "sleep": "s",
            "alive": "a",
            "aliases": ["gpt-4o-mini", "llama3"],
            "served_model_name": "meta-llama/Llama-3-8B",
        },
        "embed": {"port": 8002, "wake": "w", "sleep": "s", "alive": "a"},
    }
    return parseConfig({"models": models, **top}, directory)


class AuthTests(SynchronousTestCase):
    """
    Keys come from the environment or a file; scopes name known models.
    """

    def setUp(self) -> None:
        os.environ["LLMUX_TEST_KEY"] = SECRET
        self.addCleanup(os.environ.pop, "LLMUX_TEST_KEY", None)

    def test_keys(self) -> None:
        """
        Admin and API keys are read, with their scopes; an alias is a name
        a scope may use.
        """
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write("other-key\n")
        auth = config(
            auth={
                "admin_keys": [{"name": "ops", "key_env": "LLMUX_TEST_KEY"}],
                "api_keys": [
                    {"name": "ci", "key_file": path, "models": ["chat", "llama3"]}
                ],
                "protect_metrics": True,
            }
        ).auth
        self.assertEqual(auth.admin_keys, (Key("ops", SECRET.encode()),))
        self.assertEqual(
            auth.api_keys,
            (Key("ci", b"other-key", frozenset({"chat"})),),
        )
        self.assertTrue(auth.protect_metrics)
        self.assertNotIn(SECRET, repr(auth))

    def test_noAuth(self) -> None:
        """
        Without C{auth:}, there are no keys.
        """
        auth = config().auth
        self.assertEqual((auth.admin_keys, auth.api_keys), ((), ()))

    def test_mistakes(self) -> None:
        """
        Each mistake is one line, and none shows a secret.
        """
        cases = [
            ({"api_keys": {}}, "auth.api_keys: must be a list of keys"),
            (
                {"api_keys": [{"name": "a"}]},
                "auth.api_keys[0]: give either key_env or key_file",
            ),
            (
                {"api_keys": [{"name": "a", "key_env": "LLMUX_NO_SUCH_VARIABLE"}]},
                "auth.api_keys[0].key_env: environment variable LLMUX_NO_SUCH_VARIABLE is not set",
            ),
            (
                {"api_keys": [{"name": "a", "key_file": "/no/such/file"}]},
                "auth.api_keys[0].key_file: cannot read /no/such/file: No such file or directory",
            ),
            (
                {
                    "api_keys": [
                        {"name": "a", "key_env": "LLMUX_TEST_KEY", "models": ["x"]}
                    ]
                },
                "auth.api_keys[0].models: unknown model 'x'",
            ),
            (
                {
                    "admin_keys": [
                        {"name": "a", "key_env": "LLMUX_TEST_KEY", "models": []}
                    ]
                },
                "auth.admin_keys[0].models: unknown key (expected one of: name, key_env, key_file)",
            ),
            (
                {
                    "admin_keys": [{"name": "a", "key_env": "LLMUX_TEST_KEY"}],
                    "api_keys": [{"name": "b", "key_env": "LLMUX_TEST_KEY"}],
                },
                "auth: keys 'a' and 'b' are the same",
            ),
            (
                {
                    "api_keys": [
                        {"name": "a", "key_env": "LLMUX_TEST_KEY"},
                        {"name": "a", "key_env": "HOME"},
                    ]
                },
                "auth: two keys are named 'a'",
            ),
            (
                {"api_keys": [{"key_env": "LLMUX_TEST_KEY"}]},
                "auth.api_keys[0].name: must be a non-empty name",
            ),
            (
                {"tokens": []},
                "auth.tokens: unknown key (expected one of: admin_keys, api_keys, protect_metrics)",
            ),
        ]
        for auth, message in cases:
            with self.subTest(auth=auth):
                with self.assertRaises(ConfigError) as caught:
                    config(auth=auth)
                self.assertEqual(str(caught.exception), message)
                self.assertNotIn(SECRET, str(caught.exception))

    def test_badSecrets(self) -> None:
        """
        An empty key, or one with spaces or non-ASCII characters, is refused
        without being quoted.
        """
        for secret, message in [
            ("  \n", "the key is empty"),
            ("two words", "the key must be 1 to 4096 printable ASCII characters"),
            ("kéy", "the key must be 1 to 4096 printable ASCII characters"),
            ("x" * 4097, "the key must be 1 to 4096 printable ASCII characters"),
        ]:
            with self.subTest(secret=secret):
                os.environ["LLMUX_TEST_KEY"] = secret
                with self.assertRaises(ConfigError) as caught:
                    config(
                        auth={"api_keys": [{"name": "a", "key_env": "LLMUX_TEST_KEY"}]}
                    )
                self.assertIn(message, str(caught.exception))
                self.assertNotIn(secret.strip() or "@@", str(caught.exception))


class CorsTests(SynchronousTestCase):
    """
    C{cors.origins}: a list of origins, or C{"*"}.
    """

    def test_origins(self) -> None:
        cors = config(
            cors={"origins": ["https://app.example", "http://localhost:5173"]}
        ).cors
        self.assertTrue(cors.allows("https://app.example"))
        self.assertFalse(cors.allows("https://evil.example"))
        self.assertTrue(config(cors={"origins": "*"}).cors.allows("https://any"))
        self.assertEqual(config().cors, CorsConfig())
        self.assertFalse(config().cors.allows("https://app.example"))

    def test_mistakes(self) -> None:
        for cors, message in [
            ({"origins": ["app.example"]}, 'cors.origins: must be "*" or a list'),
            ({"origins": ["https://app.example/path"]}, "cors.origins: must be"),
            ({"origins": "https://a"}, "cors.origins: must be"),
            ({"origin": "*"}, "cors.origin: unknown key"),
            ("*", "cors: must be a mapping"),
        ]:
            with self.subTest(cors=cors):
                with self.assertRaises(ConfigError) as caught:
                    config(cors=cors)
                self.assertTrue(
                    str(caught.exception).startswith(message), str(caught.exception)
                )


class NamingTests(SynchronousTestCase):
    """
    Aliases and C{served_model_name}.
    """

    def test_names(self) -> None:
        """
        Every alias names its model; C{served_model_name} is kept.
        """
        c = config()
        names = modelNames(c.models)
        self.assertEqual(
            {name: model.name for name, model in names.items()},
            {"chat": "chat", "gpt-4o-mini": "chat", "llama3": "chat", "embed": "embed"},
        )
        self.assertEqual(c.models[0].served_model_name, "meta-llama/Llama-3-8B")
        self.assertIsNone(c.models[1].served_model_name)

    def test_clashes(self) -> None:
        """
        An alias may name one model only, and never another model's name.
        """
        for aliasesOfB, message in [
            (["chat"], "models.b.aliases: 'chat' already names model 'chat'"),
            (["x", "x"], "models.b.aliases: lists a name twice"),
            ([""], "models.b.aliases: must be a list of model names"),
            ("x", "models.b.aliases: must be a list of model names"),
        ]:
            with self.subTest(aliases=aliasesOfB):
                with self.assertRaises(ConfigError) as caught:
                    parseConfig(
                        {
                            "models": {
                                "chat": {
                                    "port": 1,
                                    "wake": "w",
                                    "sleep": "s",
                                    "alive": "a",
                                },
                                "b": {
                                    "port": 2,
                                    "wake": "w",
                                    "sleep": "s",
                                    "alive": "a",
                                    "aliases": aliasesOfB,
                                },
                            }
                        }
                    )
                self.assertEqual(str(caught.exception), message)

    def test_loadingFeedback(self) -> None:
        """
        C{loading_feedback} is off by default; YAML's bare C{off} is off.
        """
        self.assertEqual(config().loading_feedback, "off")
        self.assertEqual(config(loading_feedback=False).loading_feedback, "off")
        self.assertEqual(
            config(loading_feedback="reasoning").loading_feedback, "reasoning"
        )
        with self.assertRaises(ConfigError) as caught:
            config(loading_feedback="loud")
        self.assertEqual(
            str(caught.exception),
            "loading_feedback: must be one of off, comments, reasoning, not 'loud'",
        )
