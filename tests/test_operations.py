"""
End-to-end tests of operating llmux (SPEC section 11) over loopback: keys and
their scopes, aliases and C{served_model_name}, the C{/upstream/}
passthrough and CORS.
"""

from __future__ import annotations

import json
import os
from typing import Any

import treq
from twisted.trial.unittest import TestCase

from .test_e2e import Harness
from .test_switcher import CapturedEvents

TEAM = "team-a-secret-0123456789"
CI = "ci-secret-9876543210"
ADMIN = "admin-secret-abcdef"


class KeyTests(TestCase):
    """
    API keys, scopes and admin keys on proxied requests and llmux's own
    endpoints.
    """

    timeout = 30

    def setUp(self) -> None:
        for name, value in [("TEAM_KEY", TEAM), ("CI_KEY", CI), ("ADMIN_KEY", ADMIN)]:
            os.environ[name] = value
            self.addCleanup(os.environ.pop, name, None)
        self.events = CapturedEvents(self)
        self.h = Harness(self)
        self.base = self.h.start(
            {
                "chat": {
                    **self.h.recordingModel(self.h.backend("chat")),
                    "aliases": ["gpt-4o-mini"],
                },
                "embed": self.h.recordingModel(self.h.backend("embed")),
            },
            {
                "auth": {
                    "admin_keys": [{"name": "ops", "key_env": "ADMIN_KEY"}],
                    "api_keys": [
                        {"name": "team-a", "key_env": "TEAM_KEY", "models": ["chat"]},
                        {"name": "ci", "key_env": "CI_KEY"},
                    ],
                    "protect_metrics": True,
                }
            },
        )

    async def call(
        self, method: str, path: str, key: str | None = None, **kw: Any
    ) -> tuple[int, Any, Any]:
        headers = {"Content-Type": "application/json", **kw.pop("headers", {})}
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        response = await treq.request(
            method, self.base + path, headers=headers, pool=self.h.pool, **kw
        )
        body = await response.content()
        try:
            decoded = json.loads(body)
        except ValueError:
            decoded = body
        return response.code, decoded, response.headers

    def chatBody(self, model: str) -> bytes:
        return json.dumps({"model": model, "messages": []}).encode()

    async def test_noKey(self) -> None:
        """
        Without a key, proxied requests and llmux's read endpoints are 401
        with a Bearer challenge; nothing wakes; /health stays open.
        """
        for method, path, data in [
            ("POST", "/v1/chat/completions", self.chatBody("chat")),
            ("GET", "/v1/models", None),
            ("GET", "/llmux/status", None),
            ("GET", "/metrics", None),
        ]:
            code, body, headers = await self.call(method, path, data=data)
            self.assertEqual(code, 401, path)
            self.assertEqual(headers.getRawHeaders(b"www-authenticate"), [b"Bearer"])
            self.assertIn("API key", body["error"]["message"])
        self.assertEqual((await self.call("GET", "/health"))[0], 200)
        self.assertEqual(self.h.hooks(), [])

    async def test_wrongKey(self) -> None:
        """
        An unknown key, a malformed Authorization or an x-api-key that is
        not a key: 401.
        """
        for headers in [
            {"Authorization": "Bearer not-a-key"},
            {"Authorization": f"Basic {TEAM}"},
            {"Authorization": "Bearer " + "x" * 5000},
            {"x-api-key": "nope"},
        ]:
            code, body, _ = await self.call(
                "POST",
                "/v1/chat/completions",
                data=self.chatBody("chat"),
                headers=headers,
            )
            self.assertEqual(code, 401, headers)
            self.assertEqual(body["error"]["message"], "Invalid API key")

    async def test_scopes(self) -> None:
        """
        A scoped key may use its models, under any of their names, and gets
        403 for others before anything wakes; an unscoped key and an admin
        key may use every model; x-api-key works as Authorization does.
        """
        code, body, _ = await self.call(
            "POST", "/v1/chat/completions", TEAM, data=self.chatBody("gpt-4o-mini")
        )
        self.assertEqual((code, body["model"]), (200, "chat"))
        code, body, _ = await self.call(
            "POST", "/v1/chat/completions", TEAM, data=self.chatBody("embed")
        )
        self.assertEqual(code, 403)
        self.assertEqual(
            body["error"]["message"], "Key 'team-a' may not use model 'embed'"
        )
        self.assertEqual(self.h.hooks(), ["wake chat"])
        for key in (CI, ADMIN):
            code, body, _ = await self.call(
                "POST", "/v1/chat/completions", key, data=self.chatBody("embed")
            )
            self.assertEqual((code, body["model"]), (200, "embed"))
        code, _, _ = await self.call(
            "POST",
            "/v1/chat/completions",
            data=self.chatBody("embed"),
            headers={"x-api-key": CI},
        )
        self.assertEqual(code, 200)

    async def test_modelsPerKey(self) -> None:
        """
        /v1/models lists the models a key may use, each once with its
        aliases.
        """
        _, body, _ = await self.call("GET", "/v1/models", TEAM)
        self.assertEqual(
            [(m["id"], m["aliases"]) for m in body["data"]], [("chat", ["gpt-4o-mini"])]
        )
        _, body, _ = await self.call("GET", "/v1/models", CI)
        self.assertEqual([m["id"] for m in body["data"]], ["chat", "embed"])

    async def test_keyNotForwardedNorLogged(self) -> None:
        """
        The backend never sees the key; logs never show it (only its name);
        requests are counted by key name.
        """
        code, echoed, _ = await self.call(
            "POST",
            "/echo/x",
            CI,
            data=self.chatBody("chat"),
            headers={"x-api-key": CI},
        )
        self.assertEqual(code, 200)
        self.assertNotIn("authorization", echoed["headers"])
        self.assertNotIn("x-api-key", echoed["headers"])
        await self.call("POST", "/v1/chat/completions", "wrong", data=b"{}")
        _, metrics, _ = await self.call("GET", "/metrics", ADMIN)
        self.assertIn(b'llmux_requests_by_key_total{key="ci"} 1.0', metrics)
        logged = repr(self.events.events)
        for secret in (TEAM, CI, ADMIN):
            self.assertNotIn(secret, logged)
            self.assertNotIn(secret.encode(), metrics)


class NamingTests(TestCase):
    """
    Aliases, C{served_model_name} and C{/upstream/<model>/<path>}.
    """

    timeout = 30

    def setUp(self) -> None:
        self.h = Harness(self)
        self.base = self.h.start(
            {
                "chat": {
                    **self.h.recordingModel(self.h.backend("chat")),
                    "aliases": ["gpt-4o-mini"],
                    "served_model_name": "meta/llama-3",
                },
                "org/embed": {
                    "port": self.h.backend("org/embed"),
                    "wake": f'echo "wake $LLMUX_MODEL" >> {self.h.hookLog.path}',
                    "sleep": "true",
                    "alive": "false",
                },
            },
            {"cors": {"origins": ["https://app.example"]}},
        )

    async def test_aliasAndServedName(self) -> None:
        """
        An alias routes to its model, and the backend sees the model's
        served name in the body.
        """
        response = await self.h.post(
            self.base + "/echo/v1", {"model": "gpt-4o-mini", "n": 1}
        )
        echoed = await response.json()
        self.assertEqual(json.loads(echoed["body"]), {"model": "meta/llama-3", "n": 1})
        self.assertEqual(self.h.hooks(), ["wake chat"])

    async def test_upstream(self) -> None:
        """
        /upstream/<model>/<path> wakes the model and forwards the rest of
        the path and the query; a model name with a slash works encoded or
        not.
        """
        for path in [
            "/upstream/org/embed/echo/a?x=1",
            "/upstream/org%2Fembed/echo/a?x=1",
        ]:
            response = await treq.get(self.base + path, pool=self.h.pool)
            echoed = await response.json()
            self.assertEqual(echoed.get("path"), "/echo/a?x=1", echoed)
        self.assertEqual(self.h.hooks(), ["wake org/embed"])

    async def test_upstreamTricks(self) -> None:
        """
        Dot segments, encoded or not, and unknown models get clean JSON
        errors, and nothing wakes.
        """
        for path, code in [
            ("/upstream/../llmux/reload", 400),
            ("/upstream/chat/../../llmux/status", 400),
            ("/upstream/%2e%2e/llmux/reload", 400),
            ("/upstream/chat/%2E/x", 400),
            ("/upstream/nope/x", 404),
            ("/upstream/", 404),
        ]:
            response = await treq.get(self.base + path, pool=self.h.pool)
            self.assertEqual(response.code, code, path)
            body = await response.json()
            self.assertIn("error", body)
        self.assertEqual(self.h.hooks(), [])

    async def test_cors(self) -> None:
        """
        llmux answers preflights itself and marks answers for an allowed
        origin, streaming or not.
        """
        response = await treq.request(
            "OPTIONS",
            self.base + "/v1/chat/completions",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type, authorization",
            },
            pool=self.h.pool,
        )
        self.assertEqual(response.code, 204)
        self.assertEqual(
            response.headers.getRawHeaders(b"access-control-allow-origin"),
            [b"https://app.example"],
        )
        await response.content()
        self.assertEqual(self.h.hooks(), [])
        response = await treq.post(
            self.base + "/v1/chat/completions",
            json.dumps({"model": "chat", "messages": []}).encode(),
            headers={
                "Content-Type": "application/json",
                "Origin": "https://app.example",
            },
            pool=self.h.pool,
        )
        self.assertEqual(
            response.headers.getRawHeaders(b"access-control-allow-origin"),
            [b"https://app.example"],
        )
        await response.content()
