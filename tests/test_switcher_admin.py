"""
The switcher's side of the admin API and of reload, on a Clock with fake
hooks: L{Switcher.sleepModel}, L{Switcher.unloadModel}, L{Switcher.pin} and
L{Switcher.reconfigure}.
"""

from __future__ import annotations

import attrs
from twisted.trial.unittest import SynchronousTestCase

from llmux.config import Config, ModelConfig
from llmux.errors import CannotPin, NoUnloadHook
from llmux.interfaces import ModelState
from llmux.policies.fifo import FifoPolicy
from llmux.policies.lru import LruEviction

from .test_switcher import Harness, makeConfig


def stateOf(h: Harness, model: str) -> ModelState:
    return {v.name: v.state for v in h.switcher.views()}[model]


class AdminTests(SynchronousTestCase):
    """
    Sleep, unload and pin.
    """

    def test_sleepDrainsFirst(self) -> None:
        """
        A busy model stops taking requests at once, sleeps once its requests
        are done, and answers with its state.
        """
        h = Harness()
        slot = h.activate("A")
        done = h.switcher.sleepModel("A")
        self.assertEqual(stateOf(h, "A"), ModelState.DRAINING)
        self.assertNoResult(done)
        slot.release()
        self.assertEqual(h.hooks.log()[-1], ("A", "sleep"))
        h.hooks.finishNext("A", "sleep")
        self.assertEqual(self.successResultOf(done), ModelState.ASLEEP)

    def test_waitersWakeItAgain(self) -> None:
        """
        A request that arrives while the model drains for an admin sleep is
        served after it wakes again.
        """
        h = Harness()
        h.activate("A").release()
        done = h.switcher.sleepModel("A")
        waiting = h.acquire("A")
        h.hooks.finishNext("A", "sleep")
        self.successResultOf(done)
        h.hooks.finishNext("A", "wake")
        self.assertIsNotNone(waiting.slot)

    def test_unload(self) -> None:
        """
        Unload puts the model to sleep, then runs its unload hook; a model
        without one is refused.
        """
        h = Harness(
            config={
                "models": tuple(
                    attrs.evolve(m, unload="unload") for m in makeConfig("A").models
                )
            }
        )
        h.activate("A").release()
        done = h.switcher.unloadModel("A")
        h.hooks.finishNext("A", "sleep")
        h.hooks.finishNext("A", "unload")
        self.assertEqual(self.successResultOf(done), ModelState.UNLOADED)
        refused = Harness().switcher.unloadModel("A")
        self.assertIsInstance(self.failureResultOf(refused).value, NoUnloadHook)

    def test_pin(self) -> None:
        """
        A pinned model shows as pinned; unpinning undoes it.
        """
        h = Harness()
        h.switcher.pin("A", True)
        self.assertTrue({v.name: v.pinned for v in h.switcher.views()}["A"])
        h.switcher.pin("A", False)
        self.assertFalse({v.name: v.pinned for v in h.switcher.views()}["A"])

    def test_pinsMustFit(self) -> None:
        """
        Without a capacity table one model is awake at a time: a second pin
        is refused, saying why.
        """
        h = Harness()
        h.switcher.pin("A", True)
        with self.assertRaises(CannotPin) as caught:
            h.switcher.pin("B", True)
        self.assertIn(
            "cannot be awake together with pinned model(s) A", str(caught.exception)
        )
        self.assertFalse({v.name: v.pinned for v in h.switcher.views()}["B"])

    def test_shutdown(self) -> None:
        """
        After shutdown began, admin work does not run: it answers None.
        """
        h = Harness()
        h.switcher.shutdown(1, False)
        self.assertIsNone(self.successResultOf(h.switcher.sleepModel("A")))


class ReconfigureTests(SynchronousTestCase):
    """
    Reload's model changes.
    """

    def reconfigure(self, h: Harness, config: Config) -> object:
        return h.switcher.reconfigure(
            config, FifoPolicy.fromConfig(config.policy), LruEviction()
        )

    def test_changes(self) -> None:
        """
        A removed model goes; a changed one sleeps with its old hooks and
        wakes with the new ones; an added one is usable; an unchanged one
        runs no hook.
        """
        h = Harness()
        h.activate("A").release()
        changedA = attrs.evolve(h.config.models[0], wake="new wake A")
        added = ModelConfig("D", 9000, "wake D", "sleep D", "true")
        config = attrs.evolve(h.config, models=(changedA, h.config.models[2], added))
        done = self.reconfigure(h, config)
        self.assertEqual(h.hooks.log()[-1], ("A", "sleep"))
        h.hooks.finishNext("A", "sleep")
        report = self.successResultOf(done)  # type: ignore[arg-type]
        self.assertEqual(
            report,
            {"added": ["D"], "removed": ["B"], "changed": ["A"], "unchanged": ["C"]},
        )
        self.assertEqual([v.name for v in h.switcher.views()], ["A", "C", "D"])
        again = h.acquire("A")
        self.assertEqual(h.hooks.calls[-1].config.wake, "new wake A")
        h.hooks.finishNext("A", "wake")
        self.assertIsNotNone(again.slot)

    def test_changedModelWaiters(self) -> None:
        """
        A request queued on a model that a reload changes (here: waiting
        for a free slot) is served once the model wakes with its new hooks.
        """
        limited = attrs.evolve(makeConfig("A", "B").models[0], max_in_flight=1)
        h = Harness(config={"models": (limited, makeConfig("A", "B").models[1])})
        slot = h.activate("A")
        queued = h.acquire("A")
        changed = attrs.evolve(limited, wake="new wake A")
        config = attrs.evolve(h.config, models=(changed, h.config.models[1]))
        done = self.reconfigure(h, config)
        slot.release()
        self.assertIsNone(queued.slot)
        h.hooks.finishNext("A", "sleep")
        self.successResultOf(done)  # type: ignore[arg-type]
        self.assertEqual(h.hooks.calls[-1].config.wake, "new wake A")  # type: ignore[union-attr]
        h.hooks.finishNext("A", "wake")
        self.assertIsNotNone(queued.slot)

    def test_capacityChanged(self) -> None:
        """
        Another capacity table is refused: nothing changes.
        """
        h = Harness()
        config = attrs.evolve(h.config, capacity={"gpu": 1})
        failure = self.failureResultOf(self.reconfigure(h, config))  # type: ignore[arg-type]
        self.assertIsInstance(failure.value, ValueError)
        self.assertEqual([v.name for v in h.switcher.views()], ["A", "B", "C"])
