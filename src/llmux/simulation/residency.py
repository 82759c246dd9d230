# -*- test-case-name: tests.test_simulation_residency -*-
"""
Residency in a simulation (SPEC section 9): what each model holds of a
declared capacity, and how the switcher keeps it awake.

A scenario with a capacity builds the switcher from the same C{capacity:}
table and model keys a server's config would have, so the real switcher
keeps several models awake, admits, evicts (through the eviction policy
plugin), honours pins and idle TTLs exactly as it would live. This module
holds one model's keys (L{Residency}) and reads and writes them in the
notation of C{llmux simulate}'s options:

  - an amount is C{POOL:UNITS}, several joined by C{+}: C{gpu0:70+gpu1:70};
  - alternative placements, tried in order, are joined by C{/}:
    C{gpu0:30/gpu1:30};
  - a capacity is C{POOL=UNITS}, several joined by C{,}: C{gpu0=80,gpu1=80}.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

import attrs

from ..config import ModelConfig

__all__ = [
    "NotationError",
    "Residency",
    "describeResidency",
    "formatAmounts",
    "formatPlacements",
    "parseAmounts",
    "parseCapacity",
    "parsePlacements",
]


def _placements(
    placements: Sequence[Mapping[str, float]],
) -> tuple[Mapping[str, float], ...]:
    return tuple(MappingProxyType(dict(p)) for p in placements)


def _amounts(amounts: Mapping[str, float]) -> Mapping[str, float]:
    return MappingProxyType(dict(amounts))


@attrs.frozen
class Residency:
    """
    One model's residency keys. Attribute names and defaults are the config
    file's, as in L{ModelConfig}; the defaults are what a model without
    them gets (it holds the whole capacity while awake, never sleeps by
    itself, is never pinned).

    @ivar unload: whether the model has an C{unload} hook. A simulated
        C{unload} ends at once, as C{alive} does.
    """

    resources: tuple[Mapping[str, float], ...] = attrs.field(
        default=(), converter=_placements
    )
    asleep_resources: Mapping[str, float] = attrs.field(
        factory=dict, converter=_amounts
    )
    unload: bool = False
    unload_after_secs: float = 0.0
    idle_ttl_secs: float | None = None
    pin: bool = False
    preload: bool = False
    max_in_flight: int | None = None

    @classmethod
    def fromConfig(cls, model: ModelConfig) -> Residency:
        """
        The residency keys of a configured model.
        """
        return cls(
            resources=model.resources,
            asleep_resources=model.asleep_resources,
            unload=model.unload is not None,
            unload_after_secs=model.unload_after_secs,
            idle_ttl_secs=model.idle_ttl_secs,
            pin=model.pin,
            preload=model.preload,
            max_in_flight=model.max_in_flight,
        )

    def changed(self) -> dict[str, object]:
        """
        The keys whose values differ from the defaults, with their values.
        """
        default = Residency()
        return {
            field.name: getattr(self, field.name)
            for field in attrs.fields(Residency)
            if getattr(self, field.name) != getattr(default, field.name)
        }

    def configKeys(self, unloadHook: str) -> dict[str, object]:
        """
        The keys of the model's entry in a config file that differ from
        the defaults, as the file writes them.

        @param unloadHook: the C{unload} script to name, if it has one.
        """
        keys = self.changed()
        if "resources" in keys:
            # One placement is written as a mapping, as people write it.
            placements = [dict(p) for p in self.resources]
            keys["resources"] = placements[0] if len(placements) == 1 else placements
        if "asleep_resources" in keys:
            keys["asleep_resources"] = dict(self.asleep_resources)
        if self.unload:
            keys["unload"] = unloadHook
        return keys


#: Keys that are true or false: a report lists the models that set them.
FLAGS = ("unload", "pin", "preload")


def _notation(residency: Residency, key: str) -> object:
    """
    The value of C{residency}'s C{key} as the options write it.
    """
    if key == "resources":
        return formatPlacements(residency.resources)
    if key == "asleep_resources":
        return formatAmounts(residency.asleep_resources)
    return getattr(residency, key)


def describeResidency(
    models: Sequence[str], residency: Mapping[str, Residency]
) -> dict[str, object]:
    """
    The residency keys any of C{models} sets, for a report, in the notation
    of the options (so a description can be given back to C{llmux
    simulate}): for C{unload}, C{pin} and C{preload}, the models that set
    them; for the others, each model's value.
    """
    byKey: dict[str, dict[str, object]] = {}
    for model in models:
        keys = residency.get(model, Residency())
        for key in keys.changed():
            byKey.setdefault(key, {})[model] = _notation(keys, key)
    ordered = [f.name for f in attrs.fields(Residency) if f.name in byKey]
    return {key: list(byKey[key]) if key in FLAGS else byKey[key] for key in ordered}


class NotationError(ValueError):
    """
    Text that is not an amount, a placement list or a capacity; the message
    says what was expected.
    """


def _units(pool: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise NotationError(f"{pool}: not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise NotationError(f"{pool}: must be a number above 0, not {text}")
    return value


def parseAmounts(text: str) -> dict[str, float]:
    """
    Read C{POOL:UNITS[+POOL:UNITS...]}.

    @raise NotationError: on anything else, or a pool given twice.
    """
    amounts: dict[str, float] = {}
    for part in text.split("+"):
        pool, colon, units = part.strip().partition(":")
        pool = pool.strip()
        if not colon or not pool:
            raise NotationError(f"expected POOL:UNITS, not {part.strip()!r}")
        if pool in amounts:
            raise NotationError(f"pool {pool!r} given twice")
        amounts[pool] = _units(pool, units.strip())
    return amounts


def parsePlacements(text: str) -> tuple[dict[str, float], ...]:
    """
    Read alternative placements: amounts joined by C{/}, tried in order.

    @raise NotationError: if one of them is not an amount.
    """
    return tuple(parseAmounts(part) for part in text.split("/"))


def parseCapacity(items: Sequence[str]) -> dict[str, float]:
    """
    Read a capacity from C{POOL=UNITS} items.

    @raise NotationError: on anything else, or a pool given twice.
    """
    capacity: dict[str, float] = {}
    for item in items:
        pool, sep, units = item.partition("=")
        pool = pool.strip()
        if not sep or not pool:
            raise NotationError(f"expected POOL=UNITS, not {item!r}")
        if pool in capacity:
            raise NotationError(f"pool {pool!r} given twice")
        capacity[pool] = _units(pool, units.strip())
    return capacity


def formatAmounts(amounts: Mapping[str, float]) -> str:
    """
    Write an amount as L{parseAmounts} reads it.
    """
    return "+".join(f"{pool}:{units:g}" for pool, units in amounts.items())


def formatPlacements(placements: Sequence[Mapping[str, float]]) -> str:
    """
    Write alternative placements as L{parsePlacements} reads them.
    """
    return "/".join(formatAmounts(p) for p in placements)
