# -*- test-case-name: tests.test_hooks_http -*-
"""
Running a hook that is a list of HTTP steps (SPEC section 10): each step is
one call on the model's port (or a URL), made in order with treq; the hook
fails at the first step that cannot connect, answers an unexpected status
or body, or runs out of time, and its error names that step.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from treq.client import HTTPClient
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from llmux.config import ModelConfig
from llmux.hookconfig import HttpStep
from llmux.interfaces import HookResult

__all__ = ["callStep", "runSteps", "stepLimit"]

#: How much of an unexpected answer an error quotes.
QUOTED_BODY = 200


def runSteps(
    client: HTTPClient,
    clock: IReactorTime,
    model: ModelConfig,
    hook: str,
    steps: Sequence[HttpStep],
    timeout: float | None,
) -> Deferred[HookResult]:
    """
    Run C{steps} in order as C{hook} of C{model}, all within C{timeout}
    seconds (C{None}: each step's own limit only).

    @return: fires with a L{HookResult} however the hook ended.
    """
    return Deferred.fromCoroutine(_run(client, clock, model, hook, steps, timeout))


async def _run(
    client: HTTPClient,
    clock: IReactorTime,
    model: ModelConfig,
    hook: str,
    steps: Sequence[HttpStep],
    timeout: float | None,
) -> HookResult:
    started = clock.seconds()
    for number, step in enumerate(steps, 1):
        limit = stepLimit(step, timeout, clock.seconds() - started)
        error = await callStep(client, clock, step, model.port, limit)
        if error is not None:
            return HookResult.ranNoProcess(
                model.name,
                hook,
                clock.seconds() - started,
                f"step {number} ({step.describe()}): {error}",
                timedOut=error.startswith("timed out"),
            )
    return HookResult.ranNoProcess(model.name, hook, clock.seconds() - started)


def stepLimit(step: HttpStep, timeout: float | None, elapsed: float) -> float | None:
    """
    The time C{step} has: its own limit, within what is left of the hook's.
    """
    left = None if timeout is None else max(timeout - elapsed, 0.0)
    limits = [t for t in (step.timeoutSecs, left) if t is not None]
    return min(limits) if limits else None


async def callStep(
    client: HTTPClient,
    clock: IReactorTime,
    step: HttpStep,
    port: int,
    limit: float | None,
) -> str | None:
    """
    Make one step's call.

    @return: C{None} if it succeeded, else why not, in a few words.
    """
    call = Deferred.fromCoroutine(_call(client, step, port))
    if limit is not None:
        call.addTimeout(limit, clock, onTimeoutCancel=_timedOut)
    try:
        return await call
    except Exception as e:
        return _describeError(e)


def _timedOut(result: object, timeout: float) -> str:
    """
    What a step that ran out of time ends with, whatever its cancellation
    produced (treq reports it in several ways).
    """
    return f"timed out after {timeout:g}s"


async def _call(client: HTTPClient, step: HttpStep, port: int) -> str | None:
    headers: dict[bytes | str, bytes | str] = {
        name: value for name, value in step.headers.items()
    }
    data: bytes | None = step.body
    if step.hasJSON:
        data = json.dumps(step.json).encode("utf-8")
        if not any(name.lower() == "content-type" for name in step.headers):
            headers["Content-Type"] = "application/json"
    response = await client.request(
        step.method,
        step.url(port),
        headers=headers,
        data=data,
        allow_redirects=False,
    )
    body = await response.content()
    if not step.accepts(response.code):
        return f"status {response.code}{_quoted(body)}"
    if step.expectJSON:
        return _checkJSON(step, body)
    return None


def _checkJSON(step: HttpStep, body: bytes) -> str | None:
    """
    Whether the answer is a JSON object with the expected values.
    """
    try:
        answer: Any = json.loads(body)
    except ValueError:
        return f"answer is not JSON{_quoted(body)}"
    if not isinstance(answer, dict):
        return f"answer is not a JSON object{_quoted(body)}"
    for key, expected in step.expectJSON.items():
        if answer.get(key) != expected:
            return (
                f"{key} is {json.dumps(answer.get(key))},"
                f" expected {json.dumps(expected)}"
            )
    return None


def _quoted(body: bytes) -> str:
    text = body.decode("utf-8", "replace").strip()
    if not text:
        return ""
    if len(text) > QUOTED_BODY:
        text = text[:QUOTED_BODY] + "..."
    return f": {' '.join(text.split())}"


def _describeError(error: Exception) -> str:
    """
    A connection error in a few words (C{connection refused}, ...).
    """
    reasons = getattr(error, "reasons", None)
    if reasons:
        error = reasons[0].value
    text = str(error).strip() or type(error).__name__
    return " ".join(text.split())
