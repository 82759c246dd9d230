# -*- test-case-name: tests.test_switcher -*-
"""
The errors llmux reports to clients, as exceptions.

Each carries the message a client sees; the web layer maps the class to an
HTTP status. The switcher raises them without knowing about HTTP.
"""

from __future__ import annotations

__all__ = [
    "LlmuxError",
    "ModelCannotFit",
    "ModelNotFound",
    "CannotPin",
    "ModelNotReady",
    "NoUnloadHook",
    "RequestTimedOut",
    "SwitchFailed",
]


class LlmuxError(Exception):
    """
    An error with a message meant for the client.

    @ivar retryAfterSecs: when the client may try again, for the
        C{Retry-After} header, or C{None}.
    """

    retryAfterSecs: float | None = None

    @property
    def message(self) -> str:
        return str(self)


class ModelNotFound(LlmuxError):
    """
    The request named a model that is not in the config.
    """

    def __init__(self, model: str):
        super().__init__(f"Model not found: {model}")
        self.model = model


class RequestTimedOut(LlmuxError):
    """
    The request waited longer than the policy's request timeout.
    """

    def __init__(self, model: str, timeoutSecs: float):
        super().__init__("Request timed out waiting for model")
        self.model = model
        self.timeoutSecs = timeoutSecs


class SwitchFailed(LlmuxError):
    """
    The wake hook of the requested model failed.
    """

    def __init__(self, model: str, detail: str):
        super().__init__(f"Hook failed for {model}: {detail}")
        self.model = model
        self.detail = detail


class ModelNotReady(LlmuxError):
    """
    The model cannot take the request now (its queue is full, llmux is
    shutting down): a 503, which, like every 503 of llmux's, tells the client
    when to try again.
    """

    retryAfterSecs: float | None = 5.0

    def __init__(self, model: str, reason: str):
        super().__init__(f"Model not ready: {model} ({reason})")
        self.model = model
        self.reason = reason


class ModelCannotFit(LlmuxError):
    """
    The model could only fit by evicting pinned models, which are never
    evicted for another model: refused at once rather than queued.
    """

    def __init__(self, model: str, pinned: tuple[str, ...], retryAfterSecs: float):
        names = ", ".join(pinned)
        super().__init__(
            f"Model {model} cannot fit: capacity held by pinned models {names}"
        )
        self.model = model
        self.pinned = pinned
        self.retryAfterSecs = retryAfterSecs


class NoUnloadHook(LlmuxError):
    """
    An unload was asked of a model that has no C{unload} hook (a 409).
    """

    def __init__(self, model: str):
        super().__init__(f"Model {model} has no unload hook")
        self.model = model


class CannotPin(LlmuxError):
    """
    A pin was asked that would leave pinned models unable to be awake
    together (a 409).
    """

    def __init__(self, model: str, why: str):
        super().__init__(f"Cannot pin {model}: {why}")
        self.model = model
