# -*- test-case-name: tests.test_config -*-
"""
Reading values out of the config file's tables, and the one error type every
config problem is reported with.

Every reader names the field at fault (C{models.llama.port}), so an operator
never reads a traceback to fix a typo. L{llmux.config} and the parsers of
its sections (and policies, for their own keys) share them.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

__all__ = [
    "ConfigError",
    "checkKeys",
    "printable",
    "readBool",
    "readCount",
    "readName",
    "readNumber",
    "readOnly",
    "readOptionalCount",
    "readPort",
]


class ConfigError(Exception):
    """
    A configuration problem, rendered as one line: C{file: field: message}.
    """

    def __init__(self, field: str | None, message: str, source: str | None = None):
        super().__init__(field, message, source)
        self.field = field
        self.message = message
        self.source = source

    def withSource(self, source: str) -> ConfigError:
        """
        The same error, attributed to the file C{source}.
        """
        return ConfigError(self.field, self.message, source)

    def __str__(self) -> str:
        parts = [p for p in (self.source, self.field) if p]
        return ": ".join([*parts, self.message])


def readOnly(mapping: Mapping[str, object]) -> Mapping[str, object]:
    return MappingProxyType(dict(mapping))


def readName(table: Mapping[str, Any], key: str, default: str) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or not value:
        raise ConfigError(key, f"must be a name, not {value!r}")
    return value


def readOptionalCount(
    table: Mapping[str, Any], key: str, where: str | None
) -> int | None:
    if table.get(key) is None:
        return None
    return readCount(table, key, 1, where)


def readBool(
    table: Mapping[str, Any], key: str, default: bool, where: str | None
) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(fieldOf(where, key), "must be true or false")
    return value


def fieldOf(where: str | None, key: str) -> str:
    return f"{where}.{key}" if where else key


def readPort(
    table: Mapping[str, Any], key: str, where: str | None, default: int | None
) -> int:
    field = f"{where}.{key}" if where else key
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(field, f"must be an integer from 1 to 65535, not {value!r}")
    if not 1 <= value <= 65535:
        raise ConfigError(field, f"must be from 1 to 65535, not {value}")
    return value


def checkKeys(
    table: Mapping[str, Any], allowed: tuple[str, ...], where: str | None
) -> None:
    """
    Reject any key of C{table} not in C{allowed}.

    @param where: the dotted path of C{table}, for the message.
    @raise ConfigError: naming the first unknown key and the allowed ones.
    """
    for key in table:
        if key not in allowed:
            field = f"{where}.{printable(key)}" if where else printable(key)
            raise ConfigError(
                field, f"unknown key (expected one of: {', '.join(allowed)})"
            )


def printable(key: object) -> str:
    """
    A key from the file as it can appear in a one-line message.
    """
    text = str(key)
    return text if text.isprintable() else repr(text)


def readCount(
    table: Mapping[str, Any], key: str, default: int, where: str | None
) -> int:
    """
    Read a whole number of 1 or more (a count, a size in bytes).

    @raise ConfigError: naming C{where.key}.
    """
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            fieldOf(where, key), f"must be a whole number of 1 or more, not {value!r}"
        )
    return value


def readNumber(
    table: Mapping[str, Any],
    key: str,
    default: float | None,
    where: str | None,
    *,
    allowNone: bool = False,
    positive: bool = False,
) -> Any:
    """
    Read a non-negative number (seconds, usually) from a config table.

    Policies use this for their own keys, so every number in the file is
    checked and reported the same way.

    @param allowNone: whether C{null} is accepted (meaning "no limit").
    @param positive: whether 0 is rejected too.
    @raise ConfigError: naming C{where.key}.
    """
    value = table.get(key, default)
    field = fieldOf(where, key)
    if value is None and allowNone:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = "a positive number" if positive else "a number of 0 or more"
        suffix = " or null" if allowNone else ""
        raise ConfigError(field, f"must be {kind}{suffix}, not {value!r}")
    if value < 0 or (positive and value == 0) or value != value:
        raise ConfigError(
            field, f"must be {'above' if positive else 'at least'} 0, not {value}"
        )
    return float(value)
