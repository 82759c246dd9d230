# -*- test-case-name: tests.test_web_routing -*-
"""
Which model a request is for, when it does not say so in its body, and
what the backend is sent: the C{/upstream/<model>/<path>} passthrough and
the C{served_model_name} rewrite (SPEC section 11).
"""

from __future__ import annotations

import json
from collections.abc import Container
from urllib.parse import unquote

import attrs

__all__ = ["UPSTREAM_PREFIX", "BadUpstreamPath", "rewriteModel", "upstreamTarget"]

#: Requests under this path go to the named model's backend as they are.
UPSTREAM_PREFIX = b"/upstream/"
#: The most of a client's text an error message quotes.
QUOTED = 200


@attrs.frozen
class BadUpstreamPath(Exception):
    """
    An C{/upstream/...} path llmux refuses: the HTTP status and why.
    """

    status: int
    message: str


def upstreamTarget(uri: bytes, names: Container[str]) -> tuple[str, str]:
    """
    The model an C{/upstream/<model>/<path>} request is for, and the path
    and query its backend is asked for.

    The model is the longest run of leading segments that names a model
    (percent-decoded), so C{/upstream/Qwen/Qwen3-8B/metrics} and
    C{/upstream/Qwen%2FQwen3-8B/metrics} both reach C{Qwen/Qwen3-8B}.

    @raise BadUpstreamPath: 404 if no model is named; 400 for a path with
        C{.} or C{..} segments (encoded or not), which could mean another
        path to whoever normalizes it.
    """
    try:
        target = uri[len(UPSTREAM_PREFIX) :].decode("ascii")
    except UnicodeDecodeError:
        raise BadUpstreamPath(400, "Bad upstream path: not ASCII") from None
    path, mark, query = target.partition("?")
    segments = path.split("/")
    # A decoded segment may hold encoded slashes: check what it splits into.
    if any(p in (".", "..") for s in segments for p in unquote(s).split("/")):
        raise BadUpstreamPath(400, "Bad upstream path: '.' and '..' are not allowed")
    for count in range(len(segments), 0, -1):
        model = unquote("/".join(segments[:count]))
        if model in names:
            rest = "/" + "/".join(segments[count:])
            return model, rest + mark + query
    shown = unquote(segments[0])[:QUOTED]
    raise BadUpstreamPath(404, f"Model not found: {shown}")


def rewriteModel(body: bytes, name: str) -> bytes:
    """
    C{body} with its JSON C{model} set to C{name}; any other body (not
    JSON, not an object, no C{model}) as it is.
    """
    try:
        data = json.loads(body)
    except ValueError:
        return body
    if not isinstance(data, dict) or "model" not in data:
        return body
    data["model"] = name
    return json.dumps(data, ensure_ascii=False).encode("utf-8")
