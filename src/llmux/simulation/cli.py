# -*- test-case-name: tests.test_simulation_cli -*-
"""
C{llmux simulate}: compare switch policies on a workload before going live.

The options describe a scenario (models, workload, service times, backend
concurrency, switch costs, and optionally a capacity within which several
models stay awake) and the policies to compare; each policy is found
through the plugin system and played through the real switcher on the same
generated requests. The report goes to standard output as a table or as
JSON; C{--svg DIR} also draws the timelines.

Exit status: 0 on success, 1 if a policy raised errors during a run (the
switcher carries on, so the run completes, but the policy is broken), 2 on
bad options, an unreadable trace or config, or an unknown policy.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import attrs
import yaml

from ..config import (
    DEFAULT_EVICTION,
    POLICY_KEYS,
    Config,
    ConfigError,
    PolicyConfig,
    loadConfig,
    parseConfig,
)
from ..interfaces import IPolicyFactory
from ..policies import PolicyConflict, UnknownPolicy, findPolicies
from . import workloads
from .engine import DEFAULT_GRACE_SECS, Scenario, Simulation
from .hooks import SwitchCosts
from .records import Run
from .report import formatTable, reportJSON
from .residency import (
    NotationError,
    Residency,
    describeResidency,
    parseAmounts,
    parseCapacity,
    parsePlacements,
)
from .stats import Summary, summarize
from .timeline import renderTimeline
from .workloads import Request, ServiceTimes, TraceError

__all__ = ["main"]

T = TypeVar("T")

WORKLOADS = ("interleaved", "poisson", "bursty", "batch-chat", "trace")
DEFAULT_MODELS = ("A", "B")
DEFAULT_POLICIES = "fifo,round_robin,cost_aware"
DEFAULT_GAP_SECS = 1.0
DEFAULT_POISSON_RATE = 0.5
DEFAULT_BURST_RATE = 2.0
DEFAULT_ON_SECS = 60.0
DEFAULT_OFF_SECS = 180.0
DEFAULT_BATCH_RATE = 4.0
DEFAULT_CHAT_RATE = 1 / 30
DEFAULT_SERVICE_SECS = 2.0
DEFAULT_CONCURRENCY = 16
DEFAULT_SWITCH_SECS = 10.0
IDLE = "idle"

DESCRIPTION = """\
Play a workload through llmux's real switcher and real policy plugins on
simulated time, and report what each policy does to it: requests served,
switches, GPU utilization, throughput, waits per model, timeouts.

Every policy runs on the same generated requests; the same --seed gives the
same report. An hour of traffic takes about a second per policy.
"""

EPILOG = """\
values:
  Options marked [MODEL=]V take a value for every model (V) or for one model
  (MODEL=V); give several as a comma-separated list or by repeating the
  option, e.g. --rate 0.5 --rate B=0.1.

switch costs:
  A switch from X to Y costs sleep(X) + wake(Y). --switch-secs S makes every
  wake take S and every sleep 0, so every switch and cold start costs S;
  --wake-secs and --sleep-secs override single models, and --switch-cost
  X:Y=S fixes the whole cost of one pair (X may be "idle": a cold start).

utilization:
  serving / (serving + switching + blocked), where blocked is time in which
  requests wait while the GPU neither serves nor switches.

residency:
  With a capacity (--capacity, or capacity: in --config), several models are
  awake at once, each holding its --resources (by default all of the
  capacity), as llmux would keep them live. Amounts are POOL:UNITS joined by
  +, alternative placements are joined by /, tried in order: --resources
  chat=gpu0:70+gpu1:70,coder=gpu0:30/gpu1:30. Without a capacity, one model
  is awake at a time; --no-capacity ignores the config's, for comparison.

examples:
  llmux simulate --workload interleaved --switch-secs 10
  llmux simulate --workload batch-chat --switch-secs 60 --svg out/
  llmux simulate --workload trace --trace requests.jsonl -c config.yaml \\
      --policies fifo,cost_aware --policy-setting cost_aware.max_wait_secs=120
  llmux simulate --models A,B,C --capacity gpu0=80,gpu1=80 \\
      --resources A=gpu0:70,B=gpu1:50,C=gpu0:30/gpu1:30
"""


class UsageError(Exception):
    """
    An option value that cannot be used; the message says which and why.
    """


def buildParser() -> argparse.ArgumentParser:
    """
    The option parser of C{llmux simulate}.
    """
    parser = argparse.ArgumentParser(
        prog="llmux simulate",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument

    group = parser.add_argument_group("workload")
    add = group.add_argument
    add(
        "--workload",
        choices=WORKLOADS,
        default="interleaved",
        help="interleaved: one request every --gap seconds, the models taking"
        " turns; poisson: Poisson arrivals at --rate per model; bursty: Poisson"
        " bursts at --rate, --on-secs long on average, separated by silences"
        " --off-secs long on average; batch-chat: the first model is flooded"
        " at --batch-rate while chat trickles to the second at --chat-rate;"
        " trace: replay --trace FILE (default: %(default)s)",
    )
    add(
        "--models",
        metavar="A,B,...",
        help="the models, in config order (default: the models of --config,"
        " else those of the trace in order of appearance, else A,B)",
    )
    add(
        "-c",
        "--config",
        metavar="FILE",
        help="an llmux config file: its models, its policy: table, its"
        " capacity: and eviction: and the models' residency keys are used (its"
        " hooks are not run)",
    )
    add(
        "--duration",
        type=_positive,
        default=3600.0,
        metavar="SECS",
        help="generate arrivals for this long (default: %(default)s)",
    )
    add("--seed", type=int, default=1, help="random seed (default: %(default)s)")
    add(
        "--gap",
        type=_positive,
        default=DEFAULT_GAP_SECS,
        metavar="SECS",
        help="interleaved: seconds between consecutive requests (default: %(default)s)",
    )
    add(
        "--rate",
        action="append",
        metavar="[MODEL=]R",
        help="poisson, bursty: requests per second per model (default:"
        f" {DEFAULT_POISSON_RATE} for poisson, {DEFAULT_BURST_RATE} during"
        " bursts)",
    )
    add(
        "--on-secs",
        type=_positive,
        default=DEFAULT_ON_SECS,
        metavar="SECS",
        help="bursty: mean burst length (default: %(default)s)",
    )
    add(
        "--off-secs",
        type=_nonNegative,
        default=DEFAULT_OFF_SECS,
        metavar="SECS",
        help="bursty: mean silence length (default: %(default)s)",
    )
    add(
        "--batch-rate",
        type=_nonNegative,
        default=DEFAULT_BATCH_RATE,
        metavar="R",
        help="batch-chat: requests per second of the batch job (default: %(default)s)",
    )
    add(
        "--chat-rate",
        type=_nonNegative,
        default=DEFAULT_CHAT_RATE,
        metavar="R",
        help="batch-chat: chat requests per second (default: 1/30)",
    )
    add(
        "--batch-start",
        type=_nonNegative,
        default=0.0,
        metavar="SECS",
        help="batch-chat: when the batch job starts (default: %(default)s)",
    )
    add(
        "--batch-secs",
        type=_positive,
        metavar="SECS",
        help="batch-chat: how long the batch job runs (default: to the end)",
    )
    add(
        "--trace",
        metavar="FILE",
        help='trace: JSON lines like {"t": 12.5, "model": "A",'
        ' "service_secs": 1.8}; service_secs is optional',
    )

    group = parser.add_argument_group("backends")
    add = group.add_argument
    add(
        "--service-secs",
        action="append",
        metavar="[MODEL=]S",
        help="how long a request keeps its backend busy (default:"
        f" {DEFAULT_SERVICE_SECS})",
    )
    add(
        "--service-dist",
        choices=("fixed", "exp"),
        default="fixed",
        help="service times: all equal to --service-secs, or exponentially"
        " distributed around it (default: %(default)s)",
    )
    add(
        "--concurrency",
        action="append",
        metavar="[MODEL=]N",
        help="requests a backend works on at once, each for its full service"
        f" time (default: {DEFAULT_CONCURRENCY}; 1 for a server that takes one"
        " request at a time)",
    )

    group = parser.add_argument_group("switches")
    add = group.add_argument
    add(
        "--switch-secs",
        type=_nonNegative,
        default=DEFAULT_SWITCH_SECS,
        metavar="S",
        help="the cost of every switch and cold start (default: %(default)s)",
    )
    add("--wake-secs", action="append", metavar="MODEL=S", help="a model's wake time")
    add("--sleep-secs", action="append", metavar="MODEL=S", help="a model's sleep time")
    add(
        "--switch-cost",
        action="append",
        metavar="FROM:TO=S",
        help="the whole cost of one switch (FROM may be idle)",
    )

    _addResidencyOptions(parser)

    group = parser.add_argument_group("policies")
    add = group.add_argument
    add(
        "--policies",
        default=DEFAULT_POLICIES,
        metavar="NAME,...",
        help="policies to compare, as found by the plugin system (default:"
        " %(default)s)",
    )
    add(
        "--policy-setting",
        action="append",
        default=[],
        metavar="[POLICY.]KEY=VALUE",
        help="a key of the policy: table (VALUE is read as YAML); unqualified,"
        " it goes to every selected policy that knows the key, e.g."
        " request_timeout_secs=300, quantum_secs=30, cost_aware.amortize=4",
    )
    add(
        "--grace",
        type=_nonNegative,
        default=DEFAULT_GRACE_SECS,
        metavar="SECS",
        help="stop a run this long after the last arrival even if requests"
        " still wait (default: %(default)s)",
    )

    group = parser.add_argument_group("output")
    add = group.add_argument
    add(
        "--format",
        choices=("table", "json"),
        default="table",
        help="the report on standard output (default: %(default)s)",
    )
    add(
        "--svg",
        metavar="DIR",
        help="also write timelines: DIR/timeline.svg with every policy, and"
        " DIR/POLICY.svg for each",
    )
    add(
        "--svg-until",
        type=_positive,
        metavar="SECS",
        help="draw the timelines up to this time only (default: whole runs)",
    )
    return parser


def _addResidencyOptions(parser: argparse.ArgumentParser) -> None:
    """
    The options of the residency group: the C{capacity:} table, the
    eviction policy and the models' residency keys (SPEC section 9). Each
    replaces what C{--config} says.
    """
    group = parser.add_argument_group("residency (several models awake at once)")
    add = group.add_argument
    add(
        "--capacity",
        action="append",
        metavar="POOL=UNITS,...",
        help="the capacity models are awake within, e.g. gpu0=80,gpu1=80"
        " (default: the config's capacity:, else none: one model awake at a"
        " time)",
    )
    add(
        "--no-capacity",
        action="store_true",
        help="ignore the config's capacity: and the models' resources,"
        " asleep_resources and pin: one model awake at a time, for comparison",
    )
    add(
        "--resources",
        action="append",
        metavar="[MODEL=]POOL:UNITS[+...][/...]",
        help="what a model holds while awake: amounts joined by +, alternative"
        " placements by / (default: all of the capacity)",
    )
    add(
        "--asleep-resources",
        action="append",
        metavar="[MODEL=]POOL:UNITS[+...]",
        help="what a model holds while asleep, until unloaded",
    )
    add(
        "--unload",
        action="append",
        metavar="MODEL,...",
        help="models with an unload hook (it ends at once in the simulation)",
    )
    add(
        "--unload-after-secs",
        action="append",
        metavar="[MODEL=]S",
        help="unload a model after this long asleep (needs --unload)",
    )
    add(
        "--idle-ttl-secs",
        action="append",
        metavar="[MODEL=]S",
        help="put a model to sleep after this long with nothing to do",
    )
    add(
        "--pin",
        action="append",
        metavar="MODEL,...",
        help="models never put to sleep to make room for another",
    )
    add(
        "--preload",
        action="append",
        metavar="MODEL,...",
        help="models woken at the start, if they fit without evicting",
    )
    add(
        "--max-in-flight",
        action="append",
        metavar="[MODEL=]N",
        help="requests a model takes at once; more wait in its queue",
    )
    add(
        "--eviction",
        metavar="NAME",
        help="the eviction policy, as found by the plugin system (default: the"
        f" config's eviction:, else {DEFAULT_EVICTION})",
    )


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def _nonNegative(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, not {text}")
    return value


def _positive(text: str) -> float:
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
    return value


def _listOption(values: Sequence[str] | None) -> list[str]:
    """
    The items of a repeatable, comma-separated option.
    """
    return [
        item.strip()
        for value in values or ()
        for item in value.split(",")
        if item.strip()
    ]


def _perModel(
    values: Sequence[str] | None,
    option: str,
    models: Sequence[str],
    cast: Callable[[str], T],
    needModel: bool = False,
) -> tuple[T | None, dict[str, T]]:
    """
    Read a C{[MODEL=]VALUE} option: the value for every model (or C{None}),
    and the values for single models.

    @raise UsageError: naming the option on a bad item or an unknown model.
    """
    every: T | None = None
    single: dict[str, T] = {}
    for item in _listOption(values):
        model, sep, text = item.rpartition("=")
        try:
            value = cast(text)
        except (argparse.ArgumentTypeError, ValueError) as e:
            raise UsageError(f"{option} {item}: {e}") from None
        if not sep:
            if needModel:
                raise UsageError(f"{option} {item}: expected MODEL=VALUE")
            every = value
        elif model not in models:
            raise UsageError(
                f"{option} {item}: unknown model {model!r}"
                f" (models: {', '.join(models)})"
            )
        else:
            single[model] = value
    return every, single


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _switchCosts(options: argparse.Namespace, models: Sequence[str]) -> SwitchCosts:
    _, wake = _perModel(
        options.wake_secs, "--wake-secs", models, _nonNegative, needModel=True
    )
    _, sleep = _perModel(
        options.sleep_secs, "--sleep-secs", models, _nonNegative, needModel=True
    )
    pairs: dict[tuple[str | None, str], float] = {}
    for item in _listOption(options.switch_cost):
        pair, sep, text = item.rpartition("=")
        source, colon, target = pair.partition(":")
        if not sep or not colon:
            raise UsageError(f"--switch-cost {item}: expected FROM:TO=SECS")
        known = source in models or source == IDLE
        if not known or target not in models:
            name = target if known else source
            raise UsageError(
                f"--switch-cost {item}: unknown model {name!r}"
                f" (models: {', '.join(models)}; FROM may be {IDLE})"
            )
        try:
            secs = _nonNegative(text)
        except argparse.ArgumentTypeError as e:
            raise UsageError(f"--switch-cost {item}: {e}") from None
        pairs[(None if source == IDLE else source, target)] = secs
    return SwitchCosts(
        defaultWakeSecs=options.switch_secs,
        defaultSleepSecs=0.0,
        wakeSecs=wake,
        sleepSecs=sleep,
        pairs=pairs,
    )


def _service(options: argparse.Namespace, models: Sequence[str]) -> ServiceTimes:
    every, single = _perModel(
        options.service_secs, "--service-secs", models, _nonNegative
    )
    return ServiceTimes(
        default=DEFAULT_SERVICE_SECS if every is None else every,
        mean=single,
        distribution=options.service_dist,
    )


def _rates(
    options: argparse.Namespace, models: Sequence[str], default: float
) -> dict[str, float]:
    every, single = _perModel(options.rate, "--rate", models, _nonNegative)
    base = default if every is None else every
    return {model: single.get(model, base) for model in models}


def _capacity(
    options: argparse.Namespace, config: Config | None
) -> dict[str, float] | None:
    """
    The capacity: --capacity, else the config's, unless --no-capacity.
    """
    if options.no_capacity:
        given = [
            option
            for option, value in (
                ("--capacity", options.capacity),
                ("--resources", options.resources),
                ("--asleep-resources", options.asleep_resources),
            )
            if value
        ]
        if given:
            raise UsageError(f"--no-capacity: leave out {', '.join(given)}")
        return None
    if options.capacity:
        try:
            return parseCapacity(_listOption(options.capacity))
        except NotationError as e:
            raise UsageError(f"--capacity: {e}") from None
    if config is None or config.capacity is None:
        return None
    return dict(config.capacity)


def _modelList(
    values: Sequence[str] | None, option: str, models: Sequence[str]
) -> list[str]:
    """
    Read a C{MODEL,...} option.

    @raise UsageError: naming an unknown model.
    """
    named = _listOption(values)
    for model in named:
        if model not in models:
            raise UsageError(
                f"{option} {model}: unknown model (models: {', '.join(models)})"
            )
    return named


def _residencyChanges(
    options: argparse.Namespace, models: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """
    The residency keys the options set, by model (values of the types of
    L{Residency}'s attributes, hence C{Any}).
    """
    changes: dict[str, dict[str, Any]] = {model: {} for model in models}
    perModel: list[tuple[str, Sequence[str] | None, Callable[[str], object]]] = [
        ("resources", options.resources, parsePlacements),
        ("asleep_resources", options.asleep_resources, parseAmounts),
        ("unload_after_secs", options.unload_after_secs, _nonNegative),
        ("idle_ttl_secs", options.idle_ttl_secs, _positive),
        ("max_in_flight", options.max_in_flight, _count),
    ]
    for key, values, cast in perModel:
        option = "--" + key.replace("_", "-")
        every, single = _perModel(values, option, models, cast)
        for model in models:
            value = single.get(model, every)
            if value is not None:
                changes[model][key] = value
    for key, values in (
        ("unload", options.unload),
        ("pin", options.pin),
        ("preload", options.preload),
    ):
        for model in _modelList(values, f"--{key}", models):
            changes[model][key] = True
    return changes


def _residency(
    options: argparse.Namespace, config: Config | None, models: Sequence[str]
) -> dict[str, Residency]:
    """
    Each model's residency keys: the config's (if it configures the model),
    less what --no-capacity drops, with what the options set.
    """
    changes = _residencyChanges(options, models)
    residency = {}
    for model in models:
        configured = config.model(model) if config else None
        keys = Residency() if configured is None else Residency.fromConfig(configured)
        if options.no_capacity:
            keys = attrs.evolve(keys, resources=(), asleep_resources={}, pin=False)
        keys = attrs.evolve(keys, **changes[model])
        if keys != Residency():
            residency[model] = keys
    return residency


def _describeResidency(
    capacity: Mapping[str, float] | None,
    residency: Mapping[str, Residency],
    eviction: str,
    models: Sequence[str],
) -> dict[str, object]:
    """
    What describes residency in the report: nothing if the scenario uses
    none of it.
    """
    described: dict[str, object] = {}
    if capacity is not None:
        described["capacity"] = dict(capacity)
        described["eviction"] = eviction
    described.update(describeResidency(models, residency))
    return described


def _readTrace(
    path: str, service: ServiceTimes, rng: random.Random
) -> tuple[Request, ...]:
    with open(path, encoding="utf-8") as f:
        return workloads.readTrace(f, service, rng, source=path)


def _models(
    options: argparse.Namespace, configModels: tuple[str, ...] | None
) -> tuple[str, ...] | None:
    """
    The models named by --models or --config; C{None} if neither names any.
    """
    if options.models is not None:
        models = tuple(_listOption([options.models]))
        if not models:
            raise UsageError("--models: name at least one model")
        if len(set(models)) != len(models):
            raise UsageError(f"--models {options.models}: a model is named twice")
        return models
    return configModels


def _workload(
    options: argparse.Namespace,
    named: tuple[str, ...] | None,
    rng: random.Random,
) -> tuple[tuple[str, ...], tuple[Request, ...], ServiceTimes, dict[str, object]]:
    """
    The models, the requests, their service times and what describes the
    workload.
    """
    kind = options.workload
    info: dict[str, object] = {"workload": kind, "seed": options.seed}
    if kind == "trace":
        if options.trace is None:
            raise UsageError("--workload trace needs --trace FILE")
        # Service times need the models; the trace may be where they come from.
        first = _readTrace(options.trace, ServiceTimes(), random.Random(0))
        seen = tuple(dict.fromkeys(r.model for r in first))
        models = named or seen
        unknown = [m for m in seen if m not in models]
        if unknown:
            raise UsageError(
                f"{options.trace}: requests for models not configured:"
                f" {', '.join(unknown)}"
            )
        service = _service(options, models)
        requests = _readTrace(options.trace, service, rng)
        info["trace"] = options.trace
        info["models"] = list(models)
        return models, requests, service, info
    models = named or DEFAULT_MODELS
    service = _service(options, models)
    duration = options.duration
    info["models"] = list(models)
    info["duration_secs"] = duration
    if kind == "interleaved":
        requests = workloads.interleaved(models, options.gap, duration, service, rng)
        info["gap_secs"] = options.gap
    elif kind == "poisson":
        rates = _rates(options, models, DEFAULT_POISSON_RATE)
        requests = workloads.poisson(rates, duration, service, rng)
        info["rates_per_sec"] = rates
    elif kind == "bursty":
        rates = _rates(options, models, DEFAULT_BURST_RATE)
        requests = workloads.bursty(
            rates, duration, options.on_secs, options.off_secs, service, rng
        )
        info["burst_rates_per_sec"] = rates
        info["mean_on_secs"] = options.on_secs
        info["mean_off_secs"] = options.off_secs
    else:
        if len(models) < 2:
            raise UsageError("--workload batch-chat needs two models")
        requests = workloads.batchChat(
            models[0],
            models[1],
            options.batch_rate,
            options.chat_rate,
            duration,
            service,
            rng,
            batchStart=options.batch_start,
            batchSecs=options.batch_secs,
        )
        info["batch"] = {
            "model": models[0],
            "rate_per_sec": options.batch_rate,
            "start_secs": options.batch_start,
            "secs": options.batch_secs,
        }
        info["chat"] = {"model": models[1], "rate_per_sec": options.chat_rate}
    return models, requests, service, info


def _parseSetting(text: str) -> tuple[str | None, str, object]:
    name, sep, raw = text.partition("=")
    policy, dot, key = name.strip().rpartition(".")
    if not sep or not key:
        raise UsageError(f"--policy-setting {text}: expected [POLICY.]KEY=VALUE")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    return (policy if dot else None), key, value


def _accepts(factory: IPolicyFactory, key: str, value: object) -> bool:
    """
    Whether the policy C{factory} builds knows the key C{key}: building it
    with that key alone does not fail with "unknown key" for it.
    """
    try:
        factory.buildPolicy(PolicyConfig(extra={key: value}))
    except ConfigError as e:
        return not (e.field == f"policy.{key}" and e.message.startswith("unknown key"))
    return True


def _policySettings(
    names: Sequence[str],
    factories: Mapping[str, IPolicyFactory],
    shared: Mapping[str, object],
    own: Mapping[str, Mapping[str, object]],
    models: Sequence[str],
) -> dict[str, PolicyConfig]:
    """
    Each policy's C{policy:} table: the common keys of C{shared} for all;
    its other keys for every policy that knows them; then C{own[policy]}.
    Each table is validated as llmux validates a config file, and by the
    policy itself.
    """
    tables: dict[str, dict[str, object]] = {
        name: {k: v for k, v in shared.items() if k in POLICY_KEYS} for name in names
    }
    for key, value in shared.items():
        if key in POLICY_KEYS:
            continue
        takers = [n for n in names if _accepts(factories[n], key, value)]
        if not takers:
            raise UsageError(
                f"policy setting {key!r} is not known to any of the selected"
                f" policies ({', '.join(names)})"
            )
        for name in takers:
            tables[name][key] = value
    for name, table in own.items():
        if name not in tables:
            raise UsageError(
                f"--policy-setting {name}.*: {name} is not among --policies"
                f" ({', '.join(names)})"
            )
        tables[name].update(table)
    placeholder = {"port": 1, "wake": "-", "sleep": "-", "alive": "-"}
    result = {}
    for name, table in tables.items():
        data = {
            "models": {m: {**placeholder, "port": i + 1} for i, m in enumerate(models)},
            "policy": table,
        }
        try:
            result[name] = parseConfig(data).policy
            factories[name].buildPolicy(result[name])
        except ConfigError as e:
            raise UsageError(f"{name}: {e}") from None
    return result


def _describeCosts(costs: SwitchCosts) -> dict[str, object]:
    described: dict[str, object] = {"switch_secs": costs.defaultWakeSecs}
    if costs.wakeSecs:
        described["wake_secs"] = dict(costs.wakeSecs)
    if costs.sleepSecs:
        described["sleep_secs"] = dict(costs.sleepSecs)
    if costs.pairs:
        described["switch_costs"] = {
            f"{source or IDLE}:{target}": secs
            for (source, target), secs in costs.pairs.items()
        }
    return described


def _writeTimelines(
    directory: str,
    title: str,
    results: Sequence[tuple[Run, Summary]],
    until: float | None,
) -> None:
    """
    Write C{directory}/timeline.svg with every run, and one file per policy.
    """
    os.makedirs(directory, exist_ok=True)
    pictures = {"timeline": list(results)}
    pictures.update({run.policy: [(run, summary)] for run, summary in results})
    for stem, runs in pictures.items():
        path = os.path.join(directory, f"{stem}.svg")
        with open(path, "w", encoding="utf-8") as f:
            f.write(renderTimeline(title, runs, until))


def _scenario(
    options: argparse.Namespace, config: Config | None
) -> tuple[Scenario, dict[str, object]]:
    """
    The scenario C{options} describe, and what describes it in the report.
    """
    named = _models(options, config.modelNames if config else None)
    rng = random.Random(options.seed)
    models, requests, service, info = _workload(options, named, rng)
    if not requests:
        raise UsageError("the workload has no requests")
    costs = _switchCosts(options, models)
    every, concurrency = _perModel(options.concurrency, "--concurrency", models, _count)
    defaultConcurrency = DEFAULT_CONCURRENCY if every is None else every
    info["requests"] = len(requests)
    info["service_secs"] = {m: service.meanFor(m) for m in models}
    info["service_dist"] = service.distribution
    info["concurrency"] = {m: concurrency.get(m, defaultConcurrency) for m in models}
    info.update(_describeCosts(costs))
    capacity = _capacity(options, config)
    residency = _residency(options, config, models)
    eviction = options.eviction or (config.eviction if config else DEFAULT_EVICTION)
    info.update(_describeResidency(capacity, residency, eviction, models))
    scenario = Scenario(
        models=models,
        requests=requests,
        costs=costs,
        defaultConcurrency=defaultConcurrency,
        concurrency=concurrency,
        graceSecs=options.grace,
        capacity=capacity,
        residency=residency,
        eviction=eviction,
    )
    return scenario, info


def _policies(
    options: argparse.Namespace, config: Config | None, models: Sequence[str]
) -> dict[str, PolicyConfig]:
    """
    The selected policies, in order, each with its C{policy:} table.
    """
    names = _listOption([options.policies])
    if not names:
        raise UsageError("--policies: name at least one policy")
    factories = findPolicies()
    for name in names:
        if name not in factories:
            raise UnknownPolicy(name, list(factories))
    shared = config.policy.table() if config else {}
    own: dict[str, dict[str, object]] = {}
    for text in options.policy_setting:
        policy, key, value = _parseSetting(text)
        if policy is None:
            shared = {**shared, key: value}
        else:
            own.setdefault(policy, {})[key] = value
    return _policySettings(names, factories, shared, own, models)


def run(options: argparse.Namespace) -> int:
    """
    Simulate what C{options} describe, print the report and draw the
    timelines; return the exit status.
    """
    config = loadConfig(options.config) if options.config else None
    scenario, info = _scenario(options, config)
    settings = _policies(options, config, scenario.models)
    results = []
    for name, table in settings.items():
        result = Simulation(scenario, name, table).run()
        results.append((result, summarize(result)))
    summaries = [summary for _, summary in results]
    if options.format == "json":
        json.dump(reportJSON(info, summaries), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(formatTable(info, summaries))
    if options.svg:
        _writeTimelines(options.svg, _title(info), results, options.svg_until)
    broken = [s for s in summaries if s.policyErrors]
    for s in broken:
        sys.stderr.write(
            f"llmux simulate: {s.policy}: the policy raised"
            f" {len(s.policyErrors)} errors; first: {s.policyErrors[0]}\n"
        )
    return 1 if broken else 0


def _title(info: Mapping[str, object]) -> str:
    models = info.get("models")
    modelText = ", ".join(map(str, models)) if isinstance(models, list) else ""
    capacity = info.get("capacity")
    capacityText = ""
    if isinstance(capacity, Mapping):
        pools = ", ".join(f"{pool} {units:g}" for pool, units in capacity.items())
        capacityText = f" capacity {pools},"
    return (
        f"{info['workload']} workload, models {modelText},"
        f" switch {info['switch_secs']:g} s,{capacityText} seed {info['seed']}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run C{llmux simulate} with C{argv}, the arguments after C{simulate}
    (default: C{sys.argv[1:]}), and return the exit status.
    """
    parser = buildParser()
    try:
        options = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 2
    try:
        return run(options)
    except (
        UsageError,
        ConfigError,
        TraceError,
        UnknownPolicy,
        PolicyConflict,
        OSError,
    ) as e:
        sys.stderr.write(f"llmux simulate: error: {e}\n")
        return 2
