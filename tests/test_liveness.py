"""
Tests for the reliability rules of the switcher and L{llmux.liveness}: bounded
queues, the drain timeout, adoption at start-up, health checks and graceful
shutdown. All on a Clock with fake hooks.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.trial.unittest import SynchronousTestCase

from llmux.errors import ModelNotReady
from llmux.interfaces import ModelState
from llmux.liveness import Liveness
from llmux.switcher import Active, Idle, _Unobserved

from .test_switcher import CapturedEvents, Harness


class CountingObserver(_Unobserved):
    """
    Records the switcher's observer calls this module cares about: deaths.
    """

    def __init__(self) -> None:
        self.deaths: list[str] = []

    def died(self, model: str) -> None:
        self.deaths.append(model)


def harness(
    config: dict[str, Any] | None = None, observer: Any = None, **settings: Any
) -> Harness:
    """
    A Harness with the given top-level config and policy table settings.
    """
    return Harness(observer=observer, config=config, **settings)


class QueueLimitTests(SynchronousTestCase):
    """
    A model's queue holds at most max_queue requests.
    """

    def test_fullQueueRefuses(self) -> None:
        """
        The request beyond max_queue is refused with ModelNotReady (503)
        at once; the ones queued are still served.
        """
        events = CapturedEvents(self)
        h = harness(max_queue=2)
        queued = [h.acquire("A"), h.acquire("A")]
        refused = h.acquire("A")
        assert refused.failure is not None
        self.assertIsInstance(refused.failure.value, ModelNotReady)
        self.assertEqual(
            str(refused.failure.value), "Model not ready: A (queue full: 2 waiting)"
        )
        [event] = events.named("queue_full")
        self.assertEqual((event["model"], event["max_queue"]), ("A", 2))
        h.hooks.finishNext("A", "wake")
        self.assertTrue(all(o.slot is not None for o in queued))
        self.assertIsNotNone(h.acquire("A").slot, "the awake model is not bounded")


class DrainTimeoutTests(SynchronousTestCase):
    """
    drain_timeout_secs bounds the wait for in-flight requests.
    """

    def test_switchGoesOnAfterTimeout(self) -> None:
        """
        After drain_timeout_secs the switch goes on with requests still in
        flight, and says so.
        """
        events = CapturedEvents(self)
        h = harness(drain_timeout_secs=10)
        h.activate("A")
        waiting = h.acquire("B")
        h.clock.advance(9.9)
        self.assertEqual(h.hooks.log(), [("A", "wake")])
        h.clock.advance(0.1)
        self.assertEqual(h.hooks.log(), [("A", "wake"), ("A", "sleep")])
        [event] = events.named("drain_timeout")
        self.assertEqual(
            (event["model"], event["to"], event["in_flight"]), ("A", "B", 1)
        )
        h.hooks.finishNext("A", "sleep")
        h.hooks.finishNext("B", "wake")
        self.assertIsNotNone(waiting.slot)

    def test_noTimeoutWaitsForever(self) -> None:
        """
        Without a drain timeout (the default), the drain waits as long as it
        takes.
        """
        h = harness()
        h.activate("A")
        h.acquire("B")
        h.clock.advance(100000)
        self.assertEqual(h.hooks.log(), [("A", "wake")])


class AdoptionTests(SynchronousTestCase):
    """
    At start-up a model that is already awake is adopted.
    """

    def test_adoptFirstAlive(self) -> None:
        """
        The first model (config order) whose alive hook succeeds becomes
        active without a wake; any other awake model is put to sleep.
        """
        events = CapturedEvents(self)
        h = harness({"alive_interval_secs": 0})
        liveness = Liveness(h.switcher, h.config, h.clock)
        liveness.start()
        early = h.acquire("B")
        h.hooks.finishNext("A", "alive", exitCode=1)
        h.hooks.finishNext("B", "alive")
        self.assertEqual(h.switcher.state, Active("B"))
        self.assertIsNotNone(
            early.slot, "a request that came during adoption is served"
        )
        h.hooks.finishNext("C", "alive")
        self.assertEqual(h.hooks.pending()[0].model, "C")
        h.hooks.finishNext("C", "sleep")
        self.assertEqual(
            h.hooks.log(),
            [("A", "alive"), ("B", "alive"), ("C", "alive"), ("C", "sleep")],
        )
        self.assertEqual(events.named("model_adopted")[0]["model"], "B")
        self.assertEqual(events.named("extra_model_awake")[0]["model"], "C")
        self.assertEqual(h.hooks.pending(), [])

    def test_adoptionOff(self) -> None:
        """
        adopt_running: false runs no alive hook at start-up.
        """
        h = harness({"adopt_running": False, "alive_interval_secs": 0})
        Liveness(h.switcher, h.config, h.clock).start()  # type: ignore[attr-defined]
        self.assertEqual(h.hooks.calls, [])
        self.assertEqual(h.switcher.state, Idle())


class HealthCheckTests(SynchronousTestCase):
    """
    While a model is active its alive hook runs every alive_interval_secs.
    """

    def setUp(self) -> None:
        self.events = CapturedEvents(self)
        self.observer = CountingObserver()
        self.h = harness(
            {"adopt_running": False, "alive_interval_secs": 30, "alive_failures": 3},
            self.observer,
        )
        self.liveness = Liveness(self.h.switcher, self.h.config, self.h.clock)
        self.liveness.start()
        self.addCleanup(self.liveness.stop)

    def check(self, exitCode: int) -> None:
        self.h.clock.advance(30)
        self.h.hooks.finishNext("A", "alive", exitCode=exitCode)

    def test_deadAfterFailures(self) -> None:
        """
        After alive_failures failed checks in a row, the model is put to
        sleep and the switcher goes Idle; the next request wakes it again.
        """
        h = self.h
        h.activate("A").release()
        self.check(1)
        self.check(0)
        self.check(1)
        self.check(1)
        self.assertEqual(h.switcher.state, Active("A"))
        self.check(1)
        self.assertEqual(h.hooks.log()[-1], ("A", "sleep"))
        h.hooks.finishNext("A", "sleep")
        self.assertEqual(h.switcher.state, Idle())
        [event] = self.events.named("model_dead")
        self.assertEqual(event["model"], "A")
        self.assertIn("alive hook failed 3 time(s): exit code 1", event["reason"])
        self.assertEqual(self.observer.deaths, ["A"])
        self.assertEqual(len(self.events.named("alive_failed")), 4)
        again = h.acquire("A")
        h.hooks.finishNext("A", "wake")
        self.assertIsNotNone(again.slot)

    def test_noCheckWhileIdleOrSwitching(self) -> None:
        """
        Nothing is checked while nothing is active, nor during a switch.
        """
        h = self.h
        h.clock.advance(90)
        self.assertEqual(h.hooks.calls, [])
        h.acquire("A")
        h.clock.advance(60)
        self.assertEqual(h.hooks.log(), [("A", "wake")])

    def test_stop(self) -> None:
        """
        stop() ends the checks and leaves no timer behind.
        """
        self.liveness.stop()
        self.assertEqual(self.h.clock.getDelayedCalls(), [])


class SuspectTests(SynchronousTestCase):
    """
    Passive health: L{Liveness.suspect} checks a model at once, and one
    failed check is enough.
    """

    def setUp(self) -> None:
        self.events = CapturedEvents(self)
        self.h = harness({"adopt_running": False, "alive_interval_secs": 30})
        self.liveness = Liveness(self.h.switcher, self.h.config, self.h.clock)

    def verdicts(self, *models: str) -> list[list[bool]]:
        results: list[list[bool]] = []
        for model in models:
            got: list[bool] = []
            self.liveness.suspect(model).addCallback(got.append)
            results.append(got)
        return results

    def test_dead(self) -> None:
        """
        A suspected model whose alive hook fails is marked dead at once, and
        every suspicion of it meanwhile shares that one check.
        """
        h = self.h
        h.activate("A").release()
        first, second = self.verdicts("A", "A")
        self.assertEqual(h.hooks.log()[-1], ("A", "alive"))
        h.hooks.finishNext("A", "alive", exitCode=7)
        self.assertEqual((first, second), ([False], [False]))
        self.assertEqual(h.hooks.log()[-1], ("A", "sleep"))
        [event] = self.events.named("model_dead")
        self.assertIn("alive hook failed: exit code 7", event["reason"])
        h.hooks.finishNext("A", "sleep")
        self.assertEqual(h.switcher.state, Idle())

    def test_deadUnloads(self) -> None:
        """
        A dead model with an C{unload} hook is cleaned up by it, not by its
        C{sleep} (which may hang on a server that does not answer), and ends
        unloaded.
        """
        models = tuple(
            attrs.evolve(m, unload="unload") if m.name == "A" else m
            for m in self.h.config.models
        )
        h = self.h = harness({"adopt_running": False, "models": models})
        self.liveness = Liveness(h.switcher, h.config, h.clock)
        h.activate("A").release()
        [verdict] = self.verdicts("A")
        h.hooks.finishNext("A", "alive", exitCode=1)
        self.assertEqual(verdict, [False])
        self.assertEqual(h.hooks.log()[-1], ("A", "unload"))
        h.hooks.finishNext("A", "unload")
        [view] = [v for v in h.switcher.views() if v.name == "A"]
        self.assertEqual(view.state, ModelState.UNLOADED)
        again = h.acquire("A")
        h.hooks.finishNext("A", "wake")
        self.assertIsNotNone(again.slot)

    def test_alive(self) -> None:
        """
        A suspected model that answers stays awake.
        """
        h = self.h
        h.activate("A").release()
        [verdict] = self.verdicts("A")
        h.hooks.finishNext("A", "alive")
        self.assertEqual(verdict, [True])
        self.assertEqual(h.switcher.state, Active("A"))
        self.assertEqual(self.events.named("model_dead"), [])

    def test_notAwake(self) -> None:
        """
        A model that is not awake is not checked: it is not serving.
        """
        [verdict] = self.verdicts("A")
        self.assertEqual(verdict, [False])
        self.assertEqual(self.h.hooks.calls, [])

    def test_cancelledWaiter(self) -> None:
        """
        A waiter that gives up leaves the check to the others.
        """
        h = self.h
        h.activate("A").release()
        leaving = self.liveness.suspect("A")
        [staying] = self.verdicts("A")
        leaving.cancel()
        self.failureResultOf(leaving)
        h.hooks.finishNext("A", "alive")
        self.assertEqual(staying, [True])


class ShutdownTests(SynchronousTestCase):
    """
    Switcher.shutdown: refuse, answer waiters with 503, drain, maybe sleep.
    """

    def test_shutdown(self) -> None:
        """
        Waiting requests get ModelNotReady at once, new ones are refused, the
        in-flight one finishes, then the awake model is put to sleep.
        """
        h = harness()
        slot = h.activate("A")
        waiting = h.acquire("B")
        done = h.switcher.shutdown(30, sleepAwake=True)
        assert waiting.failure is not None
        self.assertIsInstance(waiting.failure.value, ModelNotReady)
        self.assertIn("shutting down", str(waiting.failure.value))
        refused = h.acquire("A")
        assert refused.failure is not None
        self.assertIsInstance(refused.failure.value, ModelNotReady)
        self.assertNoResult(done)
        self.assertEqual(h.hooks.log(), [("A", "wake")])
        slot.release()
        self.assertEqual(h.hooks.log(), [("A", "wake"), ("A", "sleep")])
        h.hooks.finishNext("A", "sleep")
        self.successResultOf(done)
        self.assertEqual(h.switcher.state, Idle())

    def test_shutdownTimeout(self) -> None:
        """
        In-flight requests get shutdown_timeout_secs; without sleep_on_shutdown
        the model is left awake.
        """
        h = harness()
        events = CapturedEvents(self)
        h.activate("A")
        done = h.switcher.shutdown(5, sleepAwake=False)
        h.clock.advance(4.9)
        self.assertNoResult(done)
        h.clock.advance(0.1)
        self.successResultOf(done)
        self.assertEqual(h.hooks.log(), [("A", "wake")])
        self.assertEqual(h.clock.getDelayedCalls(), [])
        [timedOut] = events.named("shutdown_timeout")
        self.assertEqual(timedOut["timeout_secs"], 5)

    def test_shutdownInTime(self) -> None:
        """
        A shutdown whose requests finish in time reports no timeout and
        leaves no timer behind.
        """
        h = harness()
        events = CapturedEvents(self)
        slot = h.activate("A")
        done = h.switcher.shutdown(5, sleepAwake=False)
        h.clock.advance(1)
        slot.release()
        self.successResultOf(done)
        self.assertEqual(events.named("shutdown_timeout"), [])
        self.assertEqual(h.clock.getDelayedCalls(), [])
