# -*- test-case-name: tests.test_web_extract -*-
"""
Finding the model a request asks for, from its raw body.

llmux routes on the C{model} field of the request body and nothing else. OpenAI
clients send it in a JSON object (chat, completions, embeddings) or, for audio
transcription, as a C{multipart/form-data} field. These functions are pure and
never raise: whatever a client sends, the answer is a model name or C{None}
(which the proxy turns into a 404).
"""

from __future__ import annotations

import json

from multipart import MultipartSegment, PushMultipartParser, parse_options_header

__all__ = ["extractModel"]

_MULTIPART_FORM = b"multipart/form-data"


def extractModel(body: bytes, contentType: bytes | None) -> str | None:
    """
    The model a request body names, if it names one.

    @param body: the whole request body.
    @param contentType: the request's C{Content-Type} header, if it had one.
    @return: for a C{multipart/form-data} body, the value of its C{model}
        field; otherwise, the C{model} member of the body read as a JSON
        object, if that member is a string. C{None} in every other case:
        an empty, truncated, non-UTF-8 or non-JSON body, a JSON value that is
        not an object, a C{model} that is not a string.
    """
    if contentType is not None and _isMultipartForm(contentType):
        return _modelFromMultipart(body, contentType)
    return _modelFromJSON(body)


def _modelFromJSON(body: bytes) -> str | None:
    """
    The string C{model} member of a JSON object body, or C{None}.
    """
    if not body:
        return None
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        # ValueError covers malformed JSON and bytes that are not UTF-8/16/32
        # (UnicodeDecodeError); RecursionError covers absurdly deep nesting.
        return None
    if not isinstance(document, dict):
        return None
    model = document.get("model")
    return model if isinstance(model, str) else None


def _isMultipartForm(contentType: bytes) -> bool:
    """
    Whether a C{Content-Type} value is C{multipart/form-data}, parameters aside.
    """
    return contentType.split(b";", 1)[0].strip().lower() == _MULTIPART_FORM


def _modelFromMultipart(body: bytes, contentType: bytes) -> str | None:
    """
    The C{model} field of a C{multipart/form-data} body, or C{None}.

    Parsed with U{multipart<https://pypi.org/project/multipart/>}, which treq
    itself depends on. Its push parser finds part boundaries with C{bytes}
    searches and hands out the parts' bodies without parsing them, so a 25 MB
    audio upload costs milliseconds; the standard library's C{email} parser
    (C{cgi} is gone from Python 3.13) walks such a body line by line and held
    the reactor for over half a second. Parsing stops at the end of the
    C{model} field.
    """
    try:
        _, options = parse_options_header(contentType.decode("latin-1"))
        boundary = options.get("boundary")
        if not boundary:
            return None
        parser = PushMultipartParser(boundary)
        value: list[bytes] | None = None
        for event in parser.parse(body):
            if isinstance(event, MultipartSegment):
                value = [] if event.name == "model" else None
            elif event is None:
                if value is not None:
                    return b"".join(value).decode("utf-8")
            elif value is not None:
                value.append(event)
    except ValueError:
        # multipart.MultipartError (a ValueError) for a malformed or
        # truncated body; UnicodeDecodeError for a value that is not UTF-8.
        return None
    return None
