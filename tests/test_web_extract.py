"""
Tests for L{llmux.web.extract}: finding the model a request body names.
"""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from llmux.web.extract import extractModel

JSON = b"application/json"
BOUNDARY = b"----llmuxBoundary7MA4YWxk"
MULTIPART = b"multipart/form-data; boundary=" + BOUNDARY


def multipartBody(*fields: tuple[bytes, bytes, bytes | None]) -> bytes:
    """
    A C{multipart/form-data} body with C{BOUNDARY}, built by hand.

    @param fields: C{(name, value, filename)} for each part.
    """
    out = []
    for name, value, filename in fields:
        disposition = b'Content-Disposition: form-data; name="' + name + b'"'
        if filename is not None:
            disposition += b'; filename="' + filename + b'"'
            disposition += b"\r\nContent-Type: application/octet-stream"
        out.append(b"--" + BOUNDARY + b"\r\n" + disposition + b"\r\n\r\n" + value)
        out.append(b"\r\n")
    out.append(b"--" + BOUNDARY + b"--\r\n")
    return b"".join(out)


class JSONBodyTests(SynchronousTestCase):
    """
    A JSON body names its model in a string C{model} member of an object.
    """

    def test_model(self) -> None:
        """
        The C{model} member of a JSON object is the model.
        """
        body = json.dumps({"model": "llama", "messages": []}).encode()
        self.assertEqual(extractModel(body, JSON), "llama")

    def test_anyContentType(self) -> None:
        """
        The body is read as JSON whatever the C{Content-Type} says, or if
        there is none (clients are sloppy about it).
        """
        body = b'{"model": "llama"}'
        self.assertEqual(extractModel(body, None), "llama")
        self.assertEqual(extractModel(body, b"text/plain"), "llama")

    def test_unicodeModel(self) -> None:
        """
        A model name may be any string.
        """
        body = json.dumps({"model": "m\u00e9lange/7b"}).encode()
        self.assertEqual(extractModel(body, JSON), "m\u00e9lange/7b")

    def test_nonStringModel(self) -> None:
        """
        A C{model} that is not a string names no model.
        """
        for value in (1, None, True, ["llama"], {"name": "llama"}):
            body = json.dumps({"model": value}).encode()
            self.assertIsNone(extractModel(body, JSON), value)

    def test_noModel(self) -> None:
        """
        An object without C{model} names no model.
        """
        self.assertIsNone(extractModel(b'{"prompt": "hi"}', JSON))

    def test_notJSON(self) -> None:
        """
        A body that is not JSON names no model.
        """
        for body in (b"model=llama", b'{"model": "llama"', b"<xml/>", b"\x00"):
            self.assertIsNone(extractModel(body, JSON), body)

    def test_notUTF8(self) -> None:
        """
        A body that is not UTF-8 names no model.
        """
        self.assertIsNone(extractModel(b'{"model": "\xff\xfe"}', JSON))
        self.assertIsNone(extractModel(b"\xff\xfe\x00{", JSON))

    def test_empty(self) -> None:
        """
        An empty body names no model.
        """
        self.assertIsNone(extractModel(b"", JSON))
        self.assertIsNone(extractModel(b"", None))

    def test_notAnObject(self) -> None:
        """
        A JSON value other than an object names no model, even an array of
        objects that do.
        """
        for body in (b'[{"model": "llama"}]', b'"llama"', b"42", b"null"):
            self.assertIsNone(extractModel(body, JSON), body)

    def test_deepNesting(self) -> None:
        """
        Absurdly deep nesting is not a crash.
        """
        self.assertIsNone(extractModel(b"[" * 200_000, JSON))


class MultipartBodyTests(SynchronousTestCase):
    """
    A C{multipart/form-data} body (audio transcription) names its model in a
    C{model} field.
    """

    def test_modelField(self) -> None:
        """
        The value of the C{model} field is the model, wherever it is among
        the parts.
        """
        audio = b"RIFF\x00\x01\xff\r\n--not-the-boundary\r\n" * 100
        body = multipartBody(
            (b"file", audio, b"speech.wav"),
            (b"model", b"whisper-1", None),
            (b"language", b"en", None),
        )
        self.assertEqual(extractModel(body, MULTIPART), "whisper-1")

    def test_caseAndQuotedBoundary(self) -> None:
        """
        The media type is matched without regard to case, and a quoted
        boundary parameter works.
        """
        body = multipartBody((b"model", b"whisper-1", None))
        contentType = b'Multipart/Form-Data; boundary="' + BOUNDARY + b'"'
        self.assertEqual(extractModel(body, contentType), "whisper-1")

    def test_noModelField(self) -> None:
        """
        A form without a C{model} field names no model.
        """
        body = multipartBody((b"file", b"RIFF", b"a.wav"), (b"language", b"en", None))
        self.assertIsNone(extractModel(body, MULTIPART))

    def test_noBoundary(self) -> None:
        """
        A multipart C{Content-Type} without a boundary names no model.
        """
        body = multipartBody((b"model", b"whisper-1", None))
        self.assertIsNone(extractModel(body, b"multipart/form-data"))

    def test_truncated(self) -> None:
        """
        A body cut off before the C{model} field ends names no model.
        """
        body = multipartBody((b"file", b"RIFF", b"a.wav"), (b"model", b"whisper", None))
        cut = body.index(b"whisper") + 3
        self.assertIsNone(extractModel(body[:cut], MULTIPART))

    def test_notUTF8Value(self) -> None:
        """
        A C{model} field that is not UTF-8 names no model.
        """
        body = multipartBody((b"model", b"\xff\xfe", None))
        self.assertIsNone(extractModel(body, MULTIPART))

    def test_jsonBodyWithMultipartType(self) -> None:
        """
        A body is read as the C{Content-Type} says: JSON sent as multipart
        names no model.
        """
        self.assertIsNone(extractModel(b'{"model": "llama"}', MULTIPART))


class NeverRaisesTests(SynchronousTestCase):
    """
    Whatever a client sends, L{extractModel} answers and does not raise.
    """

    @given(
        body=st.binary(max_size=512),
        contentType=st.one_of(
            st.none(),
            st.binary(max_size=64),
            st.sampled_from([JSON, MULTIPART, b"multipart/form-data; boundary="]),
        ),
    )
    def test_arbitraryBytes(self, body: bytes, contentType: bytes | None) -> None:
        """
        Arbitrary bytes with an arbitrary content type give a string or
        C{None}.
        """
        result = extractModel(body, contentType)
        self.assertIsInstance(result, (str, type(None)))

    @given(
        prefix=st.binary(max_size=64),
        value=st.binary(max_size=32),
        cut=st.integers(min_value=0, max_value=400),
        contentType=st.sampled_from(
            [MULTIPART, b"multipart/form-data; boundary=" + BOUNDARY[:5]]
        ),
    )
    def test_mangledMultipart(
        self, prefix: bytes, value: bytes, cut: int, contentType: bytes
    ) -> None:
        """
        Multipart bodies with garbage in front, arbitrary values and cut at
        any point give a string or C{None}.
        """
        body = prefix + multipartBody((b"a", prefix, b"x"), (b"model", value, None))
        result = extractModel(body[:cut], contentType)
        self.assertIsInstance(result, (str, type(None)))
