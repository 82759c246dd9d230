"""
Tests for L{llmux.switcher}: every rule of SPEC section 4, on a Clock with a
fake hook runner.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.logger import LogEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from llmux.config import Config, ModelConfig, PolicyConfig
from llmux.errors import ModelNotFound, RequestTimedOut, SwitchFailed
from llmux.interfaces import (
    Decision,
    DeferUntil,
    ISlot,
    ISwitcher,
    ISwitchPolicy,
    PendingContext,
    SwitchContext,
    SwitchedContext,
    TickContext,
)
from llmux.policies.fifo import FifoPolicy
from llmux.switcher import Active, Idle, Switcher, Switching
from llmux.testing.hooks import FakeHookRunner


def makeConfig(*names: str) -> Config:
    return Config(
        models=tuple(
            ModelConfig(name, 8001 + i, f"wake {name}", f"sleep {name}", "true")
            for i, name in enumerate(names)
        )
    )


class Harness:
    """
    A switcher over models A, B and C on a Clock, with fake hooks.
    """

    def __init__(
        self,
        policy: Any = None,
        observer: Any = None,
        config: dict[str, Any] | None = None,
        **settings: Any,
    ) -> None:
        """
        @param config: top-level config settings.
        @param settings: policy table settings.
        """
        self.clock = Clock()
        self.clock.advance(1000)
        self.hooks = FakeHookRunner(self.clock)
        self.config = attrs.evolve(
            makeConfig("A", "B", "C"), policy=PolicyConfig(**settings), **(config or {})
        )
        self.policy = policy or FifoPolicy.fromConfig(self.config.policy)
        self.switcher = Switcher(
            self.config, self.policy, self.hooks, self.clock, observer
        )

    def acquire(self, model: str) -> Outcome:
        return Outcome.of(self.switcher.acquire(model))

    def activate(self, model: str) -> ISlot:
        """
        Cold-start C{model} and return a slot on it (held).
        """
        outcome = self.acquire(model)
        self.hooks.finishNext(model, "wake")
        assert outcome.slot is not None
        return outcome.slot


@attrs.define
class Outcome:
    """
    What became of one acquire() call.
    """

    deferred: Deferred[ISlot]
    slot: ISlot | None = None
    failure: Failure | None = None

    @classmethod
    def of(cls, d: Deferred[ISlot]) -> Outcome:
        outcome = cls(d)

        def ok(slot: ISlot) -> None:
            outcome.slot = slot

        def err(f: Failure) -> None:
            outcome.failure = f

        d.addCallbacks(ok, err)
        return outcome

    @property
    def waiting(self) -> bool:
        return self.slot is None and self.failure is None


class CapturedEvents:
    """
    Collects the structured log events that carry an C{event} field.
    """

    def __init__(self, case: SynchronousTestCase) -> None:
        self.events: list[LogEvent] = []
        globalLogPublisher.addObserver(self.observe)
        case.addCleanup(globalLogPublisher.removeObserver, self.observe)

    def observe(self, event: LogEvent) -> None:
        if "event" in event:
            self.events.append(event)

    def named(self, name: str) -> list[LogEvent]:
        return [e for e in self.events if e["event"] == name]


class AcquireTests(SynchronousTestCase):
    """
    Getting a slot: unknown models, cold starts and the fast path.
    """

    def test_provides(self) -> None:
        """
        The switcher provides ISwitcher and its slots ISlot.
        """
        h = Harness()
        verifyObject(ISwitcher, h.switcher)
        verifyObject(ISlot, h.activate("A"))

    def test_unknownModel(self) -> None:
        """
        A model that is not configured fails at once with ModelNotFound and
        runs no hook.
        """
        h = Harness()
        outcome = h.acquire("nope")
        assert outcome.failure is not None
        self.assertIsInstance(outcome.failure.value, ModelNotFound)
        self.assertEqual(str(outcome.failure.value), "Model not found: nope")
        self.assertEqual(h.hooks.calls, [])

    def test_coldStart(self) -> None:
        """
        From Idle, a request wakes its model and gets a slot once wake exits 0.
        """
        h = Harness()
        self.assertEqual(h.switcher.state, Idle())
        outcome = h.acquire("A")
        self.assertTrue(outcome.waiting)
        self.assertEqual(h.switcher.state, Switching(None, "A"))
        self.assertEqual(h.hooks.log(), [("A", "wake")])
        h.hooks.finishNext("A", "wake")
        assert outcome.slot is not None
        self.assertEqual(outcome.slot.model, "A")
        self.assertEqual(h.switcher.state, Active("A"))
        self.assertEqual(h.switcher.inFlight("A"), 1)

    def test_fastPath(self) -> None:
        """
        Requests for the active model get a slot at once and run no hook.
        """
        h = Harness()
        h.activate("A")
        outcome = h.acquire("A")
        self.assertIsNotNone(outcome.slot)
        self.assertEqual(h.hooks.log(), [("A", "wake")])
        self.assertEqual(h.switcher.inFlight("A"), 2)

    def test_releaseOnce(self) -> None:
        """
        Releasing a slot twice counts once.
        """
        h = Harness()
        slot = h.activate("A")
        h.acquire("A")
        slot.release()
        slot.release()
        self.assertEqual(h.switcher.inFlight("A"), 1)

    def test_concurrentWaitersShareOneSwitch(self) -> None:
        """
        Many requests for a sleeping model cause one wake, and all get slots.
        """
        h = Harness()
        outcomes = [h.acquire("A") for _ in range(5)]
        self.assertEqual(h.hooks.log(), [("A", "wake")])
        h.hooks.finishNext("A", "wake")
        self.assertTrue(all(o.slot is not None for o in outcomes))
        self.assertEqual(h.switcher.inFlight("A"), 5)
        self.assertEqual(h.hooks.log(), [("A", "wake")])


class SwitchTests(SynchronousTestCase):
    """
    The switch itself: order of hooks, drain, cooldown, failures.
    """

    def test_sleepOldBeforeWakeNew(self) -> None:
        """
        Switching A to B runs A's sleep hook to completion before B's wake.
        """
        h = Harness()
        h.activate("A").release()
        outcome = h.acquire("B")
        self.assertEqual(h.hooks.log(), [("A", "wake"), ("A", "sleep")])
        self.assertEqual(h.switcher.state, Switching("A", "B"))
        h.hooks.finishNext("A", "sleep")
        self.assertEqual(h.hooks.log()[-1], ("B", "wake"))
        h.hooks.finishNext("B", "wake")
        self.assertIsNotNone(outcome.slot)
        self.assertEqual(h.switcher.state, Active("B"))

    def test_drainWaitsForInFlight(self) -> None:
        """
        The old model is not put to sleep while it has requests in flight.
        """
        h = Harness()
        first = h.activate("A")
        second = h.acquire("A").slot
        assert second is not None
        h.acquire("B")
        self.assertTrue(h.switcher.isDraining("A"))
        self.assertEqual(h.hooks.log(), [("A", "wake")])
        first.release()
        self.assertEqual(h.hooks.log(), [("A", "wake")])
        second.release()
        self.assertEqual(h.hooks.log(), [("A", "wake"), ("A", "sleep")])

    def test_noDrainWhenDisabled(self) -> None:
        """
        With drain_before_switch off, the old model sleeps with requests in
        flight.
        """
        h = Harness(drain_before_switch=False)
        h.activate("A")
        h.acquire("B")
        self.assertEqual(h.hooks.log(), [("A", "wake"), ("A", "sleep")])

    def test_requestWhileDrainingWaitsForLaterSwitch(self) -> None:
        """
        A request for the model being drained queues, and is served after a
        later switch back, not by the draining model.
        """
        h = Harness()
        slot = h.activate("A")
        h.acquire("B")
        late = h.acquire("A")
        self.assertTrue(late.waiting)
        self.assertEqual(h.switcher.inFlight("A"), 1)
        slot.release()
        h.hooks.finishNext("A", "sleep")
        h.hooks.finishNext("B", "wake")
        self.assertTrue(late.waiting)
        # B's waiter holds its slot, so the switch back drains B first.
        self.assertEqual(h.hooks.log()[-1], ("B", "wake"))
        self.assertEqual(h.switcher.state, Switching("B", "A"))

    def test_cooldownServesOldModel(self) -> None:
        """
        During min_active_secs the old model stays awake and serves its
        requests; the switch proceeds when the minimum has passed.
        """
        h = Harness(min_active_secs=10)
        h.activate("A").release()
        h.clock.advance(3)
        waiting = h.acquire("B")
        self.assertEqual(h.switcher.state, Switching("A", "B"))
        served = h.acquire("A")
        self.assertIsNotNone(served.slot, "the awake model serves during cooldown")
        self.assertEqual(h.hooks.log(), [("A", "wake")])
        h.clock.advance(6.9)
        self.assertEqual(h.hooks.log(), [("A", "wake")])
        h.clock.advance(0.1)
        self.assertTrue(h.switcher.isDraining("A"))
        assert served.slot is not None
        served.slot.release()
        self.assertEqual(h.hooks.log()[-1], ("A", "sleep"))
        h.hooks.finishNext("A", "sleep")
        h.hooks.finishNext("B", "wake")
        self.assertIsNotNone(waiting.slot)

    def test_sleepFailureContinues(self) -> None:
        """
        A failing sleep hook is logged and the switch goes on.
        """
        events = CapturedEvents(self)
        h = Harness()
        h.activate("A").release()
        outcome = h.acquire("B")
        h.hooks.finishNext("A", "sleep", exitCode=3, stderr=b"gpu busy\n")
        h.hooks.finishNext("B", "wake")
        self.assertIsNotNone(outcome.slot)
        [event] = events.named("sleep_hook_failed")
        self.assertEqual((event["model"], event["to"]), ("A", "B"))
        self.assertEqual(event["error"], "exit code 3: gpu busy")

    def test_wakeFailure(self) -> None:
        """
        A failing wake hook runs the model's sleep hook to clean up, leaves
        the switcher Idle and fails every waiter with the hook's detail.
        """
        events = CapturedEvents(self)
        h = Harness()
        first, second = h.acquire("B"), h.acquire("B")
        h.hooks.finishNext("B", "wake", exitCode=1, stderr=b"loading\nout of memory\n")
        self.assertEqual(h.hooks.log(), [("B", "wake"), ("B", "sleep")])
        self.assertTrue(first.waiting, "waiters fail after the cleanup")
        h.hooks.finishNext("B", "sleep")
        self.assertEqual(h.switcher.state, Idle())
        for outcome in (first, second):
            assert outcome.failure is not None
            self.assertIsInstance(outcome.failure.value, SwitchFailed)
            self.assertEqual(
                str(outcome.failure.value),
                "Hook failed for B: exit code 1: out of memory",
            )
        self.assertEqual(h.switcher.lastError, "B: exit code 1: out of memory")
        self.assertEqual(h.switcher.queueDepths()["B"], 0)
        [event] = events.named("switch_failed")
        self.assertEqual((event["model"], event["from"]), ("B", "idle"))

    def test_backoffAfterFailure(self) -> None:
        """
        After a failed switch, the next switch waits until 2 s after the
        failure.
        """
        h = Harness()
        h.acquire("B")
        h.hooks.finishNext("B", "wake", exitCode=1)
        h.hooks.finishNext("B", "sleep")
        h.clock.advance(0.5)
        retry = h.acquire("B")
        self.assertEqual(len(h.hooks.calls), 2)
        h.clock.advance(1.4)
        self.assertEqual(len(h.hooks.calls), 2)
        h.clock.advance(0.1)
        self.assertEqual(h.hooks.log()[-1], ("B", "wake"))
        h.hooks.finishNext("B", "wake")
        self.assertIsNotNone(retry.slot)

    def test_staleSwitchSkipped(self) -> None:
        """
        A switch whose waiters all left before it ran does nothing.
        """
        h = Harness()
        outcomeA = h.acquire("A")
        outcomeB = h.acquire("B")
        outcomeB.deferred.cancel()
        h.hooks.finishNext("A", "wake")
        assert outcomeA.slot is not None
        outcomeA.slot.release()
        self.assertEqual(h.hooks.log(), [("A", "wake")])
        self.assertEqual(h.switcher.state, Active("A"))

    def test_switchCalledOffAfterDrain(self) -> None:
        """
        If every waiter leaves while the old model drains, the old model is
        not put to sleep and serves the requests that queued for it meanwhile.
        """
        h = Harness()
        slot = h.activate("A")
        b = h.acquire("B")
        queuedForA = h.acquire("A")
        self.assertTrue(queuedForA.waiting)
        b.deferred.cancel()
        slot.release()
        self.assertEqual(h.hooks.log(), [("A", "wake")])
        self.assertEqual(h.switcher.state, Active("A"))
        self.assertFalse(h.switcher.isDraining("A"))
        self.assertIsNotNone(queuedForA.slot)

    def test_settleReleasedRequestsHoldSlots(self) -> None:
        """
        Requests released by a switch hold their slots before the next switch
        can start draining, so the next switch waits for all of them.
        """
        h = Harness()
        bs = [h.acquire("B") for _ in range(3)]
        c = h.acquire("C")
        h.hooks.finishNext("B", "wake")
        self.assertEqual(h.switcher.inFlight("B"), 3)
        self.assertEqual(h.switcher.state, Switching("B", "C"))
        self.assertTrue(h.switcher.isDraining("B"))
        for outcome in bs[:2]:
            assert outcome.slot is not None
            outcome.slot.release()
        self.assertEqual(h.hooks.log(), [("B", "wake")])
        assert bs[2].slot is not None
        bs[2].slot.release()
        self.assertEqual(h.hooks.log(), [("B", "wake"), ("B", "sleep")])
        h.hooks.finishNext("B", "sleep")
        h.hooks.finishNext("C", "wake")
        self.assertIsNotNone(c.slot)


class WaiterTests(SynchronousTestCase):
    """
    Waiters that time out or go away leave their queue at once.
    """

    def test_timeout(self) -> None:
        """
        A request waits at most request_timeout_secs, then fails with
        RequestTimedOut, leaves the queue and is logged.
        """
        events = CapturedEvents(self)
        h = Harness(request_timeout_secs=5)
        slot = h.activate("A")
        outcome = h.acquire("B")
        self.assertEqual(h.switcher.queueDepths()["B"], 1)
        h.clock.advance(4.9)
        self.assertTrue(outcome.waiting)
        h.clock.advance(0.1)
        assert outcome.failure is not None
        self.assertIsInstance(outcome.failure.value, RequestTimedOut)
        self.assertEqual(
            str(outcome.failure.value), "Request timed out waiting for model"
        )
        self.assertEqual(h.switcher.queueDepths()["B"], 0)
        [event] = events.named("request_timeout")
        self.assertEqual((event["model"], event["timeout_secs"]), ("B", 5))
        # Its switch was not performed for nobody:
        slot.release()
        self.assertEqual(h.hooks.log(), [("A", "wake")])

    def test_timedOutWaiterTriggersNoSwitch(self) -> None:
        """
        A waiter that timed out before the old model was put to sleep (here,
        during its cooldown) does not cause the switch.
        """
        h = Harness(request_timeout_secs=5, min_active_secs=10)
        h.activate("A").release()
        h.clock.advance(1)
        h.acquire("B")
        self.assertEqual(h.switcher.state, Switching("A", "B"))
        h.clock.advance(9)
        self.assertEqual(h.hooks.log(), [("A", "wake")])
        self.assertEqual(h.switcher.state, Active("A"))
        self.assertIsNotNone(h.acquire("A").slot)

    def test_cancelRemovesWaiter(self) -> None:
        """
        Cancelling acquire() (the client went away) removes the waiter.
        """
        h = Harness()
        h.activate("A")
        outcome = h.acquire("B")
        outcome.deferred.cancel()
        assert outcome.failure is not None
        self.assertIsInstance(outcome.failure.value, CancelledError)
        self.assertEqual(h.switcher.queueDepths()["B"], 0)

    def test_noTimeoutLeftBehind(self) -> None:
        """
        A served waiter leaves no pending timeout on the clock.
        """
        h = Harness(request_timeout_secs=5)
        h.activate("A")
        self.assertEqual(h.clock.getDelayedCalls(), [])


class CostTests(SynchronousTestCase):
    """
    Switch costs are tracked per (from, to) pair.
    """

    def test_emaPerPair(self) -> None:
        """
        Each successful switch folds its duration (sleep + wake) into an EMA
        with alpha 0.3; cold starts are their own pair.
        """
        h = Harness()
        h.hooks.durations = {"wake": 4.0, "sleep": 1.0}

        def switch(model: str, *steps: float) -> None:
            outcome = h.acquire(model)
            h.clock.pump(steps)
            assert outcome.slot is not None
            outcome.slot.release()

        switch("A", 4)
        self.assertEqual(h.switcher.costs.estimate(None, "A"), 4.0)
        switch("B", 1, 4)
        self.assertEqual(h.switcher.costs.estimate("A", "B"), 5.0)
        switch("A", 1, 4)
        h.hooks.durations = {"wake": 9.0, "sleep": 1.0}
        switch("B", 1, 9)
        self.assertAlmostEqual(
            h.switcher.costs.estimate("A", "B") or 0, 0.3 * 10 + 0.7 * 5
        )
        self.assertEqual(h.switcher.costs.estimate(None, "A"), 4.0)
        self.assertEqual(h.switcher.costs.estimate("B", "A"), 5.0)
        self.assertIsNone(h.switcher.costs.estimate(None, "B"))


@implementer(ISwitchPolicy)
@attrs.define
class ScriptedPolicy:
    """
    A policy whose answers the test sets, recording what it was shown.
    """

    name = "scripted"
    requestTimeout: float | None = None
    minActiveSecs: float = 0.0
    schedulerInterval: float | None = None
    decision: Any = Decision.SWITCH_NOW
    choice: str | None = None
    seen: list[object] = attrs.field(factory=list)

    def onPending(self, context: PendingContext) -> Any:
        self.seen.append(context)
        if isinstance(self.decision, Exception):
            raise self.decision
        return self.decision

    def beforeSwitch(self, context: SwitchContext) -> Deferred[None] | None:
        self.seen.append(context)
        return context.waitForDrain()

    def afterSwitch(self, context: SwitchedContext) -> None:
        self.seen.append(context)

    def schedule(self, context: TickContext) -> str | None:
        self.seen.append(context)
        return self.choice

    def describe(self) -> dict[str, object]:
        return {"name": self.name}


class PolicyConsultationTests(SynchronousTestCase):
    """
    How the switcher consults and obeys its policy.
    """

    def test_contexts(self) -> None:
        """
        The policy sees the pending request's context, the switch about to
        happen and its measured duration.
        """
        policy = ScriptedPolicy()
        h = Harness(policy)
        verifyObject(ISwitchPolicy, policy)
        slot = h.activate("A")
        h.clock.advance(7)
        h.acquire("B")
        pending = [c for c in policy.seen if isinstance(c, PendingContext)][-1]
        self.assertEqual(
            (
                pending.target,
                pending.active,
                pending.targetQueueDepth,
                pending.activeInFlight,
            ),
            ("B", "A", 1, 1),
        )
        self.assertEqual(pending.activeForSecs, 7)
        self.assertEqual(pending.queueDepths, {"A": 0, "B": 1, "C": 0})
        self.assertEqual(pending.models, ("A", "B", "C"))
        self.assertIsNone(pending.switchCostSecs)
        before = [c for c in policy.seen if isinstance(c, SwitchContext)][-1]
        self.assertEqual((before.from_, before.to), ("A", "B"))
        slot.release()
        h.clock.advance(2)
        h.hooks.finishNext("A", "sleep")
        h.clock.advance(3)
        h.hooks.finishNext("B", "wake")
        after = [c for c in policy.seen if isinstance(c, SwitchedContext)][-1]
        self.assertEqual((after.from_, after.to, after.durationSecs), ("A", "B", 5))

    def test_idleCountsFromWake(self) -> None:
        """
        A model woken for requests that left meanwhile has been idle since its
        wake, not since before it slept.
        """
        policy = ScriptedPolicy()
        h = Harness(policy)
        h.clock.advance(20)
        h.acquire("B").deferred.cancel()
        h.hooks.finishNext("B", "wake")
        h.clock.advance(10)
        h.acquire("C")
        pending = [c for c in policy.seen if isinstance(c, PendingContext)][-1]
        self.assertEqual((pending.activeForSecs, pending.activeIdleSecs), (10, 10))

    def test_skip(self) -> None:
        """
        SKIP arranges no switch.
        """
        policy = ScriptedPolicy(decision=Decision.SKIP)
        h = Harness(policy)
        outcome = h.acquire("A")
        self.assertTrue(outcome.waiting)
        self.assertEqual(h.hooks.calls, [])

    def test_deferUntil(self) -> None:
        """
        DeferUntil(d) switches once d fires, not before.
        """
        when: Deferred[object] = Deferred()
        policy = ScriptedPolicy(decision=DeferUntil(when))
        h = Harness(policy)
        h.acquire("A")
        self.assertEqual(h.hooks.calls, [])
        when.callback(None)
        self.assertEqual(h.hooks.log(), [("A", "wake")])

    def test_brokenPolicySwitchesNow(self) -> None:
        """
        A policy that raises does not leave the request hanging: the switcher
        logs it and switches.
        """
        policy = ScriptedPolicy(decision=RuntimeError("bug"))
        h = Harness(policy)
        h.acquire("A")
        self.assertEqual(h.hooks.log(), [("A", "wake")])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_brokenBeforeSwitchDrainsAnyway(self) -> None:
        """
        A policy whose beforeSwitch raises does not wedge the switch: the
        switcher drains the old model itself and goes on.
        """

        class Broken(ScriptedPolicy):
            def beforeSwitch(self, context: SwitchContext) -> Deferred[None] | None:
                raise RuntimeError("bug")

        h = Harness(Broken())
        slot = h.activate("A")
        outcome = h.acquire("B")
        self.assertEqual(h.hooks.log(), [("A", "wake")])
        slot.release()
        h.hooks.finishNext("A", "sleep")
        h.hooks.finishNext("B", "wake")
        self.assertIsNotNone(outcome.slot)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_scheduler(self) -> None:
        """
        With a scheduler interval, the switcher ticks the policy and switches
        to the model it names; stop() ends the ticks.
        """
        policy = ScriptedPolicy(decision=Decision.SKIP, schedulerInterval=1.0)
        h = Harness(policy)
        h.switcher.start()
        outcome = h.acquire("B")
        h.clock.advance(1)
        self.assertEqual(h.hooks.calls, [])
        tick = [c for c in policy.seen if isinstance(c, TickContext)][-1]
        self.assertEqual(tick.queueDepths["B"], 1)
        self.assertEqual(tick.oldestWaits, {"B": 1.0})
        policy.choice = "B"
        h.clock.advance(1)
        self.assertEqual(h.hooks.log(), [("B", "wake")])
        h.hooks.finishNext("B", "wake")
        self.assertIsNotNone(outcome.slot)
        h.switcher.stop()
        self.assertEqual(h.clock.getDelayedCalls(), [])
