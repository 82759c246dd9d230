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
from twisted.web.http import RESPONSES
from twisted.web.resource import Resource
from twisted.web.server import Request

from llmux.errors import (
    CannotPin,
    LlmuxError,
    ModelCannotFit,
    ModelNotFound,
    ModelNotReady,
    NoUnloadHook,
    RequestTimedOut,
    SwitchFailed,
)

__all__ = [
    "BODY_UNREADABLE",
    "INTERNAL_ERROR",
    "MALFORMED_REQUEST",
    "NO_MODEL",
    "REQUEST_LINE_TOO_LONG",
    "STATUS_FOR_ERROR",
    "MethodNotAllowed",
    "backendErrorMessage",
    "backendTimeoutMessage",
    "bodyTimeoutMessage",
    "bodyTooLargeMessage",
    "describeBackendFailure",
    "errorBody",
    "errorResponse",
    "headersTooLargeMessage",
    "idleTimeoutMessage",
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
#: The message of the 400 for a request twisted.web could not parse: a bad
#: request line, header line, C{Content-Length} or chunked body framing.
MALFORMED_REQUEST = "Malformed request"
#: The message of the 414 for a request line longer than the line limit.
REQUEST_LINE_TOO_LONG = "Request line too long"

#: The HTTP status for each error the switcher reports.
STATUS_FOR_ERROR: Mapping[type[LlmuxError], int] = {
    ModelNotFound: 404,
    RequestTimedOut: 504,
    SwitchFailed: 500,
    ModelNotReady: 503,
    ModelCannotFit: 503,
    NoUnloadHook: 409,
    CannotPin: 409,
}

_JSON = b"application/json"

#: Reason phrases twisted.web's table lacks (RFC 6585).
_PHRASES = {431: b"Request Header Fields Too Large"}


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


def errorResponse(status: int, message: str) -> bytes:
    """
    A whole HTTP/1.1 response carrying a JSON error, ending with
    C{Connection: close}: for the answers llmux writes straight to a
    connection, outside twisted.web's request machinery (a request refused
    before its body was read, a request that could not be parsed).

    HTTP/1.1 is the right version whatever the client spoke: a server
    answers with the highest version it conforms to (RFC 9110 6.2).
    """
    body = errorBody(message)
    phrase = RESPONSES.get(status, _PHRASES.get(status, b"Error"))
    return b"".join(
        [
            b"HTTP/1.1 %d %s\r\n" % (status, phrase),
            b"Content-Type: application/json\r\n",
            b"Content-Length: %d\r\n" % (len(body),),
            b"Connection: close\r\n",
            b"\r\n",
            body,
        ]
    )


def bodyTooLargeMessage(limitBytes: int) -> str:
    """
    The message of the 413 for a request body over the limit.
    """
    return f"Request body too large: limit is {limitBytes} bytes"


def bodyTimeoutMessage(timeoutSecs: float) -> str:
    """
    The message of the 408 for a request whose head and body did not all
    arrive in time.
    """
    return f"Request body not received within {timeoutSecs:g}s"


def idleTimeoutMessage(idleSecs: float) -> str:
    """
    The message of the 408 for a client that fell silent mid-request.
    """
    return f"Request body not received: nothing arrived for {idleSecs:g}s"


def headersTooLargeMessage(limitBytes: int, limitCount: int) -> str:
    """
    The message of the 431 for a request head over the limits.
    """
    return (
        f"Request headers too large: limit is {limitBytes} bytes"
        f" and {limitCount} headers"
    )


def backendTimeoutMessage(timeoutSecs: float) -> str:
    """
    The message of the 504 for a backend that sent no response headers in
    time.
    """
    return f"Backend timed out: no response within {timeoutSecs:g}s"


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
