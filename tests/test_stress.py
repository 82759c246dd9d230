"""
A randomized stress test of the real switcher on a Clock: thousands of
requests over several models, random switches, client aborts and hook
failures, with the invariants checked after every step.

Invariants:
  - never two models awake at once, judging by the hook log (a model is awake
    from a successful wake until a sleep hook starts on it);
  - the model the switcher serves from is awake by the hook log;
  - every request is answered exactly once (a slot, or an error);
  - in-flight counts never go negative, queues never exceed max_queue;
  - at rest: nothing in flight, nothing queued, no timer left.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import attrs
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from llmux.config import Config, PolicyConfig
from llmux.errors import LlmuxError
from llmux.interfaces import HookResult, IHookRunner, ISlot, ISwitchPolicy
from llmux.policies.fifo import FifoPolicy
from llmux.policies.round_robin import RoundRobinPolicy
from llmux.switcher import Switcher

from .test_switcher import makeConfig

MODELS = ("A", "B", "C", "D")


@implementer(IHookRunner)
@attrs.define
class ChaoticHooks:
    """
    Hooks that take a random time and sometimes fail, and a hook log that
    checks "never two models awake" every time a wake starts.
    """

    clock: Clock
    rng: random.Random
    failureRate: float
    awake: set[str] = attrs.field(factory=set)
    violations: list[str] = attrs.field(factory=list)
    runs: int = 0

    def run(self, model: object, hook: str) -> Deferred[HookResult]:
        name = model.name  # type: ignore[attr-defined]
        self.runs += 1
        if hook == "wake" and self.awake - {name}:
            self.violations.append(f"wake {name} while {sorted(self.awake)} awake")
        if hook == "sleep":
            self.awake.discard(name)
        d: Deferred[HookResult] = Deferred()
        fails = self.rng.random() < self.failureRate
        duration = self.rng.uniform(0.0, 3.0)

        def finish() -> None:
            if hook == "wake" and not fails:
                self.awake.add(name)
            d.callback(
                HookResult(
                    model=name,
                    hook=hook,
                    exitCode=1 if fails else 0,
                    signal=None,
                    timedOut=False,
                    durationSecs=duration,
                )
            )

        self.clock.callLater(duration, finish)
        return d


@attrs.define
class Request:
    """
    One simulated client request and everything that happened to it.
    """

    model: str
    answers: int = 0
    slot: ISlot | None = None
    error: BaseException | None = None


class StressTests(SynchronousTestCase):
    """
    Random traffic against the invariants.
    """

    def test_fifo(self) -> None:
        """
        fifo under chaos, several seeds.
        """
        for seed in range(4):
            self.play(seed, FifoPolicy.fromConfig)

    def test_roundRobin(self) -> None:
        """
        round_robin under chaos, several seeds.
        """
        for seed in range(4):
            self.play(seed, RoundRobinPolicy.fromConfig)

    def play(self, seed: int, build: Callable[[PolicyConfig], ISwitchPolicy]) -> None:
        rng = random.Random(seed)
        clock = Clock()
        settings = PolicyConfig(
            request_timeout_secs=rng.choice([None, 20.0, 60.0]),
            min_active_secs=rng.choice([0.0, 2.0]),
            drain_timeout_secs=rng.choice([None, 5.0]),
            max_queue=rng.choice([8, 512]),
        )
        config = attrs.evolve(makeConfig(*MODELS), policy=settings)
        hooks = ChaoticHooks(clock, rng, failureRate=0.1)
        switcher = Switcher(config, build(settings), hooks, clock)
        switcher.start()
        requests = [self.arrive(rng, clock, switcher, i * 0.2) for i in range(1500)]
        for _ in range(6000):
            clock.advance(0.1)
            self.checkInvariants(config, switcher, hooks, requests, seed)
        switcher.stop()
        self.checkAtRest(switcher, hooks, requests, clock, seed)

    def arrive(
        self, rng: random.Random, clock: Clock, switcher: Switcher, at: float
    ) -> Request:
        """
        Schedule one request: it may be abandoned while waiting, or cut short
        while being served.
        """
        request = Request(model=rng.choice(MODELS))
        serviceSecs = rng.uniform(0.0, 2.0)
        abandonAfter = rng.uniform(0.0, 10.0) if rng.random() < 0.1 else None
        cutShort = rng.random() < 0.1

        def answered(slot: ISlot) -> None:
            request.answers += 1
            request.slot = slot
            clock.callLater(serviceSecs / 4 if cutShort else serviceSecs, slot.release)

        def failed(failure: Failure) -> None:
            request.answers += 1
            request.error = failure.value

        def start() -> None:
            d = switcher.acquire(request.model)
            d.addCallbacks(answered, failed)
            if abandonAfter is not None:
                clock.callLater(abandonAfter, d.cancel)

        clock.callLater(at, start)
        return request

    def checkInvariants(
        self,
        config: Config,
        switcher: Switcher,
        hooks: ChaoticHooks,
        requests: list[Request],
        seed: int,
    ) -> None:
        self.assertEqual(hooks.violations, [], f"seed {seed}")
        self.assertLessEqual(len(hooks.awake), 1, f"seed {seed}: {hooks.awake}")
        if switcher.awake is not None:
            self.assertIn(switcher.awake, hooks.awake, f"seed {seed}")
        for model in MODELS:
            self.assertGreaterEqual(switcher.inFlight(model), 0)
        for depth in switcher.queueDepths().values():
            self.assertLessEqual(depth, config.policy.max_queue)
        self.assertTrue(all(r.answers <= 1 for r in requests), f"seed {seed}")

    def checkAtRest(
        self,
        switcher: Switcher,
        hooks: ChaoticHooks,
        requests: list[Request],
        clock: Clock,
        seed: int,
    ) -> None:
        self.assertEqual([r for r in requests if r.answers != 1], [], f"seed {seed}")
        for request in requests:
            if request.error is not None:
                self.assertIsInstance(request.error, (LlmuxError, CancelledError))
        self.assertEqual(
            {m: switcher.inFlight(m) for m in MODELS}, dict.fromkeys(MODELS, 0)
        )
        self.assertEqual(switcher.queueDepths(), dict.fromkeys(MODELS, 0))
        self.assertEqual(clock.getDelayedCalls(), [], f"seed {seed}")
        served = sum(1 for r in requests if r.slot is not None)
        # Chaos costs requests (timeouts, full queues, failed wakes), but llmux
        # keeps serving throughout.
        self.assertGreater(served, len(requests) // 5, f"seed {seed}: too few served")
        self.assertGreater(hooks.runs, 10)
