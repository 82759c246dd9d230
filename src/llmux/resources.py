# -*- test-case-name: tests.test_ledger -*-
"""
Amounts of capacity: plain arithmetic on mappings of pool name to units.

A model's C{resources}, its C{asleep_resources}, what a pool has free: all
are amounts. The config checks what can ever fit with these functions, and
the switcher's ledger books what is held with them, so both count the same
way.

Units are whatever the operator chose (GiB, say) and may be fractional, so
comparisons allow for the rounding of float sums.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = [
    "EPSILON",
    "Amounts",
    "describeShortfall",
    "fits",
    "minus",
    "plus",
    "shortfall",
    "total",
]

#: An amount counts as zero below this: float sums of amounts such as 0.1
#: and 0.2 must not make a model "not fit" by a rounding error.
EPSILON = 1e-9

Amounts = Mapping[str, float]


def plus(*amounts: Amounts) -> dict[str, float]:
    """
    The pool-by-pool sum of C{amounts}.
    """
    result: dict[str, float] = {}
    for amount in amounts:
        for pool, units in amount.items():
            result[pool] = result.get(pool, 0.0) + units
    return result


def total(amounts: Iterable[Amounts]) -> dict[str, float]:
    """
    The pool-by-pool sum of every amount in C{amounts}.
    """
    return plus(*amounts)


def minus(a: Amounts, b: Amounts) -> dict[str, float]:
    """
    C{a} less C{b}, pool by pool, over the pools of both (may be negative).
    """
    result = dict(a)
    for pool, units in b.items():
        result[pool] = result.get(pool, 0.0) - units
    return result


def shortfall(need: Amounts, available: Amounts) -> dict[str, float]:
    """
    The pools where C{need} exceeds C{available}, and by how much. A pool
    missing from C{available} has nothing available.
    """
    missing = {}
    for pool, units in need.items():
        gap = units - available.get(pool, 0.0)
        if gap > EPSILON:
            missing[pool] = gap
    return missing


def fits(need: Amounts, available: Amounts) -> bool:
    """
    Whether C{need} fits in C{available} in every pool.
    """
    return not shortfall(need, available)


def describeShortfall(need: Amounts, available: Amounts) -> str:
    """
    The pools C{need} does not fit in, for a message: C{gpu0 needs 90 of 80}.
    """
    return ", ".join(
        f"{pool} needs {_units(need[pool])} of {_units(available.get(pool, 0.0))}"
        for pool in shortfall(need, available)
    )


def _units(value: float) -> str:
    return f"{value:g}"
