"""
Hostile inputs on llmux's keys, admin API, C{/upstream/} passthrough and
CORS (SPEC section 11), end to end over loopback.

One llmux, started from a config file with an admin key, two API keys (one
scoped to one model), CORS on for one origin and a small body limit, is sent
a table of hostile requests as raw bytes (so that malformed headers, dot
segments and odd methods reach it exactly as written). Each must get a clean
JSON 4xx, run no hook and no admin action, and show no configured secret in
its answer; at the end no log event shows a secret, nothing a shell
character could have run has run, and llmux still serves a normal request.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any, cast
from urllib.parse import quote

import attrs
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from llmux.logs import eventAsDict

from .test_admin import AdminHarness
from .test_switcher import CapturedEvents

reactor: Any = _reactor

ADMIN = "adm1n-S3cret-q7Zk2Lw9"
TEAM = "team-S3cret-Vb8nR4xM"
CI = "ci-S3cret-Hy6tP3jQ"
SECRETS = (ADMIN, TEAM, CI)
ORIGIN = "https://app.example"
#: The body limit llmux is configured with (C{max_body_bytes}).
MAX_BODY = 16384
#: How long llmux waits for a request to arrive (C{body_timeout_secs}).
BODY_TIMEOUT = 2.0
#: How long one hostile request may take before the test calls it a hang.
REQUEST_TIMEOUT = 10.0

#: Answers that carry no body.
_NO_BODY = (204, 304)


@attrs.frozen
class Case:
    """
    One hostile request and the answer it must get.

    @ivar name: what the case tries, for failure messages.
    @ivar raw: the whole request, as written to the socket.
    @ivar status: the status llmux must answer with (or one of them).
    @ivar message: a text the error message must contain, if any.
    @ivar headers: response headers that must have exactly these values
        (lower-case names); C{None} as a value: must be absent.
    @ivar bug: why this case is marked: a product bug it revealed (the case
        asserts the correct behaviour).
    """

    name: str
    raw: bytes
    status: int | tuple[int, ...]
    message: str | None = None
    headers: Mapping[bytes, bytes | None] = attrs.field(factory=dict)
    bug: str | None = None

    @property
    def method(self) -> bytes:
        return self.raw.split(b" ", 1)[0]


def request(
    method: bytes | str,
    target: bytes | str,
    headers: Sequence[tuple[bytes | str, bytes | str]] = (),
    body: bytes | None = None,
    key: str | None = None,
    contentLength: int | None = None,
) -> bytes:
    """
    An HTTP/1.1 request as raw bytes, asking the server to close the
    connection after answering.

    @param key: sent as C{Authorization: Bearer <key>}.
    @param contentLength: the declared length, if not C{len(body)}.
    """
    lines = [
        _bytes(method) + b" " + _bytes(target) + b" HTTP/1.1",
        b"Host: 127.0.0.1",
        b"Connection: close",
    ]
    if key is not None:
        lines.append(b"Authorization: Bearer " + key.encode())
    lines.extend(_bytes(name) + b": " + _bytes(value) for name, value in headers)
    if body is not None or contentLength is not None:
        length = len(body or b"") if contentLength is None else contentLength
        lines.append(b"Content-Type: application/json")
        lines.append(b"Content-Length: %d" % (length,))
    return b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode("latin-1")


def chat(model: object) -> bytes:
    """
    A chat completion request body naming C{model}.
    """
    return json.dumps(
        {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    ).encode()


@attrs.define
class RawResponse:
    """
    A response as received: status, headers (lower-case names), body.
    """

    raw: bytes
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> list[bytes]:
        return [value for key, value in self.headers if key == name]


def parseResponse(raw: bytes, head: bool = False) -> RawResponse | None:
    """
    The response C{raw} holds, if it holds a complete one (by its
    C{Content-Length}; one without it is complete only when the connection
    closes, so C{None} until then).
    """
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = raw[:end].split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers.append((name.strip().lower(), value.strip()))
    body = raw[end + 4 :]
    if head or status in _NO_BODY:
        return RawResponse(raw, status, headers, b"")
    lengths = [value for name, value in headers if name == b"content-length"]
    if len(lengths) != 1:
        return None
    length = int(lengths[0])
    if len(body) < length:
        return None
    return RawResponse(raw, status, headers, body[:length])


class RawClient(Protocol):
    """
    Writes a request as raw bytes and collects the response until it is
    complete or the connection closes.
    """

    def __init__(self, data: bytes, head: bool) -> None:
        self.data = data
        self.head = head
        self.received = b""
        self.done: Deferred[RawResponse] = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.data)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if self.done.called:
            return
        response = parseResponse(self.received, self.head)
        if response is not None:
            self.done.callback(response)
            self.transport.loseConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.done.called:
            return
        end = self.received.find(b"\r\n\r\n")
        if end < 0:
            self.done.errback(
                AssertionError(
                    f"connection closed without an answer: {self.received!r}"
                )
            )
            return
        # Complete by closing: whatever followed the head is the body.
        response = parseResponse(self.received[: end + 4], head=True)
        assert response is not None
        response.body = self.received[end + 4 :]
        self.done.callback(response)


class AllEvents:
    """
    Every log event published while a test runs, with or without an
    C{event} field.
    """

    def __init__(self, case: TestCase) -> None:
        self.events: list[LogEvent] = []
        observe = cast(ILogObserver, self.events.append)
        globalLogPublisher.addObserver(observe)
        case.addCleanup(globalLogPublisher.removeObserver, observe)

    def text(self) -> str:
        """
        Every event as a log file would show it (message, fields, any
        traceback), and as its repr.
        """
        return "\n".join(
            json.dumps(eventAsDict(event), default=repr) + repr(event)
            for event in self.events
        )


class HostileInputTests(TestCase):
    """
    Hostile requests on the keys, the admin API, C{/upstream/} and CORS get
    clean JSON 4xx answers and do nothing.
    """

    timeout = 120

    def setUp(self) -> None:
        for name, value in [("SEC_ADMIN", ADMIN), ("SEC_TEAM", TEAM), ("SEC_CI", CI)]:
            os.environ[name] = value
            self.addCleanup(os.environ.pop, name, None)
        self.events = CapturedEvents(self)
        self.everything = AllEvents(self)
        self.h = AdminHarness(self)
        self.config = {
            "models": {
                "chat": self.h.recordingModel(self.h.backend("chat")),
                "embed": self.h.recordingModel(self.h.backend("embed")),
            },
            "auth": {
                "admin_keys": [{"name": "ops", "key_env": "SEC_ADMIN"}],
                "api_keys": [
                    {"name": "team", "key_env": "SEC_TEAM", "models": ["chat"]},
                    {"name": "ci", "key_env": "SEC_CI"},
                ],
            },
            "cors": {"origins": [ORIGIN]},
            "max_body_bytes": MAX_BODY,
            "body_timeout_secs": BODY_TIMEOUT,
        }
        base = self.h.startFile(self.config)
        self.port = int(base.rsplit(":", 1)[1])
        # What a shell would touch or remove if a model name ever reached one.
        self.pwned = self.h.directory.child("pwned")
        self.canary = self.h.directory.child("canary")
        self.canary.setContent(b"still here")

    async def send(self, raw: bytes) -> RawResponse:
        """
        Send C{raw} to llmux on a new connection; the response, or a
        failure after L{REQUEST_TIMEOUT}.
        """
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port)
        client = RawClient(raw, head=raw.startswith(b"HEAD "))
        await connectProtocol(endpoint, client)
        done = client.done
        done.addTimeout(REQUEST_TIMEOUT, reactor)
        try:
            return await done
        finally:
            if client.transport is not None:
                client.transport.abortConnection()  # type: ignore[attr-defined]

    def cases(self) -> list[Case]:
        pwned = self.pwned.path
        canary = self.canary.path
        completions = "/v1/chat/completions"
        wake = "/llmux/models/chat/wake"
        reload = "/llmux/reload"
        challenge = {b"www-authenticate": b"Bearer"}
        allowPost = {b"allow": b"POST"}
        big = "x" * 10_000
        shell = [
            f"$(touch {pwned})",
            f"`touch {pwned}`",
            f"chat;rm -rf {canary}",
            f"chat && touch {pwned} #",
        ]
        cases = [
            # Authorization and x-api-key, on a proxied request.
            Case(
                "Authorization without a scheme",
                request("POST", completions, [("Authorization", CI)], chat("chat")),
                401,
                "Invalid API key",
                challenge,
            ),
            Case(
                "Authorization: Bearer with nothing",
                request(
                    "POST", completions, [("Authorization", "Bearer")], chat("chat")
                ),
                401,
                "Invalid API key",
                challenge,
            ),
            Case(
                "Authorization: Bearer and spaces only",
                request(
                    "POST", completions, [("Authorization", "Bearer    ")], chat("chat")
                ),
                401,
                "Invalid API key",
                challenge,
            ),
            Case(
                "Bearer with a 10 KB token",
                request(
                    "POST",
                    completions,
                    [("Authorization", "Bearer " + "k" * 10_240)],
                    chat("chat"),
                ),
                401,
                "Invalid API key",
                challenge,
            ),
            Case(
                "Bearer with a 20 KB token (over the header line limit)",
                request(
                    "POST",
                    completions,
                    [("Authorization", "Bearer " + "k" * 20_480)],
                    chat("chat"),
                ),
                431,
                "Request headers too large",
            ),
            Case(
                "two Authorization headers, both valid keys",
                request(
                    "POST",
                    completions,
                    [
                        ("Authorization", f"Bearer {CI}"),
                        ("Authorization", f"Bearer {TEAM}"),
                    ],
                    chat("chat"),
                ),
                401,
                "Invalid API key",
                challenge,
            ),
            Case(
                "Basic credentials carrying a valid key",
                request(
                    "POST",
                    completions,
                    [
                        (
                            "Authorization",
                            "Basic " + base64.b64encode(f"ci:{CI}".encode()).decode(),
                        )
                    ],
                    chat("chat"),
                ),
                401,
                "Invalid API key",
                challenge,
            ),
            Case(
                "Basic credentials with the bare key",
                request(
                    "POST",
                    completions,
                    [("Authorization", f"Basic {CI}")],
                    chat("chat"),
                ),
                401,
                "Invalid API key",
            ),
            Case(
                "Bearer with a tab instead of a space",
                request(
                    "POST",
                    completions,
                    [("Authorization", f"Bearer\t{CI}")],
                    chat("chat"),
                ),
                401,
                "Invalid API key",
            ),
            Case(
                "non-ASCII bytes in Authorization",
                request(
                    "POST",
                    completions,
                    [(b"Authorization", b"Bearer \xff\xfe\xc3\xa9\x80" + CI.encode())],
                    chat("chat"),
                ),
                401,
                "Invalid API key",
            ),
            Case(
                "a valid key with a trailing NUL (a malformed header)",
                request(
                    "POST",
                    completions,
                    [(b"Authorization", b"Bearer " + CI.encode() + b"\x00")],
                    chat("chat"),
                ),
                400,
                "Malformed request",
            ),
            Case(
                "a valid key with a prefix of a valid key",
                request("POST", completions, body=chat("chat"), key=CI[:-1]),
                401,
                "Invalid API key",
            ),
            Case(
                "x-api-key overlong (5000 bytes)",
                request("POST", completions, [("x-api-key", "k" * 5000)], chat("chat")),
                401,
                "Invalid API key",
            ),
            Case(
                "x-api-key twice",
                request(
                    "POST",
                    completions,
                    [("x-api-key", CI), ("x-api-key", CI)],
                    chat("chat"),
                ),
                401,
                "Invalid API key",
            ),
            Case(
                "an empty x-api-key",
                request("POST", completions, [("x-api-key", "")], chat("chat")),
                401,
                "Invalid API key",
            ),
            Case(
                "no key on llmux's status",
                request("GET", "/llmux/status"),
                401,
                "Missing API key",
                challenge,
            ),
            # /upstream/ path tricks, with a key that may use every model.
            Case(
                "/upstream/../llmux/reload with the admin key",
                request("POST", "/upstream/../llmux/reload", key=ADMIN),
                400,
                "'.' and '..' are not allowed",
            ),
            Case(
                "/upstream/%2e%2e/llmux/reload with the admin key",
                request("POST", "/upstream/%2e%2e/llmux/reload", key=ADMIN),
                400,
                "'.' and '..' are not allowed",
            ),
            # One segment, "../llmux/reload" once decoded: looked up as a
            # model name, which no model has (404), or refused as a dot
            # segment (400); either way nothing is reached.
            Case(
                "/upstream/%2E%2E%2Fllmux%2Freload with the admin key",
                request("POST", "/upstream/%2E%2E%2Fllmux%2Freload", key=ADMIN),
                (400, 404),
            ),
            # PRODUCT BUG: routing.upstreamTarget checks each raw segment,
            # percent-decoded, against "." and "..", but "..%2f..%2fllmux"
            # decodes to "../../llmux", which is not split again: llmux
            # takes the model to be chat, wakes it (a hook runs) and forwards
            # /..%2f..%2fllmux to its backend, whose own answer (here the
            # fake backend's 404) comes back. The dot-segment rule ("encoded
            # or not") should refuse it with a 400 before anything wakes.
            Case(
                "/upstream/chat/..%2f..%2fllmux",
                request("GET", "/upstream/chat/..%2f..%2fllmux", key=CI),
                400,
                "'.' and '..' are not allowed",
                bug=(
                    "'..%2f..%2fllmux' decodes to '../../llmux' but is not"
                    " refused: chat wakes and its backend gets /..%2f..%2fllmux"
                ),
            ),
            # PRODUCT BUG: the same, with the dots encoded too.
            Case(
                "/upstream/chat/%2e%2e%2f%2e%2e%2fhealth",
                request("GET", "/upstream/chat/%2e%2e%2f%2e%2e%2fhealth", key=CI),
                400,
                "'.' and '..' are not allowed",
                bug=(
                    "'%2e%2e%2f%2e%2e%2fhealth' decodes to '../../health' but is"
                    " not refused: it is forwarded to chat's backend"
                ),
            ),
            Case(
                "/upstream/chat/%2e%2e",
                request("GET", "/upstream/chat/%2e%2e", key=CI),
                400,
                "'.' and '..' are not allowed",
            ),
            Case(
                "/upstream/ alone",
                request("GET", "/upstream/", key=CI),
                404,
                "Model not found",
            ),
            Case(
                "/upstream/ and a 5000-character model",
                request("GET", "/upstream/" + "m" * 5000 + "/x", key=CI),
                404,
                "Model not found",
            ),
            Case(
                "/upstream/ and a 20000-character request line",
                request("GET", "/upstream/" + "m" * 20_000, key=CI),
                414,
                "Request line too long",
            ),
            Case(
                # twisted.web refuses the request line before any routing.
                "/upstream/ with raw non-ASCII bytes",
                request("GET", b"/upstream/\xff\xfe/x", key=CI),
                400,
                "Malformed request",
            ),
            Case(
                "/upstream/ with an encoded NUL",
                request("GET", "/upstream/%00/x", key=CI),
                404,
                "Model not found",
            ),
            Case(
                "/upstream/ to a model outside the key's scope",
                request("GET", "/upstream/embed/health", key=TEAM),
                403,
                "may not use model 'embed'",
            ),
            Case(
                "/upstream/ without a key",
                request("GET", "/upstream/chat/health"),
                401,
                "Missing API key",
                challenge,
            ),
            # The admin API: paths.
            Case(
                "admin action on an unknown model",
                request("POST", "/llmux/models/nope/wake", key=ADMIN),
                404,
                "Model not found: nope",
            ),
            Case(
                "unknown admin action",
                request("POST", "/llmux/models/chat/explode", key=ADMIN),
                404,
                "Unknown admin action 'explode'",
            ),
            Case(
                "admin path with no action",
                request("POST", "/llmux/models/chat", key=ADMIN),
                404,
            ),
            Case(
                "admin path with nothing after /llmux/models/",
                request("POST", "/llmux/models/", key=ADMIN),
                404,
            ),
            Case(
                "admin path with '..' segments towards /llmux/reload",
                request("POST", "/llmux/models/chat/../../reload", key=ADMIN),
                404,
            ),
            Case(
                "admin path /llmux/models/../reload",
                request("POST", "/llmux/models/../reload", key=ADMIN),
                404,
            ),
            Case(
                "admin path with an encoded '..' model",
                request("POST", "/llmux/models/%2e%2e/wake", key=ADMIN),
                404,
                "Model not found",
            ),
            Case(
                "admin path with an encoded NUL model",
                request("POST", "/llmux/models/%00/wake", key=ADMIN),
                404,
                "Model not found",
            ),
            Case(
                "admin path with a model name ending in an encoded NUL",
                request("POST", "/llmux/models/chat%00/wake", key=ADMIN),
                404,
                "Model not found",
            ),
            Case(
                "admin path with an encoded slash in the model",
                request("POST", "/llmux/models/chat%2Fwake/wake", key=ADMIN),
                404,
                "Model not found",
            ),
            Case(
                "admin path with a 5000-character model",
                request("POST", "/llmux/models/" + "m" * 5000 + "/wake", key=ADMIN),
                404,
                "Model not found",
            ),
            Case(
                "admin path with invalid UTF-8 in the model",
                request("POST", "/llmux/models/%ff%fe/wake", key=ADMIN),
                404,
            ),
            Case(
                "absolute-form target naming /llmux/reload",
                request("POST", "http://evil.example/llmux/reload", key=ADMIN),
                404,
                "No model specified",
            ),
            # The admin API: who asks.
            Case(
                "admin action without a key",
                request("POST", wake),
                401,
                "Missing API key",
                challenge,
            ),
            Case(
                "admin action with an unknown key",
                request("POST", wake, key="not-a-key"),
                401,
                "Invalid API key",
                challenge,
            ),
            Case(
                "admin action with a scoped API key",
                request("POST", wake, key=TEAM),
                403,
                "Key 'team' is not an admin key",
            ),
            Case(
                "reload with an API key",
                request("POST", reload, key=CI),
                403,
                "Key 'ci' is not an admin key",
            ),
            Case(
                "admin action on an unknown model with an API key",
                request("POST", "/llmux/models/nope/wake", key=CI),
                403,
            ),
            # The admin API: methods other than POST.
            Case(
                "GET reload", request("GET", reload, key=ADMIN), 405, "GET", allowPost
            ),
            Case(
                "PUT reload",
                request("PUT", reload, body=b"{}", key=ADMIN),
                405,
                "PUT",
                allowPost,
            ),
            Case(
                "DELETE admin action",
                request("DELETE", wake, key=ADMIN),
                405,
                "DELETE",
                allowPost,
            ),
            Case(
                "OPTIONS reload without preflight headers",
                request("OPTIONS", reload, key=ADMIN),
                405,
                "OPTIONS",
                allowPost,
            ),
            Case(
                "OPTIONS from the allowed origin, not a preflight",
                request("OPTIONS", wake, [("Origin", ORIGIN)], key=ADMIN),
                405,
                "OPTIONS",
                {**allowPost, b"access-control-allow-origin": ORIGIN.encode()},
            ),
            Case(
                "HEAD reload", request("HEAD", reload, key=ADMIN), 405, None, allowPost
            ),
            Case(
                "HEAD admin action without a key",
                request("HEAD", wake),
                405,
                None,
                allowPost,
            ),
            Case(
                "TRACE admin action",
                request("TRACE", wake, key=ADMIN),
                405,
                "TRACE",
                allowPost,
            ),
            Case(
                "lower-case post on reload",
                request("post", reload, key=ADMIN),
                405,
                "post",
                allowPost,
            ),
            Case(
                "GET admin action without a key",
                request("GET", wake),
                405,
                "GET",
                allowPost,
            ),
            # Bodies.
            Case(
                "reload with a body over max_body_bytes",
                request("POST", reload, body=b"x" * (MAX_BODY * 4), key=ADMIN),
                413,
                f"limit is {MAX_BODY} bytes",
            ),
            Case(
                "reload declaring a 10 GB body, without a key",
                request("POST", reload, contentLength=10 * 1024**3),
                413,
                f"limit is {MAX_BODY} bytes",
            ),
            Case(
                "chunked body over max_body_bytes",
                _chunked(completions, b"{" + b" " * (MAX_BODY * 2), CI),
                413,
                f"limit is {MAX_BODY} bytes",
            ),
            Case(
                "a declared body that never arrives",
                request("POST", completions, body=b"{", contentLength=100, key=CI),
                408,
                "Request body not received",
            ),
            Case(
                "Content-Length and Transfer-Encoding both (smuggling)",
                request(
                    "POST",
                    completions,
                    [("Transfer-Encoding", "chunked")],
                    body=b"0\r\n\r\n",
                    key=CI,
                ),
                400,
                "Malformed request",
            ),
            Case(
                "negative Content-Length",
                request("POST", reload, body=b"", contentLength=-1, key=ADMIN),
                400,
                "Malformed request",
            ),
            Case(
                "JSON model that is an object",
                request("POST", completions, body=chat({"$ne": None}), key=CI),
                404,
                "No model specified",
            ),
            Case(
                "JSON model that is a 10 KB string",
                request("POST", completions, body=chat(big), key=CI),
                404,
                "Model not found",
            ),
            Case(
                "JSON model that is a 10 KB string, with a scoped key",
                request("POST", completions, body=chat(big), key=TEAM),
                403,
                "may not use model",
            ),
            Case(
                "JSON nested 5000 deep",
                request("POST", completions, body=b"[" * 5000 + b"]" * 5000, key=CI),
                404,
                "No model specified",
            ),
            Case(
                "a body that is not JSON",
                request("POST", completions, body=b"\xff\xfe{model: chat", key=CI),
                404,
                "No model specified",
            ),
            # CORS.
            Case(
                "preflight from a disallowed origin",
                request(
                    "OPTIONS",
                    completions,
                    [
                        ("Origin", "https://evil.example"),
                        ("Access-Control-Request-Method", "POST"),
                    ],
                ),
                403,
                "Origin not allowed: https://evil.example",
                {b"access-control-allow-origin": None},
            ),
            Case(
                "preflight of reload from the origin 'null'",
                request(
                    "OPTIONS",
                    reload,
                    [("Origin", "null"), ("Access-Control-Request-Method", "POST")],
                ),
                403,
                "Origin not allowed",
                {b"access-control-allow-origin": None},
            ),
            Case(
                "preflight from an origin that extends the allowed one",
                request(
                    "OPTIONS",
                    completions,
                    [
                        ("Origin", ORIGIN + ".evil.example"),
                        ("Access-Control-Request-Method", "POST"),
                    ],
                ),
                403,
                "Origin not allowed",
                {b"access-control-allow-origin": None},
            ),
            Case(
                "request from a disallowed origin, no key",
                request(
                    "POST",
                    completions,
                    [("Origin", "https://evil.example")],
                    chat("chat"),
                ),
                401,
                "Missing API key",
                {b"access-control-allow-origin": None},
            ),
        ]
        for name in shell:
            cases.append(
                Case(
                    f"shell characters in the JSON model: {name!r}",
                    request("POST", completions, body=chat(name), key=CI),
                    404,
                    "Model not found",
                )
            )
            cases.append(
                Case(
                    f"shell characters in an admin path: {name!r}",
                    request(
                        "POST",
                        "/llmux/models/" + _quote(name) + "/wake",
                        key=ADMIN,
                    ),
                    404,
                    "Model not found",
                )
            )
            cases.append(
                Case(
                    f"shell characters in an /upstream/ path: {name!r}",
                    request("GET", "/upstream/" + _quote(name) + "/x", key=CI),
                    404,
                    "Model not found",
                )
            )
        return cases

    def check(self, case: Case, response: RawResponse) -> list[str]:
        """
        What is wrong with C{response} as the answer to C{case}.
        """
        problems = []
        expected = case.status if isinstance(case.status, tuple) else (case.status,)
        if response.status not in expected:
            problems.append(f"status {response.status}, expected {case.status}")
        for secret in SECRETS:
            if secret.encode() in response.raw:
                problems.append("a configured key is in the response")
        for name, value in case.headers.items():
            got = response.header(name)
            if got != ([] if value is None else [value]):
                problems.append(f"header {name!r} is {got!r}, expected {value!r}")
        if case.method == b"HEAD" or response.status in _NO_BODY:
            if response.body:
                problems.append(f"a body: {response.body[:200]!r}")
            return problems
        if response.header(b"content-type") != [b"application/json"]:
            problems.append(f"content type {response.header(b'content-type')!r}")
        try:
            message = json.loads(response.body)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            problems.append(f"not a JSON error: {response.body[:200]!r}")
            return problems
        if not isinstance(message, str):
            problems.append(f"error.message is not a string: {message!r}")
        elif case.message is not None and case.message not in message:
            problems.append(f"message {message[:300]!r} lacks {case.message!r}")
        return problems

    async def test_hostileInputs(self) -> None:
        """
        Every hostile request gets its clean JSON 4xx, runs no hook and no
        admin action and shows no key; then no log event shows a key,
        nothing a shell could have run has run, and llmux still serves.
        """
        cases = self.cases()
        self.assertGreaterEqual(len(cases), 25)
        failures = []
        for case in cases:
            hooks = len(self.h.hooks())
            actions = len(self.events.named("admin_action"))
            try:
                response = await self.send(case.raw)
            except Exception as e:
                problems = [f"no answer: {e!r}"]
            else:
                problems = self.check(case, response)
            if len(self.h.hooks()) != hooks:
                problems.append(f"hooks ran: {self.h.hooks()[hooks:]}")
            if len(self.events.named("admin_action")) != actions:
                problems.append("an admin action ran")
            if problems:
                marked = f" [product bug: {case.bug}]" if case.bug else ""
                failures.append(f"{case.name}{marked}: {'; '.join(problems)}")

        self.assertFalse(self.pwned.exists(), "a shell ran a model name")
        self.assertEqual(self.canary.getContent(), b"still here")
        logged = self.everything.text() + repr(self.events.events)
        for secret in SECRETS:
            if secret in logged:
                failures.append("a configured key is in the log")

        # Not wedged: normal requests still work, the admin API too.
        response = await self.send(
            request("POST", "/v1/chat/completions", body=chat("chat"), key=TEAM)
        )
        self.assertEqual(response.status, 200, response.raw[:500])
        self.assertEqual(json.loads(response.body)["model"], "chat")
        response = await self.send(request("POST", "/llmux/reload", key=ADMIN))
        self.assertEqual(response.status, 200, response.raw[:500])
        response = await self.send(
            request("POST", "/llmux/models/chat/sleep", key=ADMIN)
        )
        self.assertEqual(response.status, 200, response.raw[:500])
        self.assertEqual(json.loads(response.body)["state"], "asleep")

        if failures:
            self.fail(
                f"{len(failures)} of {len(cases)} hostile requests were mishandled:\n"
                + "\n".join(failures)
            )


def _chunked(target: str, body: bytes, key: str) -> bytes:
    """
    A POST of C{body} with chunked transfer coding, in 1 KB chunks.
    """
    head = request("POST", target, [("Transfer-Encoding", "chunked")], key=key)
    pieces = [body[i : i + 1024] for i in range(0, len(body), 1024)]
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces)
    return head + chunks + b"0\r\n\r\n"


def _quote(text: str) -> str:
    """
    C{text} percent-encoded as a single path segment.
    """
    return quote(text, safe="")
