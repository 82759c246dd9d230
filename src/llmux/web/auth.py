# -*- test-case-name: tests.test_web_auth -*-
"""
Who is asking (SPEC section 11): the key a request presents, and what it may
do with it.

  - Proxied requests need an API key (C{Authorization: Bearer <key>} or
    C{x-api-key: <key>}) once C{auth.api_keys} is set; a key may be scoped to
    some models. Admin keys may do anything an API key may.
  - llmux's own read endpoints (C{/v1/models}, C{/llmux/status}, and
    C{/metrics} with C{protect_metrics}) need any valid key once keys are
    configured; C{/health} never does.
  - The admin API needs an admin key, or, with no admin key configured, a
    client on the loopback interface or a unix socket.

Keys are compared in constant time, against every configured key, and never
logged: messages and metrics show a key's name only.
"""

from __future__ import annotations

import hmac

import attrs
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.web.server import Request

from llmux.accessconfig import MAX_KEY_BYTES, AuthConfig, Key
from llmux.web.errors import renderError

__all__ = [
    "Denied",
    "adminAccess",
    "apiKey",
    "keyAccess",
    "readAccess",
    "renderDenied",
    "scopeDenied",
]

_BEARER = b"bearer "


@attrs.frozen
class Denied(Exception):
    """
    A request refused for who sent it: 401 (no valid key) or 403 (a valid
    key, or a client, that may not do this).
    """

    status: int
    message: str

    @property
    def challenge(self) -> bytes | None:
        """
        The C{WWW-Authenticate} value a 401 carries.
        """
        return b"Bearer" if self.status == 401 else None


_MISSING = Denied(401, "Missing API key (send Authorization: Bearer <key>)")
_INVALID = Denied(401, "Invalid API key")


def presented(request: Request) -> bytes | None:
    """
    The key C{request} presents, or C{None} for none.

    @raise Denied: for a malformed one (not C{Bearer}, several values,
        overlong).
    """
    headers = request.requestHeaders
    values = headers.getRawHeaders(b"authorization")
    if values is not None:
        if len(values) != 1 or values[0][:7].lower() != _BEARER:
            raise _INVALID
        token = values[0][7:].strip()
    else:
        values = headers.getRawHeaders(b"x-api-key")
        if values is None:
            return None
        if len(values) != 1:
            raise _INVALID
        token = values[0].strip()
    if not token or len(token) > MAX_KEY_BYTES:
        raise _INVALID
    return token


def _match(keys: tuple[Key, ...], token: bytes) -> Key | None:
    """
    The key whose secret is C{token}. Every key is compared, each in
    constant time, so the time taken says nothing about which one matched.
    """
    found = None
    for key in keys:
        if hmac.compare_digest(key.secret, token):
            found = key
    return found


def _valid(auth: AuthConfig, request: Request) -> Key:
    """
    The configured key (API or admin) C{request} presents.

    @raise Denied: 401 if it presents none, or not a configured one.
    """
    token = presented(request)
    if token is None:
        raise _MISSING
    key = _match(auth.admin_keys + auth.api_keys, token)
    if key is None:
        raise _INVALID
    return key


def apiKey(auth: AuthConfig, request: Request) -> Key | None:
    """
    The key a proxied request is made with: C{None} while no API key is
    configured (anyone may), else a valid key.

    @raise Denied: 401 without a valid key.
    """
    if not auth.api_keys:
        return None
    return _valid(auth, request)


def readAccess(auth: AuthConfig, request: Request) -> Key | None:
    """
    Who may read llmux's own endpoints: anyone while no API key is
    configured (as for proxied requests), else any valid key.

    @raise Denied: 401 without a valid key.
    """
    if not auth.api_keys:
        return None
    return _valid(auth, request)


def keyAccess(auth: AuthConfig, request: Request) -> Key | None:
    """
    Who may read what C{protect_metrics} protects: anyone while no key at
    all is configured, else any valid key (API or admin).

    @raise Denied: 401 without a valid key.
    """
    if not auth.keyed:
        return None
    return _valid(auth, request)


def adminAccess(auth: AuthConfig, request: Request) -> Key | None:
    """
    Whether C{request} may use the admin API: the admin key it presents, or
    C{None} for a local client while no admin key is configured.

    @raise Denied: 401 without an admin key when admin keys are configured;
        403 for an API key, or, with no admin key configured, for a client
        that is not on the loopback interface or a unix socket.
    """
    if not auth.admin_keys:
        if not _local(request):
            raise Denied(
                403, "The admin API is open to local clients only (no admin key)"
            )
        return None
    key = _valid(auth, request)
    if key not in auth.admin_keys:
        raise Denied(403, f"Key {key.name!r} is not an admin key")
    return key


def _local(request: Request) -> bool:
    """
    Whether the client is on this host: loopback or a unix socket.
    """
    peer = request.getClientAddress()
    if isinstance(peer, UNIXAddress):
        return True
    if isinstance(peer, IPv4Address):
        return peer.host.startswith("127.")
    if isinstance(peer, IPv6Address):
        return peer.host in ("::1", "0:0:0:0:0:0:0:1") or peer.host.startswith(
            "::ffff:127."
        )
    return False


def scopeDenied(key: Key | None, model: str) -> Denied | None:
    """
    Why C{key} may not use C{model}, if it may not.
    """
    if key is None or key.allows(model):
        return None
    return Denied(403, f"Key {key.name!r} may not use model {model[:200]!r}")


def renderDenied(request: Request, denied: Denied) -> bytes:
    """
    Answer C{request} with C{denied}'s JSON error (and, for a 401, the
    C{WWW-Authenticate} challenge); the body, for a C{render} method.
    """
    if denied.challenge is not None:
        request.setHeader(b"WWW-Authenticate", denied.challenge)
    return renderError(request, denied.status, denied.message)
