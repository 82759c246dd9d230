# -*- test-case-name: tests.test_accessconfig -*-
"""
Who may use llmux (C{auth:}) and from which web pages (C{cors:}), as the
config file declares it (SPEC section 11).

Keys are never written in the config: each names an environment variable
(C{key_env}) or a file (C{key_file}) to read it from, when the config is
loaded. A key's secret never appears in a message, a log line or a C{repr};
only its C{name} does.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import attrs

from .configvalues import ConfigError, checkKeys, printable, readBool

__all__ = ["AuthConfig", "CorsConfig", "Key", "parseAuth", "parseCors"]

AUTH_KEYS = ("admin_keys", "api_keys", "protect_metrics")
KEY_KEYS = ("name", "key_env", "key_file", "models")
CORS_KEYS = ("origins",)
#: The longest key llmux accepts: a bound on what a comparison and a header
#: may cost.
MAX_KEY_BYTES = 4096


@attrs.frozen
class Key:
    """
    One key: its name (what logs and metrics show), its secret, and the
    models it may use (C{None}: all).
    """

    name: str
    secret: bytes = attrs.field(repr=False)
    models: frozenset[str] | None = None

    def allows(self, model: str) -> bool:
        """
        Whether this key may use C{model}.
        """
        return self.models is None or model in self.models


@attrs.frozen
class AuthConfig:
    """
    The C{auth:} table. Without C{api_keys}, proxied requests need no key;
    without C{admin_keys}, the admin API serves loopback clients only.
    """

    admin_keys: tuple[Key, ...] = ()
    api_keys: tuple[Key, ...] = ()
    protect_metrics: bool = False
    #: Whether any key is configured: then llmux consumes the key headers.
    keyed: bool = attrs.field(init=False)

    @keyed.default
    def _keyed(self) -> bool:
        return bool(self.admin_keys or self.api_keys)


@attrs.frozen
class CorsConfig:
    """
    The C{cors:} table: the origins whose pages may call llmux; C{"*"} for
    any. Empty: CORS is off.
    """

    origins: tuple[str, ...] | str = ()

    def allows(self, origin: str) -> bool:
        """
        Whether a page from C{origin} may call llmux.
        """
        return self.origins == "*" or origin in self.origins


def parseAuth(table: Any, directory: str, models: Mapping[str, Any]) -> AuthConfig:
    """
    The C{auth:} table.

    @param directory: what a relative C{key_file} is relative to.
    @param models: the names a key's C{models} may list (models and
        aliases), to their models (whose C{name} the scope keeps).
    @raise ConfigError: naming the field at fault, never a secret.
    """
    if table is None:
        return AuthConfig()
    if not isinstance(table, dict):
        raise ConfigError("auth", "must be a mapping (admin_keys, api_keys, ...)")
    checkKeys(table, AUTH_KEYS, "auth")
    admin = _keys(table, "admin_keys", directory, None)
    api = _keys(table, "api_keys", directory, models)
    _unique(admin + api)
    return AuthConfig(
        admin_keys=admin,
        api_keys=api,
        protect_metrics=readBool(table, "protect_metrics", False, "auth"),
    )


def _keys(
    table: Mapping[str, Any],
    kind: str,
    directory: str,
    models: Mapping[str, Any] | None,
) -> tuple[Key, ...]:
    value = table.get(kind, [])
    if not isinstance(value, list):
        raise ConfigError(f"auth.{kind}", "must be a list of keys")
    return tuple(
        _key(item, f"auth.{kind}[{i}]", directory, models)
        for i, item in enumerate(value)
    )


def _key(
    item: Any, where: str, directory: str, models: Mapping[str, Any] | None
) -> Key:
    if not isinstance(item, dict):
        raise ConfigError(where, "must be a mapping with name and key_env or key_file")
    checkKeys(item, KEY_KEYS if models is not None else KEY_KEYS[:3], where)
    name = item.get("name")
    if not isinstance(name, str) or not name or not name.isprintable():
        raise ConfigError(f"{where}.name", "must be a non-empty name")
    return Key(
        name=name,
        secret=_secret(item, where, directory),
        models=_scope(item, where, models),
    )


def _secret(item: Mapping[str, Any], where: str, directory: str) -> bytes:
    """
    Read the key from the environment or its file. Messages name the
    variable or the file, never what was read.
    """
    if ("key_env" in item) == ("key_file" in item):
        raise ConfigError(where, "give either key_env or key_file")
    if "key_env" in item:
        variable = item["key_env"]
        if not isinstance(variable, str) or not variable:
            raise ConfigError(f"{where}.key_env", "must be a variable name")
        text = os.environ.get(variable)
        if text is None:
            raise ConfigError(
                f"{where}.key_env", f"environment variable {variable} is not set"
            )
        field = f"{where}.key_env"
    else:
        path = item["key_file"]
        if not isinstance(path, str) or not path:
            raise ConfigError(f"{where}.key_file", "must be a file name")
        path = os.path.join(directory, os.path.expanduser(path))
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise ConfigError(
                f"{where}.key_file", f"cannot read {path}: {reason}"
            ) from None
        field = f"{where}.key_file"
    secret = text.strip().encode("utf-8")
    if not secret:
        raise ConfigError(field, "the key is empty")
    if len(secret) > MAX_KEY_BYTES or not all(32 < c < 127 for c in secret):
        raise ConfigError(
            field,
            f"the key must be 1 to {MAX_KEY_BYTES} printable ASCII characters"
            " without spaces",
        )
    return secret


def _scope(
    item: Mapping[str, Any], where: str, models: Mapping[str, Any] | None
) -> frozenset[str] | None:
    if models is None or "models" not in item:
        return None
    value = item["models"]
    if not isinstance(value, list) or not all(isinstance(m, str) for m in value):
        raise ConfigError(f"{where}.models", "must be a list of model names")
    for model in value:
        if model not in models:
            raise ConfigError(f"{where}.models", f"unknown model {printable(model)!r}")
    # An alias in a scope allows its model, under every name.
    return frozenset(models[model].name for model in value)


def _unique(keys: tuple[Key, ...]) -> None:
    """
    Names identify keys in logs and metrics, and a secret must say who
    holds it: both must be unique.
    """
    names: set[str] = set()
    secrets: dict[bytes, str] = {}
    for key in keys:
        if key.name in names:
            raise ConfigError("auth", f"two keys are named {key.name!r}")
        names.add(key.name)
        if key.secret in secrets:
            raise ConfigError(
                "auth", f"keys {secrets[key.secret]!r} and {key.name!r} are the same"
            )
        secrets[key.secret] = key.name


def parseCors(table: Any) -> CorsConfig:
    """
    The C{cors:} table.

    @raise ConfigError: naming the field at fault.
    """
    if table is None:
        return CorsConfig()
    if not isinstance(table, dict):
        raise ConfigError("cors", "must be a mapping with origins")
    checkKeys(table, CORS_KEYS, "cors")
    origins = table.get("origins", [])
    if origins == "*":
        return CorsConfig("*")
    if not isinstance(origins, list) or not all(
        isinstance(o, str) and _isOrigin(o) for o in origins
    ):
        raise ConfigError(
            "cors.origins",
            'must be "*" or a list of origins like "https://app.example"',
        )
    return CorsConfig(tuple(origins))


def _isOrigin(text: str) -> bool:
    """
    Whether C{text} is an origin as browsers send it: scheme and host (and
    port), no path.
    """
    scheme, sep, rest = text.partition("://")
    return (
        scheme in ("http", "https")
        and bool(sep)
        and bool(rest)
        and "/" not in rest
        and text.isprintable()
        and " " not in text
    )
