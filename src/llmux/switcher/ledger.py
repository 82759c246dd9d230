# -*- test-case-name: tests.test_ledger -*-
"""
The ledger: what each model holds of the host's capacity.

Plain book-keeping: a model's holding is set when its state changes, and the
ledger refuses any holding that would take more than the capacity. The
switcher decides what to book and when (see L{llmux.switcher.model}); the
ledger only makes sure the books never exceed what the host has.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import attrs

from ..resources import Amounts, describeShortfall, fits, minus, plus, total

__all__ = ["Ledger", "LedgerError"]


class LedgerError(Exception):
    """
    A booking that would take more than the capacity: a bug in whoever
    planned it, never something a request can cause.
    """


@attrs.define
class Ledger:
    """
    The capacity, by pool, and what each model holds of it.
    """

    capacity: Mapping[str, float]
    _holdings: dict[str, Mapping[str, float]] = attrs.field(factory=dict, init=False)

    def holding(self, model: str) -> Mapping[str, float]:
        """
        What C{model} holds now (nothing if it was never booked).
        """
        return self._holdings.get(model, {})

    def hold(self, model: str, amounts: Amounts) -> None:
        """
        Make C{amounts} what C{model} holds, replacing its holding.

        @raise LedgerError: if the total would exceed the capacity; nothing
            changes then.
        """
        after = plus(minus(self.used(), self.holding(model)), amounts)
        if not fits(after, self.capacity):
            raise LedgerError(
                f"booking {dict(amounts)} for {model} exceeds the capacity:"
                f" {describeShortfall(after, self.capacity)}"
            )
        self._holdings[model] = {
            pool: units for pool, units in amounts.items() if units
        }

    def used(self) -> dict[str, float]:
        """
        What every model holds together, by pool.
        """
        return total(self._holdings.values())

    def free(self, setAside: Iterable[Amounts] = ()) -> dict[str, float]:
        """
        What nobody holds, less C{setAside} (what switches under way will
        need), by pool of the capacity.
        """
        taken = plus(self.used(), *setAside)
        return {
            pool: units - taken.get(pool, 0.0) for pool, units in self.capacity.items()
        }
