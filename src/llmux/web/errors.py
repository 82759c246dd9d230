# -*- test-case-name: tests.test_web_proxy -*-
"""
The JSON errors llmux answers with, and which HTTP status each one gets.

twisted.web's own error pages are HTML; OpenAI clients expect
C{{"error": {"message": ..., "type": ...}}}. Everything llmux itself answers
with goes through L{renderError}, so the body shape and the
C{Content-Type: application/json} header are the same everywhere.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Request

from llmux.errors import (
    LlmuxError,
    ModelNotFound,
    ModelNotReady,
    RequestTimedOut,
    SwitchFailed,
)

__all__ = [
    "BODY_UNREADABLE",
    "INTERNAL_ERROR",
    "NO_MODEL",
    "STATUS_FOR_ERROR",
    "MethodNotAllowed",
    "backendErrorMessage",
    "describeBackendFailure",
    "errorBody",
    "renderError",
    "statusForError",
    "writeError",
]

#: The message of the 404 for a request whose body names no model.
NO_MODEL = "No model specified in request"
#: The message of the 400 for a request whose body could not be read.
BODY_UNREADABLE = "Request body could not be read"
#: The message of the 500 for a bug in llmux (the details go to the log).
INTERNAL_ERROR = "Internal error"

#: The HTTP status for each error the switcher reports.
STATUS_FOR_ERROR: Mapping[type[LlmuxError], int] = {
    ModelNotFound: 404,
    RequestTimedOut: 504,
    SwitchFailed: 500,
    ModelNotReady: 503,
}

_JSON = b"application/json"


def errorBody(message: str) -> bytes:
    """
    The JSON body of an llmux error.
    """
    return json.dumps({"error": {"message": message, "type": "llmux_error"}}).encode(
        "utf-8"
    )


def renderError(request: Request, status: int, message: str) -> bytes:
    """
    Set C{request}'s status and headers for a JSON error and return its body,
    for a C{render} method to return.
    """
    body = errorBody(message)
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", _JSON)
    request.setHeader(b"Content-Length", b"%d" % (len(body),))
    return body


def writeError(request: Request, status: int, message: str) -> None:
    """
    Answer a request whose C{render} returned C{NOT_DONE_YET} with a JSON
    error, and finish it. The response must not have started.
    """
    request.write(renderError(request, status, message))
    request.finish()


def statusForError(error: BaseException) -> int | None:
    """
    The HTTP status for an error the switcher reported, or C{None} if
    C{error} is not one of llmux's own (then it is a bug: answer 500).
    """
    for cls, status in STATUS_FOR_ERROR.items():
        if isinstance(error, cls):
            return status
    return None


def backendErrorMessage(failure: Failure) -> str:
    """
    The message of the 502 for a backend that failed before it answered:
    C{Backend error: } and the reason, in one line.
    """
    return f"Backend error: {describeBackendFailure(failure)}"


def describeBackendFailure(failure: Failure) -> str:
    """
    Why a backend request failed, in one line.

    The agent wraps the reasons that matter in C{ResponseNeverReceived},
    C{ResponseFailed} and friends (each with a C{reasons} list of
    failures); the first wrapped reason is the one an operator needs.
    """
    error = failure.value
    while True:
        reasons = getattr(error, "reasons", None)
        if not reasons or not isinstance(reasons[0], Failure):
            break
        error = reasons[0].value
    return str(error).strip() or type(error).__name__


class MethodNotAllowed(Resource):
    """
    A JSON 405 for a method an llmux endpoint does not serve, with the
    C{Allow} header the status requires.
    """

    isLeaf = True

    def __init__(self, allowedMethods: Sequence[bytes]) -> None:
        super().__init__()
        self._allow = b", ".join(allowedMethods)

    def render(self, request: Request) -> bytes:
        request.setHeader(b"Allow", self._allow)
        method = request.method.decode("latin-1")
        return renderError(request, 405, f"Method not allowed: {method}")
