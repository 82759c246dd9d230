"""
Tests for L{llmux.resources} (amounts of capacity) and
L{llmux.switcher.ledger} (what each model holds).
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from llmux.resources import describeShortfall, fits, minus, plus, shortfall, total
from llmux.switcher.ledger import Ledger, LedgerError


class AmountTests(SynchronousTestCase):
    """
    Pool-by-pool arithmetic.
    """

    def test_plusMinus(self) -> None:
        self.assertEqual(plus({"a": 1}, {"a": 2, "b": 3}), {"a": 3, "b": 3})
        self.assertEqual(minus({"a": 1}, {"a": 2, "b": 3}), {"a": -1, "b": -3})
        self.assertEqual(total([{"a": 1}, {"b": 2}, {"a": 0.5}]), {"a": 1.5, "b": 2})

    def test_shortfall(self) -> None:
        """
        A pool missing from what is available has nothing available.
        """
        self.assertEqual(shortfall({"a": 5, "b": 1}, {"a": 3}), {"a": 2, "b": 1})
        self.assertFalse(fits({"a": 5}, {"a": 3}))
        self.assertTrue(fits({}, {}))
        self.assertEqual(
            describeShortfall({"gpu0": 90, "ram": 1}, {"gpu0": 80, "ram": 4}),
            "gpu0 needs 90 of 80",
        )

    def test_roundingIsNotShortage(self) -> None:
        """
        Float sums that should be equal count as fitting.
        """
        self.assertTrue(fits({"a": 0.1 + 0.2}, {"a": 0.3}))


class LedgerTests(SynchronousTestCase):
    """
    The ledger never books more than the capacity.
    """

    def test_holdAndRelease(self) -> None:
        ledger = Ledger({"gpu": 80, "ram": 100})
        ledger.hold("A", {"gpu": 40, "ram": 10})
        ledger.hold("B", {"gpu": 40})
        self.assertEqual(ledger.used(), {"gpu": 80, "ram": 10})
        self.assertEqual(ledger.free(), {"gpu": 0, "ram": 90})
        self.assertEqual(ledger.free([{"ram": 30}]), {"gpu": 0, "ram": 60})
        ledger.hold("A", {"ram": 10})
        self.assertEqual(ledger.holding("A"), {"ram": 10})
        self.assertEqual(ledger.free(), {"gpu": 40, "ram": 90})
        self.assertEqual(ledger.holding("nobody"), {})

    def test_overbookingRefused(self) -> None:
        """
        A holding that would exceed the capacity is refused and changes
        nothing.
        """
        ledger = Ledger({"gpu": 80})
        ledger.hold("A", {"gpu": 50})
        with self.assertRaises(LedgerError) as caught:
            ledger.hold("B", {"gpu": 40})
        self.assertIn("gpu needs 90 of 80", str(caught.exception))
        self.assertEqual(ledger.used(), {"gpu": 50})
        ledger.hold("A", {"gpu": 80})
        self.assertEqual(ledger.used(), {"gpu": 80})

    @given(
        st.lists(
            st.tuples(
                st.sampled_from("ABCD"),
                st.dictionaries(
                    st.sampled_from(["x", "y"]),
                    st.floats(min_value=0, max_value=60, allow_nan=False),
                ),
            ),
            max_size=30,
        )
    )
    def test_neverExceeds(self, bookings: list[tuple[str, dict[str, float]]]) -> None:
        """
        Whatever is booked in whatever order, what is used stays within the
        capacity, and equals the sum of the holdings.
        """
        ledger = Ledger({"x": 100, "y": 50})
        for model, amounts in bookings:
            try:
                ledger.hold(model, amounts)
            except LedgerError:
                pass
            used = ledger.used()
            self.assertTrue(fits(used, ledger.capacity))
            held = total(ledger.holding(m) for m in "ABCD")
            self.assertEqual(used.keys(), held.keys())
            for pool, units in used.items():
                self.assertAlmostEqual(units, held[pool])
