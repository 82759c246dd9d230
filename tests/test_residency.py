"""
Tests for residency in L{llmux.switcher} (SPEC section 9): several models
awake under a declared capacity, on a Clock with fake hooks.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from llmux.config import Config, parseConfig
from llmux.errors import ModelCannotFit, ModelNotFound, SwitchFailed
from llmux.interfaces import (
    Decision,
    ISlot,
    ModelState,
    PendingContext,
    SwitchedContext,
    TickContext,
)
from llmux.liveness import Liveness
from llmux.policies.cheapest_wake import CheapestWakeEviction
from llmux.policies.fifo import FifoPolicy
from llmux.switcher import Switcher, _Unobserved
from llmux.switcher.model import (
    ASLEEP,
    AWAKE,
    DRAINING,
    FAILED,
    SLEEPING,
    UNLOADED,
    UNLOADING,
    WAKING,
)
from llmux.testing.hooks import FakeHookRunner

from .test_switcher import CapturedEvents, Outcome, ScriptedPolicy


def residencyConfig(
    capacity: dict[str, float] | None,
    models: dict[str, dict[str, Any]],
    **settings: Any,
) -> Config:
    """
    A config whose models have the given residency keys and hooks named
    after them.
    """
    table = {
        name: {
            "port": 8001 + i,
            "wake": f"wake {name}",
            "sleep": f"sleep {name}",
            "alive": "true",
            **extra,
        }
        for i, (name, extra) in enumerate(models.items())
    }
    data: dict[str, Any] = {"models": table, **settings}
    if capacity is not None:
        data["capacity"] = capacity
    return parseConfig(data)


class EvictionLog(_Unobserved):
    """
    Records evictions as the metrics would see them.
    """

    def __init__(self) -> None:
        self.evictions: list[tuple[str, str]] = []

    def evicted(self, model: str, reason: str) -> None:
        self.evictions.append((model, reason))


class Residency:
    """
    A switcher over a residency config on a Clock, with fake hooks.
    """

    def __init__(
        self,
        capacity: dict[str, float] | None,
        models: dict[str, dict[str, Any]],
        policy: Any = None,
        eviction: Any = None,
        **settings: Any,
    ) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.hooks = FakeHookRunner(self.clock)
        self.config = residencyConfig(capacity, models, **settings)
        self.policy = policy or FifoPolicy.fromConfig(self.config.policy)
        self.observer = EvictionLog()
        self.switcher = Switcher(
            self.config,
            self.policy,
            self.hooks,
            self.clock,
            self.observer,
            eviction,
        )

    def acquire(self, model: str) -> Outcome:
        return Outcome.of(self.switcher.acquire(model))

    def wake(self, model: str) -> ISlot:
        """
        Request C{model}, finish its wake, and return the slot (held).
        """
        outcome = self.acquire(model)
        self.hooks.finishNext(model, "wake")
        assert outcome.slot is not None, outcome
        return outcome.slot

    def states(self) -> dict[str, ModelState]:
        return {view.name: view.state for view in self.switcher.views()}

    def used(self) -> dict[str, float]:
        return {pool.name: pool.used for pool in self.switcher.pools()}

    def holds(self, model: str) -> dict[str, float]:
        [view] = [v for v in self.switcher.views() if v.name == model]
        return dict(view.holds)


def gpu(units: float, **extra: Any) -> dict[str, Any]:
    return {"resources": {"gpu": units}, **extra}


class AdmissionTests(SynchronousTestCase):
    """
    A model that fits is woken at once, touching nothing, without the policy.
    """

    def test_admittedBeside(self) -> None:
        """
        Two models that fit together are both awake; the second is woken
        without any sleep hook and without asking the policy.
        """
        events = CapturedEvents(self)
        policy = ScriptedPolicy(decision=Decision.SKIP)
        h = Residency({"gpu": 80}, {"A": gpu(40), "B": gpu(40)}, policy=policy)
        h.wake("A").release()
        h.wake("B").release()
        self.assertEqual(h.hooks.log(), [("A", "wake"), ("B", "wake")])
        self.assertEqual(h.states(), {"A": AWAKE, "B": AWAKE})
        self.assertEqual(h.used(), {"gpu": 80})
        self.assertEqual([c for c in policy.seen if isinstance(c, PendingContext)], [])
        self.assertEqual(
            [e["model"] for e in events.named("model_admitted")], ["A", "B"]
        )
        self.assertEqual(events.named("switch_started"), [])
        # Both serve from the fast path from now on.
        self.assertIsNotNone(h.acquire("A").slot)
        self.assertIsNotNone(h.acquire("B").slot)

    def test_reservedBeforeWake(self) -> None:
        """
        A model's placement is booked as its wake starts: a second model
        that would not fit beside it is not woken alongside.
        """
        h = Residency({"gpu": 80}, {"A": gpu(60), "B": gpu(60)})
        h.acquire("A")
        self.assertEqual(h.holds("A"), {"gpu": 60})
        self.assertEqual(h.states()["A"], WAKING)
        h.acquire("B")
        self.assertEqual(h.hooks.log(), [("A", "wake")])
        self.assertEqual(h.states()["B"], ASLEEP)

    def test_concurrentWakesOnDisjointPools(self) -> None:
        """
        Wakes that touch different pools run at the same time.
        """
        h = Residency(
            {"gpu0": 80, "gpu1": 80},
            {"A": {"resources": {"gpu0": 70}}, "B": {"resources": {"gpu1": 70}}},
        )
        a, b = h.acquire("A"), h.acquire("B")
        self.assertEqual(
            [(c.model, c.hook) for c in h.hooks.pending()],
            [("A", "wake"), ("B", "wake")],
        )
        h.hooks.finishNext("B", "wake")
        self.assertIsNotNone(b.slot)
        self.assertTrue(a.waiting)
        h.hooks.finishNext("A", "wake")
        self.assertIsNotNone(a.slot)

    def test_unknownModel(self) -> None:
        """
        Residency changes nothing for a model that is not configured.
        """
        h = Residency({"gpu": 80}, {"A": gpu(40)})
        outcome = h.acquire("nope")
        assert outcome.failure is not None
        self.assertIsInstance(outcome.failure.value, ModelNotFound)


class EvictionTests(SynchronousTestCase):
    """
    A model that does not fit makes room: the eviction policy picks the
    victims, the switch policy the moment.
    """

    def test_lruVictim(self) -> None:
        """
        The least recently used idle model is put to sleep; the one used
        since is left alone.
        """
        events = CapturedEvents(self)
        h = Residency({"gpu": 80}, {"A": gpu(40), "B": gpu(40), "C": gpu(40)})
        h.wake("A").release()
        h.clock.advance(1)
        h.wake("B").release()
        h.clock.advance(1)
        h.acquire("A").slot.release()  # type: ignore[union-attr]
        h.clock.advance(1)
        c = h.acquire("C")
        self.assertEqual(h.hooks.log()[-1], ("B", "sleep"))
        self.assertEqual(h.states()["B"], SLEEPING)
        self.assertEqual(h.holds("B"), {"gpu": 40}, "held until sleep has ended")
        h.hooks.finishNext("B", "sleep")
        self.assertEqual(h.hooks.log()[-1], ("C", "wake"))
        h.hooks.finishNext("C", "wake")
        self.assertIsNotNone(c.slot)
        self.assertEqual(h.states(), {"A": AWAKE, "B": ASLEEP, "C": AWAKE})
        [started] = events.named("switch_started")
        self.assertEqual((started["from"], started["to"]), ("B", "C"))
        [evicted] = events.named("model_evicted")
        self.assertEqual(
            (evicted["model"], evicted["reason"], evicted["for"]),
            ("B", "capacity", "C"),
        )
        self.assertEqual(h.observer.evictions, [("B", "capacity")])

    def test_idleBeforeBusy(self) -> None:
        """
        An idle model is evicted before a busy one, even a less recently
        used busy one.
        """
        h = Residency({"gpu": 80}, {"A": gpu(40), "B": gpu(40), "C": gpu(40)})
        h.wake("A")  # held: A stays busy
        h.clock.advance(1)
        h.wake("B").release()
        h.acquire("C")
        self.assertEqual(h.hooks.log()[-1], ("B", "sleep"))

    def test_fewestVictims(self) -> None:
        """
        One big victim is preferred to two small ones.
        """
        h = Residency(
            {"gpu": 100},
            {"S1": gpu(20), "S2": gpu(20), "Big": gpu(60), "T": gpu(60)},
        )
        h.wake("S1").release()
        h.wake("S2").release()
        h.clock.advance(5)
        h.wake("Big").release()
        h.acquire("T")
        self.assertEqual(h.hooks.log()[-1], ("Big", "sleep"))

    def test_busyVictimDrains(self) -> None:
        """
        A busy victim is never cut off: it takes no new requests, finishes
        what it has in flight, and only then goes to sleep.
        """
        h = Residency({"gpu": 80}, {"A": gpu(60), "B": gpu(60)})
        slot = h.wake("A")
        b = h.acquire("B")
        self.assertEqual(h.states()["A"], DRAINING)
        self.assertEqual(h.hooks.log(), [("A", "wake")])
        late = h.acquire("A")
        self.assertTrue(late.waiting, "a draining model takes no new request")
        h.clock.advance(600)
        self.assertEqual(h.hooks.log(), [("A", "wake")])
        slot.release()
        self.assertEqual(h.hooks.log()[-1], ("A", "sleep"))
        h.hooks.finishNext("A", "sleep")
        h.hooks.finishNext("B", "wake")
        self.assertIsNotNone(b.slot)

    def test_switchPolicyDecides(self) -> None:
        """
        An evicting switch waits for the switch policy, which sees the
        awake models and the proposed victims with their in-flight counts.
        """
        policy = ScriptedPolicy(decision=Decision.SKIP, schedulerInterval=1.0)
        h = Residency(
            {"gpu": 80}, {"A": gpu(40), "B": gpu(40), "C": gpu(40)}, policy=policy
        )
        h.switcher.start()
        self.addCleanup(h.switcher.stop)
        h.wake("A").release()
        h.clock.advance(1)
        slotB = h.wake("B")
        c = h.acquire("C")
        [pending] = [x for x in policy.seen if isinstance(x, PendingContext)]
        self.assertEqual(pending.awake, ("A", "B"))
        self.assertEqual(pending.victims, ("A",))
        self.assertEqual(pending.active, "A")
        self.assertEqual(pending.victimsInFlight, {"A": 0})
        h.clock.advance(1)
        [tick] = [x for x in policy.seen if isinstance(x, TickContext)][-1:]
        self.assertEqual(tick.blockedBy, {"C": ("A",)})
        self.assertEqual(tick.active, "A")
        self.assertEqual(tick.inFlight, {"A": 0, "B": 1, "C": 0})
        self.assertEqual(h.hooks.log()[-1], ("B", "wake"), "nothing until decided")
        policy.choice = "C"
        h.clock.advance(1)
        self.assertEqual(h.hooks.log()[-1], ("A", "sleep"))
        h.hooks.finishNext("A", "sleep")
        h.hooks.finishNext("C", "wake")
        self.assertIsNotNone(c.slot)
        slotB.release()

    def test_calledOff(self) -> None:
        """
        If the requests that wanted the room all leave while the victim
        drains, the victim goes on serving and nothing is woken.
        """
        h = Residency({"gpu": 80}, {"A": gpu(60), "B": gpu(60)})
        slot = h.wake("A")
        b = h.acquire("B")
        queued = h.acquire("A")
        b.deferred.cancel()
        slot.release()
        self.assertEqual(h.hooks.log(), [("A", "wake")])
        self.assertEqual(h.states(), {"A": AWAKE, "B": ASLEEP})
        self.assertIsNotNone(queued.slot)
        self.assertEqual(h.used(), {"gpu": 60})

    def test_twoVictims(self) -> None:
        """
        A model that needs the room of two is woken once both slept; each
        sleeps as soon as it has drained.
        """
        h = Residency({"gpu": 80}, {"A": gpu(40), "B": gpu(40), "Big": gpu(80)})
        slotA = h.wake("A")
        h.wake("B").release()
        big = h.acquire("Big")
        self.assertEqual(h.hooks.log()[-1], ("B", "sleep"))
        self.assertEqual(h.states()["A"], DRAINING)
        h.hooks.finishNext("B", "sleep")
        self.assertEqual(h.states()["B"], ASLEEP)
        self.assertEqual(h.used(), {"gpu": 40})
        self.assertEqual(h.hooks.pending(), [])
        slotA.release()
        h.hooks.finishNext("A", "sleep")
        h.hooks.finishNext("Big", "wake")
        self.assertIsNotNone(big.slot)
        self.assertEqual(h.used(), {"gpu": 80})

    def test_freedRoomGoesToTarget(self) -> None:
        """
        What a victim gives back is set aside for the model it was evicted
        for: a model that would fit in the room meanwhile is not woken there.
        """
        h = Residency({"gpu": 100}, {"A": gpu(70), "T": gpu(80), "Small": gpu(30)})
        slot = h.wake("A")
        t = h.acquire("T")
        small = h.acquire("Small")
        self.assertEqual(h.hooks.log(), [("A", "wake")])
        slot.release()
        h.hooks.finishNext("A", "sleep")
        self.assertEqual(h.hooks.log()[-1], ("T", "wake"))
        h.hooks.finishNext("T", "wake")
        self.assertIsNotNone(t.slot)
        self.assertTrue(small.waiting)
        self.assertEqual(h.used(), {"gpu": 80})

    def test_spareRoomStillUsed(self) -> None:
        """
        Room beyond what a switch under way needs is used at once: a model
        that fits there is woken while the victim still sleeps.
        """
        h = Residency({"gpu": 110}, {"A": gpu(70), "T": gpu(80), "Small": gpu(30)})
        slot = h.wake("A")
        t = h.acquire("T")
        small = h.acquire("Small")
        self.assertEqual(h.hooks.log()[-1], ("Small", "wake"))
        h.hooks.finishNext("Small", "wake")
        self.assertIsNotNone(small.slot)
        slot.release()
        h.hooks.finishNext("A", "sleep")
        h.hooks.finishNext("T", "wake")
        self.assertIsNotNone(t.slot)
        self.assertEqual(h.used(), {"gpu": 110})

    def test_victimWokenElsewhere(self) -> None:
        """
        A model put to sleep to make room may be woken again at once where
        there is room, while the model it made room for still wakes.
        """
        h = Residency(
            {"g0": 100, "g1": 100},
            {
                "A": {"resources": [{"g0": 100}, {"g1": 100}]},
                "B": {"resources": {"g0": 100}},
            },
        )
        h.wake("A").release()
        b = h.acquire("B")
        h.hooks.finishNext("A", "sleep")
        again = h.acquire("A")
        self.assertEqual(h.hooks.log()[-2:], [("B", "wake"), ("A", "wake")])
        self.assertEqual(h.switcher.blockers("A"), ())
        h.hooks.finishNext("A", "wake")
        h.hooks.finishNext("B", "wake")
        self.assertIsNotNone(again.slot)
        self.assertIsNotNone(b.slot)
        self.assertEqual(h.holds("A"), {"g1": 100})
        self.assertEqual(h.holds("B"), {"g0": 100})

    def test_victimBlocker(self) -> None:
        """
        A request for a model being put to sleep says so, and for whom.
        """
        h = Residency({"gpu": 80}, {"A": gpu(60), "B": gpu(60)})
        slot = h.wake("A")
        h.acquire("B")
        h.acquire("A")
        [blocker] = h.switcher.blockers("A")
        self.assertEqual(
            (blocker.model, blocker.reason),
            ("A", "draining (1 in flight) to make room for B"),
        )
        slot.release()

    def test_blockedByWaking(self) -> None:
        """
        When nothing can be evicted yet (what is in the way is waking), the
        blockers say what holds the room and what it is doing.
        """
        h = Residency({"gpu": 80}, {"A": gpu(60), "B": gpu(60)})
        h.acquire("A")
        h.acquire("B")
        [blocker] = h.switcher.blockers("B")
        self.assertEqual((blocker.model, blocker.reason), ("A", "waking"))

    def test_durationFromLastSleep(self) -> None:
        """
        With two victims, the switch costs the time from the last victim's
        sleep to the end of the wake, not the other victim's drain before.
        """
        policy = ScriptedPolicy()
        h = Residency(
            {"gpu": 80}, {"A": gpu(40), "B": gpu(40), "Big": gpu(80)}, policy=policy
        )
        slotA = h.wake("A")
        h.wake("B").release()
        h.acquire("Big")
        h.hooks.finishNext("B", "sleep")
        h.clock.advance(100)
        slotA.release()
        h.clock.advance(3)
        h.hooks.finishNext("A", "sleep")
        h.clock.advance(4)
        h.hooks.finishNext("Big", "wake")
        [after] = [c for c in policy.seen if isinstance(c, SwitchedContext)][-1:]
        self.assertEqual(after.durationSecs, 7)
        self.assertEqual(after.victims, ("A", "B"))

    def test_unloadOnlyCountsAsEviction(self) -> None:
        """
        An asleep model unloaded to make room is an eviction too; an awake
        one put to sleep and unloaded counts once.
        """
        h = Residency(
            {"gpu": 80, "ram": 100},
            {
                "A": gpu(40, asleep_resources={"ram": 60}, unload="u", idle_ttl_secs=5),
                "B": gpu(40, asleep_resources={"ram": 60}, unload="u"),
            },
        )
        h.wake("A").release()
        h.clock.advance(5)
        h.hooks.finishNext("A", "sleep")
        b = h.acquire("B")
        self.assertEqual(h.hooks.log()[-1], ("A", "unload"))
        h.hooks.finishNext("A", "unload")
        h.hooks.finishNext("B", "wake")
        assert b.slot is not None
        b.slot.release()
        self.assertEqual(h.observer.evictions, [("A", "idle_ttl"), ("A", "capacity")])
        h.acquire("A")
        h.hooks.finishNext("B", "sleep")
        h.hooks.finishNext("B", "unload")
        self.assertEqual(h.observer.evictions[-1], ("B", "capacity"))
        self.assertEqual(len(h.observer.evictions), 3)

    def test_wakeFailsAfterVictimSlept(self) -> None:
        """
        A wake that fails after its victim slept leaves the books right:
        the failed model holds nothing of its placement, the victim asleep,
        and the waiters get the hook's error.
        """
        h = Residency(
            {"gpu": 80, "ram": 100},
            {
                "A": gpu(60, asleep_resources={"ram": 50}),
                "B": gpu(60, asleep_resources={"ram": 40}, unload="unload B"),
            },
        )
        h.wake("A").release()
        b = h.acquire("B")
        h.hooks.finishNext("A", "sleep")
        self.assertEqual(h.used(), {"gpu": 60, "ram": 90})
        h.hooks.finishNext("B", "wake", exitCode=1, stderr=b"oom\n")
        self.assertEqual(h.hooks.log()[-1], ("B", "sleep"))
        h.hooks.finishNext("B", "sleep")
        assert b.failure is not None
        self.assertIsInstance(b.failure.value, SwitchFailed)
        self.assertEqual(h.states(), {"A": ASLEEP, "B": FAILED})
        self.assertEqual(h.holds("A"), {"ram": 50})
        self.assertEqual(h.holds("B"), {"ram": 40})
        self.assertEqual(h.used(), {"gpu": 0, "ram": 90})


class PinTests(SynchronousTestCase):
    """
    Pinned models are never evicted for another model.
    """

    def test_pinnedNeverVictim(self) -> None:
        """
        With a pinned and an unpinned model awake, the unpinned one makes
        room even when it is busier and used more recently.
        """
        h = Residency(
            {"gpu": 80},
            {"P": gpu(40, pin=True), "A": gpu(40), "C": gpu(40)},
        )
        h.wake("P").release()
        h.clock.advance(1000)
        slot = h.wake("A")
        h.acquire("C")
        self.assertEqual(h.states()["A"], DRAINING)
        self.assertEqual(h.states()["P"], AWAKE)
        slot.release()
        self.assertEqual(h.hooks.log()[-1], ("A", "sleep"))

    def test_onlyPinsBlock(self) -> None:
        """
        A request that could only fit by evicting pinned models gets a 503
        at once, with a Retry-After, and runs no hook.
        """
        h = Residency({"gpu": 80}, {"P": gpu(60, pin=True), "B": gpu(40)})
        h.wake("P").release()
        outcome = h.acquire("B")
        assert outcome.failure is not None
        error = outcome.failure.value
        self.assertIsInstance(error, ModelCannotFit)
        self.assertEqual(
            str(error), "Model B cannot fit: capacity held by pinned models P"
        )
        self.assertEqual(error.retryAfterSecs, 60)
        self.assertEqual(h.hooks.log(), [("P", "wake")])
        self.assertEqual(h.switcher.queueDepths()["B"], 0)

    def test_retryAfterIdleTtl(self) -> None:
        """
        When the pin will sleep by its idle TTL, Retry-After says when.
        """
        h = Residency(
            {"gpu": 80}, {"P": gpu(60, pin=True, idle_ttl_secs=300), "B": gpu(40)}
        )
        h.wake("P").release()
        h.clock.advance(100)
        outcome = h.acquire("B")
        assert outcome.failure is not None
        self.assertEqual(outcome.failure.value.retryAfterSecs, 200)

    def test_withoutCapacity(self) -> None:
        """
        Without a capacity table, a pinned awake model keeps every other
        model out.
        """
        h = Residency(None, {"P": {"pin": True}, "B": {}})
        h.wake("P").release()
        outcome = h.acquire("B")
        assert outcome.failure is not None
        self.assertIsInstance(outcome.failure.value, ModelCannotFit)

    def test_waitersRefusedWhenPinWakes(self) -> None:
        """
        Requests that queued before a pinned model took their room are
        answered with the 503 once it has.
        """
        h = Residency({"gpu": 80}, {"P": gpu(60, pin=True), "B": gpu(40)})
        slot = h.wake("B")
        p = h.acquire("P")
        queued = h.acquire("B")
        self.assertTrue(queued.waiting, "B is draining")
        slot.release()
        h.hooks.finishNext("B", "sleep")
        h.hooks.finishNext("P", "wake")
        self.assertIsNotNone(p.slot)
        assert queued.failure is not None
        self.assertIsInstance(queued.failure.value, ModelCannotFit)
        self.assertEqual(h.switcher.queueDepths()["B"], 0)


class PlacementTests(SynchronousTestCase):
    """
    Alternative placements and what hooks are told about them.
    """

    def test_firstThatFits(self) -> None:
        """
        The first placement that fits without evicting is used, and the
        hooks see it in LLMUX_PLACEMENT and LLMUX_POOLS.
        """
        h = Residency(
            {"gpu0": 80, "gpu1": 80},
            {
                "Big": {"resources": {"gpu0": 60}},
                "Coder": {"resources": [{"gpu0": 30}, {"gpu1": 30}]},
            },
        )
        h.wake("Big").release()
        h.acquire("Coder")
        [call] = h.hooks.pending()
        assert call.config is not None
        env = call.config.hookEnvironment()
        self.assertEqual(
            env,
            {"LLMUX_MODEL": "Coder", "LLMUX_PLACEMENT": "1", "LLMUX_POOLS": "gpu1"},
        )
        h.hooks.finishNext("Coder", "wake")
        self.assertEqual(h.holds("Coder"), {"gpu1": 30})
        view = [v for v in h.switcher.views() if v.name == "Coder"][0]
        self.assertEqual(view.placement, 1)

    def test_cheapestEvictionWins(self) -> None:
        """
        When no placement fits, the one whose eviction is cheapest (here:
        an idle victim rather than a busy one) is chosen.
        """
        h = Residency(
            {"gpu0": 80, "gpu1": 80},
            {
                "Busy": {"resources": {"gpu0": 60}},
                "Idle": {"resources": {"gpu1": 60}},
                "Coder": {"resources": [{"gpu0": 30}, {"gpu1": 30}]},
            },
        )
        h.wake("Busy")
        h.wake("Idle").release()
        h.acquire("Coder")
        self.assertEqual(h.hooks.log()[-1], ("Idle", "sleep"))
        h.hooks.finishNext("Idle", "sleep")
        [call] = h.hooks.pending()
        assert call.config is not None
        self.assertEqual(call.config.hookEnvironment()["LLMUX_POOLS"], "gpu1")

    def test_noEnvironmentWithoutCapacity(self) -> None:
        """
        Without a capacity table, hooks see only LLMUX_MODEL, as before.
        """
        h = Residency(None, {"A": {}})
        h.acquire("A")
        [call] = h.hooks.pending()
        assert call.config is not None
        self.assertEqual(call.config.hookEnvironment(), {"LLMUX_MODEL": "A"})


class TimerTests(SynchronousTestCase):
    """
    Idle TTL and the unload tier.
    """

    def test_idleTtl(self) -> None:
        """
        An awake model with nothing in flight or queued for idle_ttl_secs
        is put to sleep; the clock counts from the end of its last request.
        """
        events = CapturedEvents(self)
        h = Residency({"gpu": 80}, {"A": gpu(40, idle_ttl_secs=60)})
        slot = h.wake("A")
        h.clock.advance(100)
        self.assertEqual(h.hooks.log(), [("A", "wake")], "not while in flight")
        slot.release()
        h.clock.advance(30)
        view = h.switcher.views()[0]
        self.assertEqual(view.idleExpiresInSecs, 30)
        h.acquire("A").slot.release()  # type: ignore[union-attr]
        h.clock.advance(59)
        self.assertEqual(h.hooks.log(), [("A", "wake")], "restarted by the request")
        h.clock.advance(1)
        self.assertEqual(h.hooks.log(), [("A", "wake"), ("A", "sleep")])
        h.hooks.finishNext("A", "sleep")
        self.assertEqual(h.states(), {"A": ASLEEP})
        self.assertEqual(h.used(), {"gpu": 0})
        self.assertEqual(events.named("model_evicted")[0]["reason"], "idle_ttl")
        self.assertEqual(h.observer.evictions, [("A", "idle_ttl")])
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_unloadTier(self) -> None:
        """
        A model with an unload hook starts unloaded; asleep it holds its
        asleep_resources until unload_after_secs has passed and its unload
        hook has ended.
        """
        events = CapturedEvents(self)
        h = Residency(
            {"gpu": 80, "ram": 100},
            {
                "A": gpu(
                    40,
                    asleep_resources={"ram": 60},
                    unload="unload A",
                    unload_after_secs=300,
                    idle_ttl_secs=10,
                )
            },
        )
        self.assertEqual(h.states(), {"A": UNLOADED})
        self.assertEqual(h.used(), {"gpu": 0, "ram": 0})
        h.wake("A").release()
        self.assertEqual(h.used(), {"gpu": 40, "ram": 60})
        h.clock.advance(10)
        h.hooks.finishNext("A", "sleep")
        self.assertEqual(h.states(), {"A": ASLEEP})
        self.assertEqual(h.used(), {"gpu": 0, "ram": 60})
        h.clock.advance(299)
        self.assertEqual(h.hooks.log()[-1], ("A", "sleep"))
        h.clock.advance(1)
        self.assertEqual(h.hooks.log()[-1], ("A", "unload"))
        self.assertEqual(h.states(), {"A": UNLOADING})
        h.hooks.finishNext("A", "unload")
        self.assertEqual(h.states(), {"A": UNLOADED})
        self.assertEqual(h.used(), {"gpu": 0, "ram": 0})
        [unloaded] = events.named("model_unloaded")
        self.assertEqual(unloaded["reason"], "unload_after")

    def test_evictionUnloadsWhenRamIsShort(self) -> None:
        """
        When asleep_resources are what is short, eviction unloads an asleep
        model.
        """
        h = Residency(
            {"gpu": 80, "ram": 100},
            {
                "A": gpu(40, asleep_resources={"ram": 60}, unload="unload A"),
                "B": gpu(40, asleep_resources={"ram": 60}, unload="unload B"),
            },
        )
        h.wake("A").release()
        h.clock.advance(1)
        evictor = Outcome.of(h.switcher.acquire("B"))
        # A is awake and idle: B needs 60 ram and only 40 is free, so A is
        # put to sleep and unloaded.
        self.assertEqual(h.hooks.log()[-1], ("A", "sleep"))
        h.hooks.finishNext("A", "sleep")
        self.assertEqual(h.hooks.log()[-1], ("A", "unload"))
        h.hooks.finishNext("A", "unload")
        h.hooks.finishNext("B", "wake")
        self.assertIsNotNone(evictor.slot)
        self.assertEqual(h.states(), {"A": UNLOADED, "B": AWAKE})


class ConcurrencyTests(SynchronousTestCase):
    """
    max_in_flight.
    """

    def test_maxInFlight(self) -> None:
        """
        Beyond max_in_flight requests queue, and each released slot goes to
        the next of them.
        """
        h = Residency({"gpu": 80}, {"A": gpu(40, max_in_flight=2)})
        first = h.wake("A")
        second = h.acquire("A")
        third = h.acquire("A")
        fourth = h.acquire("A")
        self.assertIsNotNone(second.slot)
        self.assertTrue(third.waiting and fourth.waiting)
        self.assertEqual(h.switcher.queueDepths()["A"], 2)
        self.assertEqual(h.hooks.log(), [("A", "wake")])
        first.release()
        self.assertIsNotNone(third.slot)
        self.assertTrue(fourth.waiting)
        self.assertEqual(h.switcher.inFlight("A"), 2)
        [blocker] = h.switcher.blockers("A")
        self.assertEqual(blocker.reason, "max_in_flight (2 in flight)")

    def test_maxInFlightOnWake(self) -> None:
        """
        A wake releases at most max_in_flight of its waiters.
        """
        h = Residency({"gpu": 80}, {"A": gpu(40, max_in_flight=1)})
        outcomes = [h.acquire("A") for _ in range(3)]
        h.hooks.finishNext("A", "wake")
        self.assertEqual([o.slot is not None for o in outcomes], [True, False, False])


class AdoptionTests(SynchronousTestCase):
    """
    Adoption with several residents.
    """

    def test_adoptAllThatFit(self) -> None:
        """
        Every model whose alive hook succeeds is adopted while it fits,
        pinned models first; the others are put to sleep (and unloaded if
        they can be).
        """
        events = CapturedEvents(self)
        h = Residency(
            {"gpu": 100},
            {
                "A": gpu(50),
                "B": gpu(40, unload="unload B"),
                "C": gpu(10),
                "P": gpu(50, pin=True),
            },
            alive_interval_secs=0,
        )
        liveness = Liveness(h.switcher, h.config, h.clock)
        liveness.start()
        for model in ("P", "A", "B"):
            h.hooks.finishNext(model, "alive")
        h.hooks.finishNext("B", "sleep")
        h.hooks.finishNext("B", "unload")
        h.hooks.finishNext("C", "alive", exitCode=1)
        self.assertEqual(
            h.hooks.log(),
            [
                ("P", "alive"),
                ("A", "alive"),
                ("B", "alive"),
                ("B", "sleep"),
                ("B", "unload"),
                ("C", "alive"),
            ],
        )
        self.assertEqual(
            h.states(), {"A": AWAKE, "B": UNLOADED, "C": ASLEEP, "P": AWAKE}
        )
        self.assertEqual(
            [e["model"] for e in events.named("model_adopted")], ["P", "A"]
        )
        self.assertEqual(events.named("extra_model_awake")[0]["model"], "B")
        self.successResultOf(liveness.adopted)  # type: ignore[arg-type]

    def test_healthChecksEveryAwakeModel(self) -> None:
        """
        Periodic alive checks cover every awake model; a dead one stops
        serving and, once its sleep hook has ended, frees its room.
        """
        events = CapturedEvents(self)
        h = Residency(
            {"gpu": 80},
            {"A": gpu(40), "B": gpu(40)},
            adopt_running=False,
            alive_interval_secs=10,
            alive_failures=1,
        )
        liveness = Liveness(h.switcher, h.config, h.clock)
        liveness.start()
        self.addCleanup(liveness.stop)
        h.wake("A").release()
        h.wake("B").release()
        h.clock.advance(10)
        self.assertEqual(
            [(c.model, c.hook) for c in h.hooks.pending()],
            [("A", "alive"), ("B", "alive")],
        )
        h.hooks.finishNext("A", "alive")
        h.hooks.finishNext("B", "alive", exitCode=1)
        self.assertEqual(h.states()["B"], SLEEPING)
        self.assertEqual(events.named("model_dead")[0]["model"], "B")
        self.assertEqual(h.observer.evictions, [("B", "dead")])
        h.hooks.finishNext("B", "sleep")
        self.assertEqual(h.states(), {"A": AWAKE, "B": ASLEEP})
        self.assertEqual(h.used(), {"gpu": 40})


class PreloadTests(SynchronousTestCase):
    """
    preload: true.
    """

    def test_preload(self) -> None:
        """
        Preload models that fit are woken at start-up in config order,
        evicting nothing; one that does not fit is skipped.
        """
        events = CapturedEvents(self)
        h = Residency(
            {"gpu": 80},
            {
                "A": gpu(40, preload=True),
                "B": gpu(60, preload=True),
                "C": gpu(40, preload=True),
            },
        )
        h.switcher.preload()
        self.assertEqual(h.hooks.log(), [("A", "wake"), ("C", "wake")])
        self.assertEqual(events.named("preload_skipped")[0]["model"], "B")
        h.hooks.finishNext("A", "wake")
        h.hooks.finishNext("C", "wake")
        self.assertEqual(h.states(), {"A": AWAKE, "B": ASLEEP, "C": AWAKE})
        self.assertIsNotNone(h.acquire("A").slot)


class EvictionPolicyTests(SynchronousTestCase):
    """
    The eviction policy is pluggable.
    """

    def test_cheapestWake(self) -> None:
        """
        cheapest_wake evicts the model that is cheapest to wake again, even
        when it was used more recently.
        """
        h = Residency(
            {"gpu": 80},
            {"Slow": gpu(40), "Fast": gpu(40), "T": gpu(40)},
            eviction=CheapestWakeEviction(),
        )
        h.hooks.durations = {("Slow", "wake"): 60.0, ("Fast", "wake"): 2.0}
        slow = h.acquire("Slow")
        h.clock.advance(60)
        slow.slot.release()  # type: ignore[union-attr]
        fast = h.acquire("Fast")
        h.clock.advance(2)
        fast.slot.release()  # type: ignore[union-attr]
        h.clock.advance(100)
        h.acquire("Slow").slot.release()  # type: ignore[union-attr]
        h.hooks.durations = {}
        h.acquire("T")
        self.assertEqual(h.hooks.log()[-1], ("Fast", "sleep"))


class VisibilityTests(SynchronousTestCase):
    """
    What the status document and the metrics show of residency.
    """

    def test_status(self) -> None:
        """
        The status shows the capacity, what is used, and per model its
        state, placement, holdings, pin, idle expiry and what blocks it.
        """
        h = Residency(
            {"gpu0": 80, "gpu1": 80},
            {
                "A": {"resources": {"gpu0": 60}, "idle_ttl_secs": 100},
                "B": {"resources": {"gpu0": 60}},
                "P": {"resources": {"gpu1": 10}, "pin": True},
            },
        )
        slot = h.wake("A")
        h.acquire("B")
        status = h.switcher.status()
        self.assertEqual(status["capacity"], {"gpu0": 80, "gpu1": 80})
        self.assertEqual(status["used"], {"gpu0": 60, "gpu1": 0})
        self.assertEqual(status["awake"], ["A"])
        self.assertEqual(status["eviction"], {"name": "lru"})
        self.assertEqual(status["switching"], {"from": "A", "to": "B"})
        a, b, p = (status["models"][name] for name in ("A", "B", "P"))
        self.assertEqual(
            (a["state"], a["placement"], a["holds"], a["draining"]),
            ("draining", 0, {"gpu0": 60}, True),
        )
        self.assertEqual(
            b["blocked_by"], [{"model": "A", "reason": "draining (1 in flight)"}]
        )
        self.assertEqual((b["state"], b["holds"], b["queue_depth"]), ("asleep", {}, 1))
        self.assertEqual((p["pinned"], p["state"]), (True, "asleep"))
        slot.release()
        h.hooks.finishNext("A", "sleep")
        self.assertEqual(h.switcher.status()["models"]["B"]["state"], "waking")
        h.hooks.finishNext("B", "wake")
        self.assertEqual(h.switcher.status()["models"]["B"]["blocked_by"], [])

    def test_idleExpiry(self) -> None:
        """
        idle_expires_in_secs counts down while the idle clock runs.
        """
        h = Residency({"gpu": 80}, {"A": gpu(40, idle_ttl_secs=100)})
        h.wake("A").release()
        h.clock.advance(40)
        self.assertEqual(h.switcher.status()["models"]["A"]["idle_expires_in_secs"], 60)

    def test_metrics(self) -> None:
        """
        The metrics show each model's state, the capacity, what is used and
        the evictions by reason.
        """
        from prometheus_client import generate_latest

        from llmux.metrics import Metrics

        metrics = Metrics()
        clock = Clock()
        hooks = FakeHookRunner(clock)
        config = residencyConfig({"gpu": 80}, {"A": gpu(60), "B": gpu(60)})
        switcher = Switcher(config, FifoPolicy(), hooks, clock, metrics)
        metrics.watch(switcher)
        first = Outcome.of(switcher.acquire("A"))
        hooks.finishNext("A", "wake")
        assert first.slot is not None
        first.slot.release()
        Outcome.of(switcher.acquire("B"))
        text = generate_latest(metrics.registry).decode()
        for line in [
            'llmux_model_state{model="A",state="awake"} 0.0',
            'llmux_model_state{model="A",state="sleeping"} 1.0',
            'llmux_model_state{model="B",state="asleep"} 1.0',
            'llmux_active_model{model="A"} 0.0',
            'llmux_capacity_units{pool="gpu"} 80.0',
            'llmux_capacity_used_units{pool="gpu"} 60.0',
            'llmux_evictions_total{model="A",reason="capacity"} 1.0',
        ]:
            self.assertIn(line + "\n", text)
