# -*- test-case-name: tests.test_hookconfig -*-
"""
What a model's hooks are, as the config file gives them (SPEC section 10).

A hook (C{wake}, C{sleep}, C{alive}, C{unload}) is one of:

  - a shell script (a string), run by C{sh -c} as in llmux 2.4.0;
  - a list of HTTP steps (L{HttpStep}), called in order on the model's port;
  - a L{Managed} action on the model's own process, when the model has a
    C{command} (L{ProcessConfig}) and the file leaves that hook out.

This module parses and checks those forms; L{llmux.hooks} runs them. It
imports nothing of llmux's, so L{llmux.config} can build on it.
"""

from __future__ import annotations

import enum
import os
import shlex
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import attrs

__all__ = [
    "HTTP_METHODS",
    "Hook",
    "HttpStep",
    "Managed",
    "ProcessConfig",
    "StepError",
    "parseCommand",
    "parseHookValue",
    "parseStep",
]

#: The methods a step may use.
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
STEP_KEYS = (
    "method",
    "path",
    "url",
    "json",
    "body",
    "headers",
    "expect",
    "expect_json",
    "timeout_secs",
)
#: Seconds a managed process has between SIGTERM and SIGKILL by default.
DEFAULT_STOP_TIMEOUT_SECS = 30.0


class StepError(Exception):
    """
    A malformed hook value: C{field} (relative to the hook) and a message,
    turned into a L{llmux.config.ConfigError} by the caller.
    """

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(field, message)
        self.field = field
        self.message = message


class Managed(enum.Enum):
    """
    What llmux does with a model's own process in place of a hook.
    """

    #: Start the process (unless it runs) and wait until it is ready.
    START = "start"
    #: SIGTERM to its process group, SIGKILL after C{stop_timeout_secs}.
    STOP = "stop"
    #: Alive: the process runs and its C{ready} check answers.
    READY = "ready"


def _frozenMapping(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@attrs.frozen
class HttpStep:
    """
    One HTTP call of a hook.

    @ivar target: a path on the model's port (C{/sleep?level=1}) or a whole
        URL.
    @ivar json: the JSON body, or C{None} for none (C{hasJSON} tells a JSON
        C{null} apart).
    @ivar expect: the statuses that count as success; empty: any 2xx.
    @ivar expectJSON: keys the answer's JSON object must have, with these
        values; empty: the body is not looked at.
    @ivar timeoutSecs: how long the step may take, within the hook's own
        timeout; C{None}: only the hook's.
    """

    method: str
    target: str
    json: object = None
    hasJSON: bool = False
    body: bytes | None = None
    headers: Mapping[str, str] = attrs.field(factory=dict, converter=_frozenMapping)
    expect: tuple[int, ...] = ()
    expectJSON: Mapping[str, object] = attrs.field(
        factory=dict, converter=_frozenMapping
    )
    timeoutSecs: float | None = None

    def url(self, port: int) -> str:
        """
        The URL this step calls for a model on C{port}.
        """
        if self.target.startswith("/"):
            return f"http://127.0.0.1:{port}{self.target}"
        return self.target

    def describe(self) -> str:
        """
        C{"POST /sleep?level=1"}: how errors and logs name the step.
        """
        return f"{self.method} {self.target}"

    def accepts(self, status: int) -> bool:
        """
        Whether C{status} counts as success.
        """
        return status in self.expect if self.expect else 200 <= status < 300


#: A hook as the config gives it (see the module docstring).
Hook = str | tuple[HttpStep, ...] | Managed


@attrs.frozen
class ProcessConfig:
    """
    A backend process llmux owns (C{command:} and its companions).

    @ivar argv: what to run: the command's words, or C{sh -c <command>} when
        it needs a shell.
    @ivar env: added to llmux's environment.
    @ivar cwd: where it runs (absolute).
    @ivar ready: the check that says it is ready to serve.
    """

    argv: tuple[str, ...]
    env: Mapping[str, str] = attrs.field(factory=dict, converter=_frozenMapping)
    cwd: str = "."
    ready: HttpStep = HttpStep("GET", "/health")
    stop_timeout_secs: float = DEFAULT_STOP_TIMEOUT_SECS

    @property
    def commandLine(self) -> str:
        """
        The command as one line, for logs and messages.
        """
        if self.argv[:2] == ("/bin/sh", "-c"):
            return self.argv[2]
        return shlex.join(self.argv)


#: Characters that make a command a shell script rather than a list of words.
_SHELL_SYNTAX = set("|&;<>()$`\\\"'*?[]#~=%{}\n")


def parseCommand(value: Any) -> tuple[str, ...]:
    """
    C{command:} as the argv to run: a list of words as it is; a string
    split into words, or run by C{sh -c} if it uses shell syntax (pipes,
    quotes, variables, redirections).

    @raise StepError: if it is empty or not text.
    """
    if isinstance(value, list):
        if not value or not all(isinstance(w, str) and w for w in value):
            raise StepError(None, "must be a non-empty string or list of strings")
        return tuple(value)
    if not isinstance(value, str) or not value.strip():
        raise StepError(None, "must be a non-empty string or list of strings")
    if _SHELL_SYNTAX & set(value):
        return ("/bin/sh", "-c", value)
    return tuple(value.split())


def parseHookValue(value: Any) -> str | tuple[HttpStep, ...]:
    """
    A hook as the file gives it: a shell script, or a list of HTTP steps.

    @raise StepError: naming the step at fault.
    """
    if isinstance(value, str):
        if not value.strip():
            raise StepError(None, "must be a non-empty script or a list of HTTP steps")
        return value
    if isinstance(value, list):
        if not value:
            raise StepError(None, "is an empty list (give at least one HTTP step)")
        return tuple(_indexed(i, parseStep, item) for i, item in enumerate(value))
    raise StepError(None, "must be a shell script (a string) or a list of HTTP steps")


def _indexed(index: int, parse: Callable[[Any], HttpStep], item: Any) -> HttpStep:
    try:
        return parse(item)
    except StepError as e:
        field = f"[{index}]" + (f".{e.field}" if e.field else "")
        raise StepError(field, e.message) from None


def parseStep(value: Any) -> HttpStep:
    """
    One HTTP step: a mapping, or a path (C{"/health"}: a GET).

    @raise StepError: naming the key at fault.
    """
    if isinstance(value, str):
        value = {"path": value}
    if not isinstance(value, dict):
        raise StepError(None, "must be a mapping (method, path or url, ...) or a path")
    for key in value:
        if key not in STEP_KEYS:
            raise StepError(
                str(key), f"unknown key (expected one of: {', '.join(STEP_KEYS)})"
            )
    if "json" in value and "body" in value:
        raise StepError("body", "give json or body, not both")
    return HttpStep(
        method=_method(value.get("method", "GET")),
        target=_target(value),
        json=value.get("json"),
        hasJSON="json" in value,
        body=_body(value),
        headers=_headers(value.get("headers", {})),
        expect=_expect(value.get("expect")),
        expectJSON=_expectJSON(value.get("expect_json", {})),
        timeoutSecs=_timeout(value.get("timeout_secs")),
    )


def _method(value: Any) -> str:
    if not isinstance(value, str) or value.upper() not in HTTP_METHODS:
        raise StepError(
            "method", f"must be one of {', '.join(HTTP_METHODS)}, not {value!r}"
        )
    return value.upper()


def _target(step: Mapping[str, Any]) -> str:
    if ("path" in step) == ("url" in step):
        raise StepError(None, "give either path (on the model's port) or url")
    if "path" in step:
        path = step["path"]
        if not isinstance(path, str) or not path.startswith("/") or _unsafe(path):
            raise StepError("path", f"must be a path starting with '/', not {path!r}")
        return path
    url = step["url"]
    if not isinstance(url, str) or _unsafe(url):
        raise StepError("url", f"must be an http:// or https:// URL, not {url!r}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError:
        raise StepError("url", f"is not a valid URL: {url!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise StepError("url", f"must be an http:// or https:// URL, not {url!r}")
    return url


def _unsafe(text: str) -> bool:
    """
    Whether C{text} holds characters no URL may carry (spaces, controls).
    """
    return any(c.isspace() or not c.isprintable() for c in text)


def _body(step: Mapping[str, Any]) -> bytes | None:
    if "body" not in step:
        return None
    body = step["body"]
    if not isinstance(body, str):
        raise StepError("body", "must be a string (use json for structured data)")
    return body.encode("utf-8")


def _headers(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and k and isinstance(v, str) for k, v in value.items()
    ):
        raise StepError("headers", "must be a mapping of header name to string")
    for name, text in value.items():
        if _unsafe(name) or any(c in text for c in "\r\n\0"):
            raise StepError(f"headers.{name!r}", "holds characters a header cannot")
    return value


def _expect(value: Any) -> tuple[int, ...]:
    if value is None:
        return ()
    codes = value if isinstance(value, list) else [value]
    if not codes or not all(
        isinstance(c, int) and not isinstance(c, bool) and 100 <= c <= 599
        for c in codes
    ):
        raise StepError("expect", "must be an HTTP status or a list of them")
    return tuple(codes)


def _expectJSON(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise StepError("expect_json", "must be a mapping of key to expected value")
    return value


def _timeout(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise StepError("timeout_secs", f"must be a positive number, not {value!r}")
    return float(value)


def resolveDirectory(directory: str, value: Any) -> str:
    """
    C{cwd:} relative to the config file's directory.

    @raise StepError: if it is not a non-empty string.
    """
    if not isinstance(value, str) or not value:
        raise StepError(None, "must be a directory (a non-empty string)")
    return os.path.normpath(os.path.join(directory, os.path.expanduser(value)))
