# -*- test-case-name: tests.test_web_admin -*-
"""
The admin API (SPEC section 11): C{POST /llmux/models/<model>/<action>}
(C{wake}, C{sleep}, C{unload}, C{pin}, C{unpin}) and C{POST /llmux/reload},
answering JSON.

They need an admin key, or, with none configured, a local client
(L{llmux.web.auth.adminAccess}). Every action is logged as an
C{admin_action} event naming who asked (the key's name, or C{local}).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from llmux.configvalues import ConfigError
from llmux.errors import LlmuxError, ModelNotReady
from llmux.interfaces import ISwitcher, ModelState
from llmux.logs import observer
from llmux.settings import Settings
from llmux.web.auth import Denied, adminAccess, renderDenied
from llmux.web.errors import (
    INTERNAL_ERROR,
    MethodNotAllowed,
    renderError,
    statusForError,
    writeError,
)

__all__ = ["ADMIN_PREFIX", "RELOAD_PATH", "AdminResource"]

#: The paths of the per-model actions start so; the reload has its own.
ADMIN_PREFIX = b"/llmux/models/"
RELOAD_PATH = b"/llmux/reload"
ACTIONS = ("wake", "sleep", "unload", "pin", "unpin")
#: The most of a client's text an error message quotes.
QUOTED = 200

_log = Logger(observer=observer, namespace="llmux.web.admin")

#: Reloads the config file: fires with what changed, or fails with a
#: L{ConfigError} (nothing changed).
Reloader = Callable[[], Deferred[dict[str, Any]]]


class AdminResource(Resource):
    """
    The admin API's leaf.
    """

    isLeaf = True
    _notAllowed = MethodNotAllowed((b"POST",))

    def __init__(self, switcher: ISwitcher, settings: Settings, reload: Reloader):
        super().__init__()
        self._switcher = switcher
        self._settings = settings
        self._reload = reload

    def render(self, request: Request) -> bytes | int:
        if request.method != b"POST":
            return self._notAllowed.render(request)
        try:
            key = adminAccess(self._settings.config.auth, request)
        except Denied as denied:
            return renderDenied(request, denied)
        who = "local" if key is None else key.name
        if request.path == RELOAD_PATH:
            return self._answer(request, who, "reload", None, self._reload)
        found = self._action(request)
        if isinstance(found, bytes):
            return found
        model, action = found
        return self._answer(
            request, who, action, model, lambda: self._run(model, action)
        )

    def _action(self, request: Request) -> tuple[str, str] | bytes:
        """
        The model and action C{request} names, or the body of its 404.
        """
        rest = request.path[len(ADMIN_PREFIX) :]
        encoded, _, action = rest.rpartition(b"/")
        try:
            name = unquote(encoded.decode("ascii"), errors="strict")
            verb = action.decode("ascii")
        except UnicodeError:
            return renderError(request, 404, "Unknown admin path")
        if verb not in ACTIONS:
            return renderError(
                request,
                404,
                f"Unknown admin action {verb[:QUOTED]!r}"
                f" (expected one of: {', '.join(ACTIONS)})",
            )
        config = self._settings.model(name)
        if config is None:
            return renderError(request, 404, f"Model not found: {name[:QUOTED]}")
        return config.name, verb

    def _run(self, model: str, action: str) -> Deferred[dict[str, Any]]:
        """
        Do C{action} on C{model}; fires with the answer's body.
        """
        switcher = self._switcher
        if action == "wake":
            done = Deferred.fromCoroutine(_wake(switcher, model))
        elif action == "sleep":
            done = switcher.sleepModel(model)
        elif action == "unload":
            done = switcher.unloadModel(model)
        else:
            try:
                switcher.pin(model, action == "pin")
            except LlmuxError as e:
                return fail(e)
            done = succeed(_stateOf(switcher, model))

        def answer(state: ModelState | None) -> dict[str, Any]:
            if state is None:
                # Shutdown began first: exclusive work no longer runs.
                raise ModelNotReady(model, "llmux is shutting down")
            return {"model": model, "action": action, "state": state.value}

        return done.addCallback(answer)

    def _answer(
        self,
        request: Request,
        who: str,
        action: str,
        model: str | None,
        act: Callable[[], Deferred[dict[str, Any]]],
    ) -> int:
        """
        Log the action, do it, and answer C{request} with its outcome as
        JSON.
        """
        _log.info(
            "admin {action}{on} by {by}",
            event="admin_action",
            action=action,
            model=model,
            on="" if model is None else f" of {model}",
            by=who,
        )

        gone: list[Failure] = []
        request.notifyFinish().addErrback(gone.append)

        def succeeded(body: dict[str, Any]) -> None:
            if not gone:
                data = json.dumps(body).encode("utf-8")
                request.setHeader(b"Content-Type", b"application/json")
                request.setHeader(b"Content-Length", b"%d" % (len(data),))
                request.write(data)
                request.finish()

        def failed(failure: Failure) -> None:
            if gone:
                return
            error = failure.value
            if isinstance(error, ConfigError):
                writeError(request, 400, str(error))
                return
            status = statusForError(error) if isinstance(error, LlmuxError) else None
            if status is None:
                _log.failure("admin {action} failed", failure, action=action)
                writeError(request, 500, INTERNAL_ERROR)
                return
            retryAfter = getattr(error, "retryAfterSecs", None)
            if retryAfter is not None:
                request.setHeader(b"Retry-After", b"%d" % (math.ceil(retryAfter),))
            writeError(request, status, str(error))

        act().addCallbacks(succeeded, failed)
        return NOT_DONE_YET


async def _wake(switcher: ISwitcher, model: str) -> ModelState:
    """
    Make C{model} awake as a request would (the policy decides when), and
    hold no slot on it.
    """
    slot = await switcher.acquire(model)
    slot.release()
    return _stateOf(switcher, model)


def _stateOf(switcher: ISwitcher, model: str) -> ModelState:
    for view in switcher.views():
        if view.name == model:
            return view.state
    raise LlmuxError(f"Model not found: {model}")
