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
from typing import Any

import attrs
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from llmux.config import Config, ConfigError, ModelConfig, PolicyConfig, parseConfig
from llmux.errors import LlmuxError
from llmux.interfaces import (
    HookResult,
    IEvictionPolicy,
    IHookRunner,
    ISlot,
    ISwitchPolicy,
    ModelState,
)
from llmux.policies.cheapest_wake import CheapestWakeEviction
from llmux.policies.cost_aware import CostAwarePolicy
from llmux.policies.fifo import FifoPolicy
from llmux.policies.lru import LruEviction
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


def arrive(
    rng: random.Random,
    clock: Clock,
    switcher: Switcher,
    models: tuple[str, ...],
    at: float,
    granted: Callable[[Request], None] = lambda request: None,
) -> Request:
    """
    Schedule one request for a random model of C{models}: it may be
    abandoned while waiting, or cut short while being served. C{granted} is
    told when it gets its slot.
    """
    request = Request(model=rng.choice(models))
    serviceSecs = rng.uniform(0.0, 2.0)
    abandonAfter = rng.uniform(0.0, 10.0) if rng.random() < 0.1 else None
    cutShort = rng.random() < 0.1

    def answered(slot: ISlot) -> None:
        request.answers += 1
        request.slot = slot
        granted(request)
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
        requests = [arrive(rng, clock, switcher, MODELS, i * 0.2) for i in range(1500)]
        for _ in range(6000):
            clock.advance(0.1)
            self.checkInvariants(config, switcher, hooks, requests, seed)
        switcher.stop()
        self.checkAtRest(switcher, hooks, requests, clock, seed)

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


@implementer(IHookRunner)
@attrs.define
class ResidentHooks:
    """
    Hooks that take a random time and sometimes fail, for a residency
    config, keeping what the hooks themselves say is awake: a model is
    awake from a successful wake until a sleep hook starts on it.
    """

    clock: Clock
    rng: random.Random
    failureRate: float
    awake: dict[str, int] = attrs.field(factory=dict)
    running: dict[str, str] = attrs.field(factory=dict)
    violations: list[str] = attrs.field(factory=list)
    runs: int = 0

    def run(self, model: object, hook: str) -> Deferred[HookResult]:
        config = model
        assert isinstance(config, ModelConfig)
        name = config.name
        self.runs += 1
        if hook != "alive" and name in self.running:
            self.violations.append(f"{hook} {name} while its {self.running[name]} runs")
        if hook in ("wake", "sleep") and config.placement is None:
            self.violations.append(f"{hook} {name} without a placement")
        if hook == "sleep":
            self.awake.pop(name, None)
        self.running[name] = hook
        d: Deferred[HookResult] = Deferred()
        fails = hook in ("wake", "sleep") and self.rng.random() < self.failureRate
        duration = self.rng.uniform(0.0, 3.0)

        def finish() -> None:
            del self.running[name]
            if hook == "wake" and not fails:
                assert config.placement is not None
                self.awake[name] = config.placement
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


POOLS = {"gpu0": 80.0, "gpu1": 80.0, "ram": 160.0}


def randomResidency(rng: random.Random) -> dict[str, Any]:
    """
    Models A to E with random placements, asleep memory, unload hooks,
    pins, idle TTLs and concurrency limits, as config data that validates.
    """
    while True:
        models: dict[str, Any] = {}
        for i, name in enumerate(MODELS + ("E",)):
            one = {rng.choice(["gpu0", "gpu1"]): float(rng.randint(10, 70))}
            other = {rng.choice(["gpu0", "gpu1"]): float(rng.randint(10, 70))}
            settings: dict[str, Any] = {
                "port": 8001 + i,
                "wake": "w",
                "sleep": "s",
                "alive": "a",
                "resources": rng.choice([one, [one, other]]),
            }
            if rng.random() < 0.5:
                settings["asleep_resources"] = {"ram": float(rng.randint(10, 60))}
                if rng.random() < 0.6:
                    settings["unload"] = "u"
                    settings["unload_after_secs"] = rng.choice([0, 5.0, 20.0])
            settings["pin"] = rng.random() < 0.1
            settings["idle_ttl_secs"] = rng.choice([None, 3.0, 15.0])
            settings["max_in_flight"] = rng.choice([None, 1, 3])
            models[name] = settings
        data = {"capacity": POOLS, "models": models}
        try:
            parseConfig(data)
        except ConfigError:
            continue
        return data


class ResidencyStressTests(SynchronousTestCase):
    """
    Random traffic against the residency invariants: the books never exceed
    the capacity and always match each model's state; what the hooks say is
    awake is what the switcher thinks is up; no request is ever given a slot
    on a model that is not awake; no slot leaks; everything is answered.
    """

    def test_policies(self) -> None:
        """
        Each switch policy with each eviction policy, under chaos.
        """
        builds = [
            FifoPolicy.fromConfig,
            RoundRobinPolicy.fromConfig,
            CostAwarePolicy.fromConfig,
            FifoPolicy.fromConfig,
        ]
        for seed, build in enumerate(builds):
            eviction = LruEviction() if seed % 2 else CheapestWakeEviction()
            self.play(seed, build, eviction)

    def play(
        self,
        seed: int,
        build: Callable[[PolicyConfig], ISwitchPolicy],
        eviction: IEvictionPolicy,
    ) -> None:
        rng = random.Random(seed)
        clock = Clock()
        data = randomResidency(rng)
        data["policy"] = {
            "request_timeout_secs": rng.choice([None, 20.0, 60.0]),
            "min_active_secs": rng.choice([0.0, 2.0]),
            "drain_timeout_secs": rng.choice([None, 5.0]),
            "max_queue": rng.choice([8, 512]),
        }
        config = parseConfig(data)
        hooks = ResidentHooks(clock, rng, failureRate=0.1)
        switcher = Switcher(config, build(config.policy), hooks, clock, None, eviction)
        switcher.start()
        switcher.preload()
        names = config.modelNames
        misgrants: list[str] = []

        def granted(request: Request) -> None:
            state = switcher.stateOf(request.model)
            if state is not ModelState.AWAKE:
                misgrants.append(f"{request.model} granted while {state.value}")

        requests = [
            arrive(rng, clock, switcher, names, i * 0.2, granted) for i in range(1500)
        ]
        for _ in range(6000):
            clock.advance(0.1)
            self.checkInvariants(config, switcher, hooks, requests, seed)
            self.assertEqual(misgrants, [], f"seed {seed}")
        switcher.stop()
        self.assertEqual([r for r in requests if r.answers != 1], [], f"seed {seed}")
        for request in requests:
            if request.error is not None:
                self.assertIsInstance(request.error, (LlmuxError, CancelledError))
        self.assertEqual(
            {v.name: v.inFlight for v in switcher.views()}, dict.fromkeys(names, 0)
        )
        self.assertEqual(switcher.queueDepths(), dict.fromkeys(names, 0))
        self.assertEqual(clock.getDelayedCalls(), [], f"seed {seed}")
        served = sum(1 for r in requests if r.slot is not None)
        self.assertGreater(served, len(requests) // 5, f"seed {seed}: too few served")

    def checkInvariants(
        self,
        config: Config,
        switcher: Switcher,
        hooks: ResidentHooks,
        requests: list[Request],
        seed: int,
    ) -> None:
        where = f"seed {seed}"
        self.assertEqual(hooks.violations, [], where)
        used = {pool.name: pool.used for pool in switcher.pools()}
        for pool, units in POOLS.items():
            self.assertLessEqual(used[pool], units + 1e-6, f"{where}: {pool}")
        views = {view.name: view for view in switcher.views()}
        for name, view in views.items():
            model = config.model(name)
            assert model is not None
            expected: dict[str, float] = {}
            if view.state is not ModelState.UNLOADED:
                expected = dict(model.asleep_resources)
            if view.placement is not None:
                placed = model.resources[view.placement]
                expected = {
                    p: expected.get(p, 0.0) + placed.get(p, 0.0)
                    for p in {*expected, *placed}
                }
            self.assertEqual(
                dict(view.holds),
                {p: u for p, u in expected.items() if u},
                f"{where}: {name} in {view.state.value}",
            )
            self.assertGreaterEqual(view.inFlight, 0)
            self.assertLessEqual(view.queueDepth, config.policy.max_queue)
        for name, placement in hooks.awake.items():
            view = views[name]
            self.assertIn(
                view.state,
                (ModelState.AWAKE, ModelState.DRAINING, ModelState.SLEEPING),
                f"{where}: {name} awake by its hooks",
            )
            self.assertEqual(view.placement, placement, f"{where}: {name}")
        self.assertTrue(all(r.answers <= 1 for r in requests), where)
