# -*- test-case-name: tests.test_config -*-
"""
Reading and validating llmux's configuration file.

The file is YAML (C{.yaml}/C{.yml}) or JSON (anything else). Every problem is
reported as one L{ConfigError} line naming the file and the field, so an
operator never has to read a traceback to fix a typo.

Attribute names of the config objects are the file's own keys, so the docs,
the file and the code use one vocabulary.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import attrs
import yaml

__all__ = [
    "Config",
    "ConfigError",
    "ModelConfig",
    "PolicyConfig",
    "checkKeys",
    "loadConfig",
    "parseConfig",
    "readNumber",
]

DEFAULT_PORT = 3000
MODEL_KEYS = ("port", "wake", "sleep", "alive")
POLICY_KEYS = (
    "request_timeout_secs",
    "drain_before_switch",
    "drain_timeout_secs",
    "min_active_secs",
    "max_queue",
)
HOOK_NAMES = ("wake", "sleep", "alive")
TOP_KEYS = (
    "models",
    "policy",
    "port",
    "hook_timeouts",
    "adopt_running",
    "alive_interval_secs",
    "alive_failures",
    "max_body_bytes",
    "body_timeout_secs",
    "upstream_timeout_secs",
    "shutdown_timeout_secs",
    "sleep_on_shutdown",
)
#: Seconds each hook may run before its process group is killed: loading
#: weights can take minutes; a health check should not.
DEFAULT_HOOK_TIMEOUTS = {"wake": 600.0, "sleep": 300.0, "alive": 30.0}
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024


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


@attrs.frozen
class ModelConfig:
    """
    One model: the backend's port and the shell hooks that manage it.

    @ivar directory: where hooks run: the config file's directory.
    """

    name: str
    port: int
    wake: str
    sleep: str
    alive: str
    directory: str = "."


def _readOnly(mapping: Mapping[str, object]) -> Mapping[str, object]:
    return MappingProxyType(dict(mapping))


@attrs.frozen
class PolicyConfig:
    """
    The C{policy:} table.

    @ivar extra: the keys this module does not know, left for the selected
        policy to validate (e.g. C{quantum_secs} for C{round_robin}).
    """

    request_timeout_secs: float | None = None
    drain_before_switch: bool = True
    drain_timeout_secs: float | None = None
    min_active_secs: float = 0.0
    max_queue: int = 512
    extra: Mapping[str, object] = attrs.field(factory=dict, converter=_readOnly)


@attrs.frozen
class Config:
    """
    A whole validated configuration. C{models} keeps the file's order.
    """

    models: tuple[ModelConfig, ...]
    policy: PolicyConfig = PolicyConfig()
    port: int = DEFAULT_PORT
    hook_timeouts: Mapping[str, float | None] = attrs.field(
        factory=lambda: dict(DEFAULT_HOOK_TIMEOUTS), converter=_readOnly
    )
    adopt_running: bool = True
    alive_interval_secs: float = 30.0
    alive_failures: int = 3
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    body_timeout_secs: float | None = 120.0
    upstream_timeout_secs: float | None = 600.0
    shutdown_timeout_secs: float = 30.0
    sleep_on_shutdown: bool = False
    source: str = "<config>"

    def model(self, name: str) -> ModelConfig | None:
        """
        The configured model called C{name}, or C{None}.
        """
        for model in self.models:
            if model.name == name:
                return model
        return None

    @property
    def modelNames(self) -> tuple[str, ...]:
        """
        The configured model names, in config order.
        """
        return tuple(model.name for model in self.models)


def loadConfig(path: str) -> Config:
    """
    Read, parse and validate the configuration file at C{path}.

    @raise ConfigError: naming the file and the field at fault.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise ConfigError(None, f"cannot read: {reason}", path) from None
    try:
        return parseConfig(_decode(text, path), os.path.dirname(os.path.abspath(path)))
    except ConfigError as e:
        raise e.withSource(path) from None


def _decode(text: str, path: str) -> Any:
    if path.endswith((".yaml", ".yml")):
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = (
                f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            )
            problem = getattr(e, "problem", None) or "syntax error"
            raise ConfigError(None, f"invalid YAML{where}: {problem}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(
            None, f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}"
        ) from None


def parseConfig(data: Any, directory: str = ".") -> Config:
    """
    Validate already-decoded config data.

    @param directory: the directory hooks run in.
    @raise ConfigError: naming the field at fault (no file).
    """
    if not isinstance(data, dict):
        raise ConfigError(None, "must be a mapping with a 'models' table")
    checkKeys(data, TOP_KEYS, None)
    if "models" not in data:
        raise ConfigError("models", "missing (at least one model is required)")
    return Config(
        models=_parseModels(data["models"], directory),
        policy=_parsePolicy(data.get("policy")),
        port=_readPort(data, "port", None, DEFAULT_PORT),
        hook_timeouts=_parseHookTimeouts(data.get("hook_timeouts", {})),
        adopt_running=_readBool(data, "adopt_running", True, None),
        alive_interval_secs=readNumber(data, "alive_interval_secs", 30.0, None),
        alive_failures=readCount(data, "alive_failures", 3, None),
        max_body_bytes=readCount(data, "max_body_bytes", DEFAULT_MAX_BODY_BYTES, None),
        body_timeout_secs=readNumber(
            data, "body_timeout_secs", 120.0, None, allowNone=True, positive=True
        ),
        upstream_timeout_secs=readNumber(
            data, "upstream_timeout_secs", 600.0, None, allowNone=True, positive=True
        ),
        shutdown_timeout_secs=readNumber(data, "shutdown_timeout_secs", 30.0, None),
        sleep_on_shutdown=_readBool(data, "sleep_on_shutdown", False, None),
    )


def _parseHookTimeouts(table: Any) -> dict[str, float | None]:
    """
    The C{hook_timeouts:} table: seconds per hook, C{null} for no limit.
    """
    if not isinstance(table, dict):
        raise ConfigError("hook_timeouts", "must be a mapping of hook name to seconds")
    checkKeys(table, HOOK_NAMES, "hook_timeouts")
    return {
        hook: readNumber(
            table,
            hook,
            DEFAULT_HOOK_TIMEOUTS[hook],
            "hook_timeouts",
            allowNone=True,
            positive=True,
        )
        for hook in HOOK_NAMES
    }


def _parseModels(table: Any, directory: str) -> tuple[ModelConfig, ...]:
    if not isinstance(table, dict):
        raise ConfigError("models", "must be a mapping of model name to settings")
    if not table:
        raise ConfigError("models", "is empty (at least one model is required)")
    models = []
    ports: dict[int, str] = {}
    for name, settings in table.items():
        if not isinstance(name, str) or not name:
            raise ConfigError(
                f"models.{name!r}", "model names must be non-empty strings"
            )
        model = _parseModel(name, settings, directory)
        if model.port in ports:
            raise ConfigError(
                f"models.{_printable(name)}.port",
                f"port {model.port} is already used by model {ports[model.port]!r}",
            )
        ports[model.port] = name
        models.append(model)
    return tuple(models)


def _parseModel(name: str, settings: Any, directory: str) -> ModelConfig:
    where = f"models.{_printable(name)}"
    if not isinstance(settings, dict):
        raise ConfigError(where, "must be a mapping with port, wake, sleep and alive")
    checkKeys(settings, MODEL_KEYS, where)
    for key in MODEL_KEYS:
        if key not in settings:
            raise ConfigError(f"{where}.{key}", "missing (required)")
    hooks = {}
    for hook in ("wake", "sleep", "alive"):
        script = settings[hook]
        if not isinstance(script, str) or not script.strip():
            raise ConfigError(
                f"{where}.{hook}", "must be a non-empty string (a path or a script)"
            )
        hooks[hook] = script
    return ModelConfig(
        name=name,
        port=_readPort(settings, "port", where, None),
        directory=directory,
        **hooks,
    )


def _parsePolicy(table: Any) -> PolicyConfig:
    if table is None:
        return PolicyConfig()
    if not isinstance(table, dict):
        raise ConfigError("policy", "must be a mapping")
    timeout = readNumber(table, "request_timeout_secs", None, "policy", allowNone=True)
    drainTimeout = readNumber(
        table, "drain_timeout_secs", None, "policy", allowNone=True, positive=True
    )
    return PolicyConfig(
        request_timeout_secs=timeout,
        drain_before_switch=_readBool(table, "drain_before_switch", True, "policy"),
        drain_timeout_secs=drainTimeout,
        min_active_secs=readNumber(table, "min_active_secs", 0.0, "policy"),
        max_queue=readCount(table, "max_queue", 512, "policy"),
        extra={k: v for k, v in table.items() if k not in POLICY_KEYS},
    )


def _readBool(
    table: Mapping[str, Any], key: str, default: bool, where: str | None
) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(_field(where, key), "must be true or false")
    return value


def _field(where: str | None, key: str) -> str:
    return f"{where}.{key}" if where else key


def _readPort(
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
            field = f"{where}.{_printable(key)}" if where else _printable(key)
            raise ConfigError(
                field, f"unknown key (expected one of: {', '.join(allowed)})"
            )


def _printable(key: object) -> str:
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
            _field(where, key), f"must be a whole number of 1 or more, not {value!r}"
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
    field = _field(where, key)
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
