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
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, TypeVar

import attrs
import yaml

from .accessconfig import AuthConfig, CorsConfig, parseAuth, parseCors
from .configvalues import (
    ConfigError,
    checkKeys,
    printable,
    readBool,
    readCount,
    readName,
    readNumber,
    readOnly,
    readOptionalCount,
    readPort,
)
from .hookconfig import (
    DEFAULT_STOP_TIMEOUT_SECS,
    Hook,
    HttpStep,
    Managed,
    ProcessConfig,
    StepError,
    parseCommand,
    parseHookValue,
    parseStep,
    resolveDirectory,
)
from .presets import BACKENDS, presetKeys
from .resources import describeShortfall, fits, minus, plus, total

__all__ = [
    "Config",
    "ConfigError",
    "DEFAULT_BODY_TIMEOUT_SECS",
    "DEFAULT_EVICTION",
    "EXCLUSIVE_POOL",
    "ModelConfig",
    "PolicyConfig",
    "checkKeys",
    "loadConfig",
    "parseConfig",
    "readNumber",
]

DEFAULT_PORT = 3000
REQUIRED_MODEL_KEYS = ("port", "wake", "sleep", "alive")
#: The keys of a backend llmux runs itself, and of presets (SPEC section 10).
BACKEND_KEYS = (
    "command",
    "env",
    "cwd",
    "ready",
    "stop_timeout_secs",
    "backend",
    "sleep_level",
)
#: The residency keys of a model (SPEC section 9), all optional.
RESIDENCY_KEYS = (
    "unload",
    "resources",
    "asleep_resources",
    "unload_after_secs",
    "idle_ttl_secs",
    "pin",
    "preload",
    "max_in_flight",
)
#: How clients may name a model (SPEC section 11).
NAMING_KEYS = ("aliases", "served_model_name")
MODEL_KEYS = REQUIRED_MODEL_KEYS + RESIDENCY_KEYS + BACKEND_KEYS + NAMING_KEYS
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
    "capacity",
    "eviction",
    "hook_timeouts",
    "adopt_running",
    "alive_interval_secs",
    "alive_failures",
    "max_body_bytes",
    "body_timeout_secs",
    "upstream_timeout_secs",
    "shutdown_timeout_secs",
    "sleep_on_shutdown",
    "auth",
    "cors",
    "loading_feedback",
)
#: What a streaming request that waits for its model is sent meanwhile.
LOADING_FEEDBACK = ("off", "comments", "reasoning")
#: Seconds each hook may run before its process group is killed: loading
#: weights can take minutes; a health check should not.
DEFAULT_HOOK_TIMEOUTS = {"wake": 600.0, "sleep": 300.0, "alive": 30.0}
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
#: How long a request may take to arrive, body included (C{body_timeout_secs}).
DEFAULT_BODY_TIMEOUT_SECS = 120.0
#: The eviction policy used when the config names none.
DEFAULT_EVICTION = "lru"
#: The one pool of a config without C{capacity:}: every model holds all of
#: it while awake, so one model is awake at a time, as in llmux 2.4.0.
EXCLUSIVE_POOL = "*"


def _placements(
    placements: tuple[Mapping[str, float], ...],
) -> tuple[Mapping[str, float], ...]:
    return tuple(MappingProxyType(dict(p)) for p in placements)


@attrs.frozen
class ModelConfig:
    """
    One model: the backend's port, the hooks that manage it (SPEC section
    10: shell scripts, HTTP steps or actions on its own process; see
    L{llmux.hookconfig}), and what it holds of the host's capacity (SPEC
    section 9).

    @ivar directory: where hooks run: the config file's directory.
    @ivar unload: the hook that frees C{asleep_resources}, or C{None}.
    @ivar process: the backend process llmux runs for this model
        (C{command:}), or C{None}.
    @ivar backend: the C{backend:} preset its hooks came from, or C{None}.
    @ivar aliases: other names requests may use for it.
    @ivar served_model_name: the name its backend knows it by, written into
        the request body's C{model} before forwarding; C{None}: its own.
    @ivar resources: the alternative placements: what the model holds while
        it is waking, awake, draining or going to sleep, tried in order.
        Empty: the model holds every pool entirely (it is exclusive).
    @ivar asleep_resources: what it holds from its first wake until it is
        unloaded, asleep or not (so it can always go to sleep).
    @ivar unload_after_secs: run C{unload} after this long asleep; 0: never.
    @ivar idle_ttl_secs: put it to sleep after this long with nothing in
        flight or queued; C{None}: never.
    @ivar pin: never evicted to make room for another model.
    @ivar preload: woken at start-up.
    @ivar max_in_flight: requests served at once; more queue. C{None}: no
        limit.
    @ivar placement: not a key of the file: the placement the switcher runs
        this model's hooks for (see L{hookEnvironment}).
    @ivar pools: not a key of the file: the pools of the declared capacity,
        in file order, or C{()} without C{capacity:}.
    """

    name: str
    port: int
    wake: Hook
    sleep: Hook
    alive: Hook
    directory: str = "."
    unload: Hook | None = None
    process: ProcessConfig | None = None
    backend: str | None = None
    aliases: tuple[str, ...] = ()
    served_model_name: str | None = None
    resources: tuple[Mapping[str, float], ...] = attrs.field(
        default=(), converter=_placements
    )
    asleep_resources: Mapping[str, float] = attrs.field(
        factory=dict, converter=readOnly
    )
    unload_after_secs: float = 0.0
    idle_ttl_secs: float | None = None
    pin: bool = False
    preload: bool = False
    max_in_flight: int | None = None
    placement: int | None = None
    pools: tuple[str, ...] = ()
    #: Where its backend listens, kept ready for every request.
    origin: str = attrs.field(init=False)

    @origin.default
    def _origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def placementsWithin(
        self, capacity: Mapping[str, float]
    ) -> tuple[Mapping[str, float], ...]:
        """
        What each placement holds while the model is up, besides its
        C{asleep_resources}: its C{resources}, or for a model without them,
        the rest of C{capacity}, so that it holds all of it.
        """
        return self.resources or (
            MappingProxyType(minus(capacity, self.asleep_resources)),
        )

    def upHolding(self, placement: Mapping[str, float]) -> dict[str, float]:
        """
        What the model holds while up in C{placement}: the placement and its
        C{asleep_resources}.
        """
        return plus(placement, self.asleep_resources)

    def placed(self, placement: int) -> ModelConfig:
        """
        This model as its hooks run in C{placement}.
        """
        return attrs.evolve(self, placement=placement)

    def hookEnvironment(self) -> dict[str, str]:
        """
        What a hook of this model finds in its environment besides llmux's
        own: C{LLMUX_MODEL}, and with a declared capacity, the placement it
        runs for: C{LLMUX_PLACEMENT} (its index) and C{LLMUX_POOLS} (the
        pools it holds, comma-separated), so a wake script can set
        C{CUDA_VISIBLE_DEVICES}.
        """
        env = {"LLMUX_MODEL": self.name}
        if self.pools and self.placement is not None:
            if self.resources:
                held = list(self.resources[self.placement])
            else:
                held = list(self.pools)
            env["LLMUX_PLACEMENT"] = str(self.placement)
            env["LLMUX_POOLS"] = ",".join(held)
        return env


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
    extra: Mapping[str, object] = attrs.field(factory=dict, converter=readOnly)

    def table(self) -> dict[str, object]:
        """
        The C{policy:} table these settings were read from: every key llmux
        knows, and the policy's own keys.
        """
        known = {key: getattr(self, key) for key in POLICY_KEYS}
        return {**known, **self.extra}


@attrs.frozen
class Config:
    """
    A whole validated configuration. C{models} keeps the file's order.
    """

    models: tuple[ModelConfig, ...]
    policy: PolicyConfig = PolicyConfig()
    port: int = DEFAULT_PORT
    capacity: Mapping[str, float] | None = attrs.field(
        default=None, converter=attrs.converters.optional(readOnly)
    )
    eviction: str = DEFAULT_EVICTION
    hook_timeouts: Mapping[str, float | None] = attrs.field(
        factory=lambda: dict(DEFAULT_HOOK_TIMEOUTS), converter=readOnly
    )
    adopt_running: bool = True
    alive_interval_secs: float = 30.0
    alive_failures: int = 3
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    body_timeout_secs: float | None = DEFAULT_BODY_TIMEOUT_SECS
    upstream_timeout_secs: float | None = 600.0
    shutdown_timeout_secs: float = 30.0
    sleep_on_shutdown: bool = False
    auth: AuthConfig = AuthConfig()
    cors: CorsConfig = CorsConfig()
    loading_feedback: str = "off"
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

    @property
    def pools(self) -> Mapping[str, float]:
        """
        The capacity the switcher books models against (see L{poolsOf}).
        """
        return poolsOf(self.capacity)


def poolsOf(capacity: Mapping[str, float] | None) -> Mapping[str, float]:
    """
    The declared C{capacity}, or without one a single pool that every model
    holds entirely (one model awake at a time).
    """
    if capacity is None:
        return MappingProxyType({EXCLUSIVE_POOL: 1.0})
    return capacity


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
    capacity = _parseCapacity(data.get("capacity"))
    models = _parseModels(data["models"], directory, capacity)
    checkResidency(models, capacity)
    names = modelNames(models)
    return Config(
        models=models,
        policy=_parsePolicy(data.get("policy")),
        port=readPort(data, "port", None, DEFAULT_PORT),
        capacity=capacity,
        eviction=readName(data, "eviction", DEFAULT_EVICTION),
        hook_timeouts=_parseHookTimeouts(data.get("hook_timeouts", {})),
        adopt_running=readBool(data, "adopt_running", _default("adopt_running"), None),
        alive_interval_secs=readNumber(
            data, "alive_interval_secs", _default("alive_interval_secs"), None
        ),
        alive_failures=readCount(
            data, "alive_failures", _default("alive_failures"), None
        ),
        max_body_bytes=readCount(
            data, "max_body_bytes", _default("max_body_bytes"), None
        ),
        body_timeout_secs=readNumber(
            data,
            "body_timeout_secs",
            _default("body_timeout_secs"),
            None,
            allowNone=True,
            positive=True,
        ),
        upstream_timeout_secs=readNumber(
            data,
            "upstream_timeout_secs",
            _default("upstream_timeout_secs"),
            None,
            allowNone=True,
            positive=True,
        ),
        shutdown_timeout_secs=readNumber(
            data, "shutdown_timeout_secs", _default("shutdown_timeout_secs"), None
        ),
        sleep_on_shutdown=readBool(
            data, "sleep_on_shutdown", _default("sleep_on_shutdown"), None
        ),
        auth=parseAuth(data.get("auth"), directory, names),
        cors=parseCors(data.get("cors")),
        loading_feedback=_readChoice(data, "loading_feedback", LOADING_FEEDBACK),
    )


def _default(key: str) -> Any:
    """
    The default of a top-level key: the one L{Config} declares, so it is
    written once.
    """
    return attrs.fields_dict(Config)[key].default


def modelNames(models: tuple[ModelConfig, ...]) -> dict[str, ModelConfig]:
    """
    Every name requests may use, its model's and its aliases, to its model.
    """
    return {name: model for model in models for name in (model.name, *model.aliases)}


def _readChoice(table: Mapping[str, Any], key: str, choices: tuple[str, ...]) -> str:
    value = table.get(key, choices[0])
    if value is False and "off" in choices:
        # YAML reads a bare off as false.
        return "off"
    if value not in choices:
        raise ConfigError(key, f"must be one of {', '.join(choices)}, not {value!r}")
    return str(value)


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


def _parseModels(
    table: Any, directory: str, capacity: Mapping[str, float] | None
) -> tuple[ModelConfig, ...]:
    if not isinstance(table, dict):
        raise ConfigError("models", "must be a mapping of model name to settings")
    if not table:
        raise ConfigError("models", "is empty (at least one model is required)")
    models = []
    ports: dict[int, str] = {}
    names: dict[str, str] = {}
    for name, settings in table.items():
        if not isinstance(name, str) or not name:
            raise ConfigError(
                f"models.{name!r}", "model names must be non-empty strings"
            )
        model = _parseModel(name, settings, directory, capacity)
        if model.port in ports:
            raise ConfigError(
                f"models.{printable(name)}.port",
                f"port {model.port} is already used by model {ports[model.port]!r}",
            )
        ports[model.port] = name
        for alias in (name, *model.aliases):
            if alias in names:
                raise ConfigError(
                    f"models.{printable(name)}.aliases",
                    f"{printable(alias)!r} already names model {names[alias]!r}",
                )
            names[alias] = name
        models.append(model)
    return tuple(models)


def _parseModel(
    name: str, settings: Any, directory: str, capacity: Mapping[str, float] | None
) -> ModelConfig:
    where = f"models.{printable(name)}"
    if not isinstance(settings, dict):
        raise ConfigError(where, "must be a mapping with port, wake, sleep and alive")
    checkKeys(settings, MODEL_KEYS, where)
    if "port" not in settings:
        raise ConfigError(f"{where}.port", "missing (required)")
    settings = {**_preset(settings, where), **settings}
    process = _parseProcess(settings, directory, where)
    given: dict[str, Hook] = {
        hook: _readHook(settings, hook, where)
        for hook in (*HOOK_NAMES, "unload")
        if hook in settings
    }
    for hook in HOOK_NAMES:
        if hook not in given and process is None:
            raise ConfigError(
                f"{where}.{hook}", "missing (required unless the model has a command)"
            )
    wake = given.get("wake", Managed.START)
    sleep = given.get("sleep", Managed.STOP)
    alive = given.get("alive", Managed.READY)
    unload: Hook | None = given.get("unload")
    if unload is None and process is not None and "sleep" in given:
        # The process keeps running while asleep (vLLM's sleep mode, say):
        # unloading stops it.
        unload = Managed.STOP
    unloadAfter = readNumber(settings, "unload_after_secs", 0.0, where)
    if unloadAfter and unload is None:
        raise ConfigError(f"{where}.unload_after_secs", "needs an unload hook")
    return ModelConfig(
        name=name,
        port=readPort(settings, "port", where, None),
        directory=directory,
        unload=unload,
        resources=_readPlacements(settings, where, capacity),
        asleep_resources=_readAmounts(
            settings.get("asleep_resources", {}),
            f"{where}.asleep_resources",
            capacity,
        ),
        unload_after_secs=unloadAfter,
        idle_ttl_secs=readNumber(
            settings, "idle_ttl_secs", None, where, allowNone=True, positive=True
        ),
        pin=readBool(settings, "pin", False, where),
        preload=readBool(settings, "preload", False, where),
        max_in_flight=readOptionalCount(settings, "max_in_flight", where),
        pools=tuple(capacity or ()),
        wake=wake,
        sleep=sleep,
        alive=alive,
        process=process,
        backend=settings.get("backend"),
        aliases=_readNames(settings, "aliases", where),
        served_model_name=_readServedName(settings, where),
    )


def _readNames(settings: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = settings.get(key, [])
    if not isinstance(value, list) or not all(
        isinstance(n, str) and n and n.isprintable() for n in value
    ):
        raise ConfigError(f"{where}.{key}", "must be a list of model names")
    if len(set(value)) != len(value):
        raise ConfigError(f"{where}.{key}", "lists a name twice")
    return tuple(value)


def _readServedName(settings: Mapping[str, Any], where: str) -> str | None:
    value = settings.get("served_model_name")
    if value is None:
        return None
    if not isinstance(value, str) or not value or not value.isprintable():
        raise ConfigError(f"{where}.served_model_name", "must be a model name")
    return value


def _readHook(
    settings: Mapping[str, Any], hook: str, where: str
) -> str | tuple[HttpStep, ...]:
    """
    A hook: a shell script or a list of HTTP steps.
    """
    return _parsed(f"{where}.{hook}", parseHookValue, settings[hook])


_T = TypeVar("_T")


def _parsed(field: str, parse: Callable[[Any], _T], value: Any) -> _T:
    """
    C{parse(value)}, its L{StepError} turned into a config error at C{field}.
    """
    try:
        return parse(value)
    except StepError as e:
        if e.field is None:
            raise ConfigError(field, e.message) from None
        joiner = "" if e.field.startswith("[") else "."
        raise ConfigError(f"{field}{joiner}{e.field}", e.message) from None


def _preset(settings: Mapping[str, Any], where: str) -> dict[str, Any]:
    """
    The keys a C{backend:} preset fills in (the model's own override them).
    """
    if "backend" not in settings:
        if "sleep_level" in settings:
            raise ConfigError(f"{where}.sleep_level", "needs backend: vllm")
        return {}
    backend = settings["backend"]
    if backend not in BACKENDS:
        raise ConfigError(
            f"{where}.backend",
            f"unknown backend {backend!r} (expected one of: {', '.join(BACKENDS)})",
        )
    level = settings.get("sleep_level", 1)
    if "sleep_level" in settings and backend != "vllm":
        raise ConfigError(f"{where}.sleep_level", "needs backend: vllm")
    if level not in (1, 2) or isinstance(level, bool):
        raise ConfigError(f"{where}.sleep_level", f"must be 1 or 2, not {level!r}")
    return presetKeys(backend, level)


def _parseProcess(
    settings: Mapping[str, Any], directory: str, where: str
) -> ProcessConfig | None:
    """
    The process llmux runs for the model (C{command:} and its companions).
    """
    if "command" not in settings:
        for key in ("env", "cwd", "ready", "stop_timeout_secs"):
            if key in settings:
                raise ConfigError(f"{where}.{key}", "needs a command")
        return None
    argv = _parsed(f"{where}.command", parseCommand, settings["command"])
    env = settings.get("env", {})
    if not isinstance(env, dict) or not all(
        isinstance(k, str)
        and k
        and "=" not in k
        and isinstance(v, (str, int, float))
        and not isinstance(v, bool)
        for k, v in env.items()
    ):
        raise ConfigError(f"{where}.env", "must be a mapping of variable to value")
    return ProcessConfig(
        argv=argv,
        env={k: str(v) for k, v in env.items()},
        cwd=_parsed(
            f"{where}.cwd",
            lambda value: resolveDirectory(directory, value),
            settings.get("cwd", "."),
        ),
        ready=_parsed(f"{where}.ready", parseStep, settings.get("ready", "/health")),
        stop_timeout_secs=readNumber(
            settings,
            "stop_timeout_secs",
            DEFAULT_STOP_TIMEOUT_SECS,
            where,
            positive=True,
        ),
    )


def _parseCapacity(table: Any) -> dict[str, float] | None:
    """
    The C{capacity:} table: pool name to units, each above 0.
    """
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ConfigError("capacity", "must be a mapping of pool name to units")
    if not table:
        raise ConfigError(
            "capacity", "is empty (name at least one pool, or leave capacity out)"
        )
    for pool in table:
        if not isinstance(pool, str) or not pool:
            raise ConfigError(
                f"capacity.{printable(pool)}", "pool names must be non-empty strings"
            )
    return {
        pool: readNumber(table, pool, None, "capacity", positive=True) for pool in table
    }


def _readPlacements(
    settings: Mapping[str, Any], where: str, capacity: Mapping[str, float] | None
) -> tuple[dict[str, float], ...]:
    """
    A model's C{resources}: one mapping, or a list of alternative ones.
    """
    if "resources" not in settings:
        return ()
    value = settings["resources"]
    field = f"{where}.resources"
    if isinstance(value, list):
        if not value:
            raise ConfigError(field, "is an empty list (give at least one placement)")
        return tuple(
            _readAmounts(item, f"{field}[{i}]", capacity)
            for i, item in enumerate(value)
        )
    return (_readAmounts(value, field, capacity),)


def _readAmounts(
    value: Any, field: str, capacity: Mapping[str, float] | None
) -> dict[str, float]:
    """
    A mapping of pool to units above 0, each pool one of C{capacity}'s.
    """
    if not isinstance(value, dict):
        raise ConfigError(field, "must be a mapping of pool name to units")
    if value and capacity is None:
        raise ConfigError(field, "needs a top-level capacity table to count against")
    for pool in value:
        if capacity is not None and pool not in capacity:
            raise ConfigError(
                f"{field}.{printable(pool)}",
                f"unknown pool (capacity has: {', '.join(capacity)})",
            )
    return {pool: readNumber(value, pool, None, field, positive=True) for pool in value}


def checkResidency(
    models: tuple[ModelConfig, ...], capacity: Mapping[str, float] | None
) -> None:
    """
    Reject what could never run: C{asleep_resources} that models without an
    C{unload} hook (which hold them for good) cannot all keep, a model that
    can never fit beside them, pinned models that cannot all be awake
    together.

    @raise ConfigError: naming the first model at fault.
    """
    pools = poolsOf(capacity)
    kept: dict[str, float] = {}
    for model in models:
        if model.unload is None and model.asleep_resources:
            kept = plus(kept, model.asleep_resources)
            if not fits(kept, pools):
                raise ConfigError(
                    f"models.{printable(model.name)}.asleep_resources",
                    "models without an unload hook keep their asleep_resources"
                    f" for good, and together {describeShortfall(kept, pools)}",
                )
    for model in models:
        _checkFits(model, pools, kept)
    _checkPins(models, pools, kept, capacity is None)


def _checkFits(
    model: ModelConfig, pools: Mapping[str, float], kept: Mapping[str, float]
) -> None:
    others = kept
    if model.unload is None:
        others = minus(kept, model.asleep_resources)
    room = minus(pools, others)
    placements = model.placementsWithin(pools)
    needs = [model.upHolding(placement) for placement in placements]
    if any(fits(need, room) for need in needs):
        return
    raise ConfigError(
        f"models.{printable(model.name)}.resources",
        f"can never fit: {describeShortfall(needs[0], room)}"
        + (" (beside the asleep_resources other models keep)" if others else ""),
    )


def _checkPins(
    models: tuple[ModelConfig, ...],
    pools: Mapping[str, float],
    kept: Mapping[str, float],
    exclusive: bool,
) -> None:
    """
    Pinned models, added in config order, must all fit awake at once in
    some combination of their placements.
    """
    pinned: list[ModelConfig] = []
    for model in (m for m in models if m.pin):
        pinned.append(model)
        if _somePlacementsFit(pinned, pools, kept):
            continue
        names = ", ".join(m.name for m in pinned[:-1])
        if exclusive:
            why = "without a capacity table, one model is awake at a time"
        else:
            why = "their resources exceed the capacity"
        raise ConfigError(
            f"models.{printable(model.name)}.pin",
            f"cannot be awake together with pinned model(s) {names}: {why}",
        )


def _somePlacementsFit(
    pinned: list[ModelConfig], pools: Mapping[str, float], kept: Mapping[str, float]
) -> bool:
    """
    Whether one placement per model of C{pinned} fits, all at once, beside
    what C{kept} holds for other models.
    """
    fixed = minus(kept, total(m.asleep_resources for m in pinned if m.unload is None))

    def search(index: int, used: dict[str, float]) -> bool:
        if index == len(pinned):
            return True
        model = pinned[index]
        for placement in model.placementsWithin(pools):
            after = plus(used, model.upHolding(placement))
            if fits(after, pools) and search(index + 1, after):
                return True
        return False

    return search(0, dict(fixed))


def _parsePolicy(table: Any) -> PolicyConfig:
    if table is None:
        return PolicyConfig()
    if not isinstance(table, dict):
        raise ConfigError("policy", "must be a mapping")

    def default(key: str) -> Any:
        return attrs.fields_dict(PolicyConfig)[key].default

    return PolicyConfig(
        request_timeout_secs=readNumber(
            table,
            "request_timeout_secs",
            default("request_timeout_secs"),
            "policy",
            allowNone=True,
        ),
        drain_before_switch=readBool(
            table, "drain_before_switch", default("drain_before_switch"), "policy"
        ),
        drain_timeout_secs=readNumber(
            table,
            "drain_timeout_secs",
            default("drain_timeout_secs"),
            "policy",
            allowNone=True,
            positive=True,
        ),
        min_active_secs=readNumber(
            table, "min_active_secs", default("min_active_secs"), "policy"
        ),
        max_queue=readCount(table, "max_queue", default("max_queue"), "policy"),
        extra={k: v for k, v in table.items() if k not in POLICY_KEYS},
    )
