# -*- test-case-name: tests.test_switcher -*-
"""
The switcher: which models are awake, who waits for which, and the wakes,
sleeps and evictions that change that.

It deals only in model names, slots, L{Deferred}s and time. The switch
policy decides when to make room for a model; the eviction policy proposes
who makes room; the hook runner wakes and sleeps models; the clock is
injected. So the same switcher serves the live server, the unit tests on a
L{twisted.internet.task.Clock} and the simulator.

How a request gets its model (SPEC sections 4 and 9):

  - A request for an awake model under its C{max_in_flight} takes a slot at
    once: one dictionary lookup and a counter (L{Switcher.acquire}).
  - Otherwise it queues on its model. If the model fits in what is free, it
    is I{admitted}: woken at once, nothing else touched, the policy not
    asked. (Without a C{capacity:} table there is nothing declared free:
    every wake is a switch the policy decides, as in llmux 2.4.0.)
  - If it does not fit, the eviction policy proposes victims, and the
    switch policy decides when the switch happens (L{Switcher._consult}).
    If only pinned models are in the way, the request gets a 503 at once.
  - Arranged switches start in the order they were arranged, as soon as
    what they need is not being woken or put to sleep by another plan
    (L{Switcher._dispatch}); plans over disjoint pools run concurrently.
  - A switch waits out its victims' C{min_active_secs}, drains each
    (C{beforeSwitch}, bounded by C{drain_timeout_secs}) and puts it to
    sleep, then wakes the target, releasing its waiters in the same instant
    it is awake, so the next switch always sees them in flight.

What each model holds is booked in a L{Ledger} as its state changes (see
L{llmux.switcher.model}); what plans under way will take is set aside
(L{llmux.switcher.planning}). The ledger never exceeds the capacity.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import attrs
from twisted.internet.defer import (
    Deferred,
    DeferredList,
    TimeoutError,
    fail,
    gatherResults,
    succeed,
)
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ..config import Config, ConfigError, ModelConfig, checkResidency
from ..cost import IDLE, CostTracker
from ..errors import (
    CannotPin,
    ModelCannotFit,
    ModelNotFound,
    ModelNotReady,
    NoUnloadHook,
    RequestTimedOut,
    SwitchFailed,
)
from ..interfaces import (
    Decision,
    DeferUntil,
    HookResult,
    IEvictionPolicy,
    IHookRunner,
    ISlot,
    ISwitcher,
    ISwitchObserver,
    ISwitchPolicy,
    ModelState,
    SwitchContext,
    SwitchedContext,
)
from ..logs import observer as logObserver
from ..resources import fits
from .ledger import Ledger, LedgerError
from .model import (
    ASLEEP,
    AWAKE,
    DRAINING,
    FAILED,
    RESTING,
    SLEEPING,
    UNLOADED,
    UNLOADING,
    UP,
    WAKING,
    Resident,
    Waiter,
)
from .planning import Plan, Victim, firstFit, pinnedBlockers
from .states import Active, Idle, Switching
from .views import SwitcherViews

__all__ = [
    "Active",
    "FAILURE_BACKOFF_SECS",
    "Idle",
    "Slot",
    "Switcher",
    "Switching",
]

#: After a failed wake, wakes on the same pools wait until this long after
#: the failure.
FAILURE_BACKOFF_SECS = 2.0
#: Retry-After for a request refused because pinned models hold its room
#: and none of them will sleep by itself.
PINNED_RETRY_SECS = 60.0


@implementer(ISwitchObserver)
class _Unobserved:
    """
    The observer of a switcher nobody observes.
    """

    def switched(
        self, from_: str | None, to: str, succeeded: bool, durationSecs: float
    ) -> None:
        pass

    def drained(self, from_: str, to: str, durationSecs: float) -> None:
        pass

    def deactivated(self, model: str, activeSecs: float) -> None:
        pass

    def waited(self, model: str, waitSecs: float) -> None:
        pass

    def hookRan(self, result: HookResult) -> None:
        pass

    def died(self, model: str) -> None:
        pass

    def evicted(self, model: str, reason: str) -> None:
        pass


@implementer(ISlot)
@attrs.define(eq=False)
class Slot:
    """
    One request in flight on C{model}; see L{ISlot}.
    """

    _switcher: Switcher
    _state: Resident
    _released: bool = False

    @property
    def model(self) -> str:
        return self._state.name

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._switcher._release(self._state)


@implementer(ISwitcher)
class Switcher(SwitcherViews):
    """
    Keeps models awake within the capacity and hands out in-flight slots.

    @ivar costs: the L{CostTracker} of observed switches and wakes.
    @ivar lastError: the message of the last failed switch, or C{None}.
    """

    log: Logger

    def __init__(
        self,
        config: Config,
        policy: ISwitchPolicy,
        hooks: IHookRunner,
        clock: IReactorTime,
        observer: ISwitchObserver | None = None,
        eviction: IEvictionPolicy | None = None,
    ) -> None:
        """
        @param observer: told what happens, for metrics; optional.
        @param eviction: proposes victims; C{lru} if not given.
        """
        if eviction is None:
            from ..policies.lru import LruEviction

            eviction = LruEviction()
        # The namespace operators filter on, whichever module holds the class.
        self.log = Logger("llmux.switcher.Switcher", self, logObserver)
        self._policy = policy
        self._eviction = eviction
        self._hooks = hooks
        self._clock = clock
        self._observer = observer or _Unobserved()
        self._maxQueue = config.policy.max_queue
        self._drainTimeout = config.policy.drain_timeout_secs
        self._declared = config.capacity is not None
        self._ledger = Ledger(config.pools)
        now = clock.seconds()
        self._models = {
            m.name: Resident.build(m, config.pools, now) for m in config.models
        }
        for model in self._models.values():
            self._ledger.hold(model.name, model.holdingIn(model.state))
        self._order = config.modelNames
        self.costs = CostTracker()
        self.lastError: str | None = None
        self._closing = False
        # Switches arranged by the policy and not yet started, in order.
        self._arranged: list[str] = []
        # Plans under way, in the order they started; who they claim.
        self._plans: list[Plan] = []
        self._targets: dict[str, Plan] = {}
        self._victims: dict[str, Plan] = {}
        # Hooks under way outside plans (idle sleeps, unloads, deaths).
        self._chores: set[str] = set()
        self._quiet: list[Deferred[None]] = []
        self._exclusive: list[tuple[Callable[[], Any], Deferred[Any]]] = []
        self._inExclusive = False
        # When wakes last failed, on each pool and of each model.
        self._failedAt: dict[str, float] = {}
        self._modelFailedAt: dict[str, float] = {}
        self._retry: Any = None
        self._dispatching = False
        self._again = False
        self._ticker: LoopingCall | None = None

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        """
        Start the policy's periodic scheduler, if it has one.
        """
        interval = self._policy.schedulerInterval
        if interval is not None and self._ticker is None:
            self._ticker = LoopingCall(self._tick)
            self._ticker.clock = self._clock
            self._ticker.start(interval, now=False).addErrback(
                lambda f: self.log.failure("scheduler stopped", f)
            )

    def stop(self) -> None:
        """
        Stop the periodic scheduler and every model timer.
        """
        if self._ticker is not None and self._ticker.running:
            self._ticker.stop()
        self._ticker = None
        for model in self._models.values():
            model.cancelTimer()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None

    def preload(self) -> Deferred[None]:
        """
        See L{ISwitcher.preload}.
        """
        return self.exclusively(self._preload)

    async def _preload(self) -> None:
        for model in self._models.values():
            if not model.config.preload or model.state not in RESTING:
                continue
            placement = firstFit(self._needs(model), self._free())
            if placement is None:
                self.log.info(
                    "{model} not preloaded: it does not fit without evicting",
                    event="preload_skipped",
                    model=model.name,
                )
                continue
            self._start(Plan(model, placement, (), decided=False, reason="preload"))

    # -- requests ------------------------------------------------------------

    def acquire(self, model: str) -> Deferred[ISlot]:
        """
        See L{ISwitcher.acquire}.
        """
        state = self._models.get(model)
        if state is None:
            return fail(ModelNotFound(model))
        if self._closing:
            return fail(ModelNotReady(model, "llmux is shutting down"))
        if state.state is AWAKE and state.inFlight < state.limit:
            state.inFlight += 1
            return succeed(Slot(self, state))
        if len(state.waiters) >= self._maxQueue:
            self.log.warn(
                "{model}: queue full ({max_queue} waiting); request refused",
                event="queue_full",
                model=model,
                max_queue=self._maxQueue,
            )
            return fail(
                ModelNotReady(model, f"queue full: {len(state.waiters)} waiting")
            )
        if state.state not in UP:
            refusal = self._pinnedOut(state)
            if refusal is not None:
                return fail(refusal)
        return self._enqueue(state)

    def _grant(self, state: Resident) -> Slot:
        state.inFlight += 1
        return Slot(self, state)

    def _release(self, state: Resident) -> None:
        if state.waiters and state.state is AWAKE:
            # At max_in_flight: the slot goes straight to the next waiter.
            waiter = state.waiters.popleft()
            self._observer.waited(state.name, self._clock.seconds() - waiter.since)
            waiter.deferred.callback(Slot(self, state))
            return
        state.inFlight -= 1
        if state.inFlight == 0:
            state.idleSince = self._clock.seconds()
            watchers, state.drainWatchers = state.drainWatchers, []
            for watcher in watchers:
                watcher.callback(None)
            if state.config.idle_ttl_secs is not None and state.timer is None:
                self._armIdle(state)

    def _enqueue(self, state: Resident) -> Deferred[ISlot]:
        waiter = Waiter(since=self._clock.seconds())
        waiter.deferred = Deferred(lambda d: self._forget(state, waiter))
        state.waiters.append(waiter)
        timeout = self._policy.requestTimeout
        if timeout is not None:
            waiter.deferred.addTimeout(
                timeout, self._clock, onTimeoutCancel=self._timedOut(state, timeout)
            )
        self._consult(state)
        return waiter.deferred

    def _forget(self, state: Resident, waiter: Waiter) -> None:
        """
        Remove a waiter that timed out or was cancelled, at once, so it can
        neither keep its model's queue alive nor trigger a switch.
        """
        if waiter in state.waiters:
            state.waiters.remove(waiter)
            self._observer.waited(state.name, self._clock.seconds() - waiter.since)

    def _timedOut(self, state: Resident, timeout: float) -> Any:
        def convert(result: object, timeoutSecs: float) -> Failure:
            self.log.info(
                "{model}: request timed out after {timeout_secs}s waiting",
                event="request_timeout",
                model=state.name,
                timeout_secs=timeout,
            )
            return Failure(RequestTimedOut(state.name, timeout))

        return convert

    def _pinnedOut(self, state: Resident) -> ModelCannotFit | None:
        """
        The 503 for a request whose model could only fit by evicting pinned
        models, or C{None}.
        """
        blockers = pinnedBlockers(state, self._models.values(), self._ledger)
        if not blockers:
            return None
        expiries = [
            view.idleExpiresInSecs
            for view in map(self._view, (self._models[name] for name in blockers))
            if view.idleExpiresInSecs is not None
        ]
        retry = min(expiries) if expiries else PINNED_RETRY_SECS
        self.log.info(
            "{model}: refused, it cannot fit beside pinned {pinned}",
            event="cannot_fit",
            model=state.name,
            pinned=", ".join(blockers),
        )
        return ModelCannotFit(state.name, blockers, max(1.0, retry))

    def _consult(self, state: Resident) -> None:
        """
        A request started waiting for C{state}: admit the model if it fits,
        else ask the policy what to do.
        """
        if state.state is AWAKE:
            return
        if state.name in self._targets or state.name in self._arranged:
            return
        if self._declared and self._admit(state):
            return
        try:
            decision = self._policy.onPending(self._pendingContext(state))
        except Exception:
            self.log.failure("policy failed on a pending request; switching now")
            decision = Decision.SWITCH_NOW
        if decision is Decision.SWITCH_NOW:
            self._arrange(state.name)
        elif isinstance(decision, DeferUntil):
            # Whatever becomes of the policy's Deferred, the waiters must not
            # hang on it; the switch re-checks that they are still there.
            decision.when.addBoth(lambda _: self._arrange(state.name))

    def _arrange(self, target: str) -> None:
        """
        Queue a switch to C{target} behind the switches arranged before it.
        """
        if target in self._targets or target in self._arranged:
            return
        self._arranged.append(target)
        self._dispatch()

    # -- starting plans ------------------------------------------------------

    def _dispatch(self) -> None:
        """
        Start whatever can start: admissions, then arranged switches in
        order. Called whenever something that could unblock them happens.
        """
        if self._dispatching:
            self._again = True
            return
        self._dispatching = True
        try:
            self._again = True
            while self._again:
                self._again = False
                self._dispatchOnce()
        finally:
            self._dispatching = False

    def _dispatchOnce(self) -> None:
        if self._closing or self._exclusive or self._inExclusive:
            return
        # Pools an earlier arranged switch waits for: later plans keep off
        # them, so switches on shared pools start in arrival order.
        reserved: set[str] = set()
        for target in list(self._arranged):
            self._tryArranged(self._models[target], reserved)
        if self._declared:
            self._admitWaiting(reserved)
            self._refusePinnedOut()

    def _tryArranged(self, state: Resident, reserved: set[str]) -> None:
        name = state.name
        if name in self._targets:
            self._arranged.remove(name)
            return
        if state.state is AWAKE:
            self._arranged.remove(name)
            self._releaseWaiters(state)
            return
        if not state.waiters:
            self._arranged.remove(name)
            self.log.debug("{model}: switch skipped, nobody waits", model=name)
            return
        plan = None
        if state.state in RESTING and name not in self._victims:
            plan = self._plan(state, reserved, decided=True)
        if plan is None:
            reserved.update(*(p for p in state.placements))
            return
        self._arranged.remove(name)
        self._start(plan)

    def _admitWaiting(self, reserved: set[str]) -> None:
        """
        Wake, without asking the policy, every waiting model that fits in
        what is free, longest waiting first.
        """
        waiting = [
            m
            for m in self._models.values()
            if m.waiters
            and m.state in RESTING
            and m.name not in self._targets
            and m.name not in self._victims
        ]
        waiting.sort(key=lambda m: m.waiters[0].since)
        for model in waiting:
            placement = self._fit(model, reserved)
            if placement is None:
                continue
            if model.name in self._arranged:
                self._arranged.remove(model.name)
            self._start(Plan(model, placement, (), decided=False))

    def _admit(self, state: Resident) -> bool:
        """
        Wake C{state} now if it fits, keeping off the pools that arranged
        switches wait for.

        @return: whether it was admitted.
        """
        if state.state not in RESTING or state.name in self._victims:
            return False
        if self._closing or self._exclusive or self._inExclusive:
            return False
        waitedFor = {
            pool
            for name in self._arranged
            for placement in self._models[name].placements
            for pool in placement
        }
        placement = self._fit(state, waitedFor)
        if placement is None:
            return False
        self._start(Plan(state, placement, (), decided=False))
        return True

    def _refusePinnedOut(self) -> None:
        """
        Answer with the 503 the requests whose model pinned models now keep
        out (a pinned model woke after they queued).
        """
        for model in self._models.values():
            if not model.waiters or model.state not in RESTING:
                continue
            if model.name in self._targets:
                continue
            refusal = self._pinnedOut(model)
            if refusal is not None:
                self._failWaiters(model, refusal)

    def _fit(self, state: Resident, reserved: set[str]) -> int | None:
        """
        The first placement of C{state} that fits in what is free now, keeps
        off C{reserved} pools and is not backing off from a failure.
        """
        free = self._free()
        for index, need in enumerate(self._needs(state)):
            if reserved & set(state.placements[index]) or not fits(need, free):
                continue
            remaining = self._backoff(state, index)
            if remaining <= 0:
                return index
            self._retryIn(remaining)
        return None

    def _plan(self, state: Resident, reserved: set[str], decided: bool) -> Plan | None:
        """
        A plan to wake C{state}: in a placement that fits, or making room
        with the victims the eviction policy proposes; C{None} if neither
        can start now.
        """
        placement = self._fit(state, reserved)
        if placement is not None:
            return Plan(state, placement, (), decided)
        proposal = self._propose(state)
        if proposal is None:
            return None
        placement, victims = proposal
        if reserved & set(state.placements[placement]):
            return None
        remaining = self._backoff(state, placement)
        if remaining > 0:
            self._retryIn(remaining)
            return None
        return Plan(state, placement, victims, decided)

    def _backoff(self, state: Resident, placement: int) -> float:
        """
        Seconds left before a wake in C{placement} may start, after a
        failed wake on any of its pools.
        """
        failures = [self._failedAt.get(pool) for pool in state.placements[placement]]
        failures.append(self._modelFailedAt.get(state.name))
        last = max((at for at in failures if at is not None), default=None)
        if last is None:
            return 0.0
        return last + FAILURE_BACKOFF_SECS - self._clock.seconds()

    def _retryIn(self, seconds: float) -> None:
        if self._retry is not None and self._retry.active():
            return
        self._retry = self._clock.callLater(seconds, self._retried)

    def _retried(self) -> None:
        self._retry = None
        self._dispatch()

    # -- running plans -------------------------------------------------------

    def _start(self, plan: Plan) -> None:
        self._plans.append(plan)
        self._targets[plan.target.name] = plan
        for victim in plan.victims:
            self._victims[victim.resident.name] = plan
        d = Deferred.fromCoroutine(self._run(plan))
        d.addErrback(self._crashed, plan)
        d.addBoth(lambda _: self._finish(plan))

    def _crashed(self, failure: Failure, plan: Plan) -> None:
        """
        A bug stopped a plan: say so, and answer its waiters rather than
        retrying what crashed.
        """
        target = plan.target.name
        self.log.failure("switch to {target} crashed", failure, target=target)
        self._failWaiters(plan.target, SwitchFailed(target, "llmux internal error"))

    def _finish(self, plan: Plan) -> None:
        self._plans.remove(plan)
        self._targets.pop(plan.target.name, None)
        for victim in plan.victims:
            if self._victims.get(victim.resident.name) is plan:
                del self._victims[victim.resident.name]
        if plan.target.waiters and plan.target.state in RESTING:
            # Called off, or its victims' sleep gave no room: try again.
            self._consult(plan.target)
        self._settledDown()

    async def _run(self, plan: Plan) -> None:
        target = plan.target
        if plan.decided:
            self.log.info(
                "switching {from} -> {to}",
                event="switch_started",
                to=target.name,
                **{"from": plan.primary or IDLE},
            )
        else:
            self.log.info(
                "{model} admitted ({reason})",
                event="model_admitted",
                model=target.name,
                reason=plan.reason,
                placement=plan.placement,
                pools=",".join(target.placements[plan.placement]),
            )
        if plan.victims:
            await self._cooldown(plan)
            if not plan.wanted:
                return self._callOff(plan)
            made = await gatherResults(
                [Deferred.fromCoroutine(self._makeRoom(plan, v)) for v in plan.victims]
            )
            if not all(made):
                return self._callOff(plan)
        await self._wake(plan)

    def _callOff(self, plan: Plan) -> None:
        """
        Call off a switch whose waiters all left before its victims were put
        to sleep: they go on serving, including the requests that queued for
        them while they drained.
        """
        self.log.info(
            "{model}: switch called off, nobody waits", model=plan.target.name
        )
        for victim in plan.victims:
            model = victim.resident
            if model.state is DRAINING:
                model.enter(AWAKE)
                self._releaseWaiters(model)
                self._armIdle(model)

    async def _cooldown(self, plan: Plan) -> None:
        """
        Keep the victims awake (and serving) for the policy's minimum.
        """
        minimum = self._policy.minActiveSecs
        until = max(
            (
                v.resident.awakeSince + minimum
                for v in plan.victims
                if v.resident.state is AWAKE
            ),
            default=0.0,
        )
        remaining = until - self._clock.seconds()
        if remaining > 0:
            await deferLater(self._clock, remaining)

    async def _makeRoom(self, plan: Plan, victim: Victim) -> bool:
        """
        Drain and put one victim to sleep, and unload it if the plan says
        so.

        @return: C{False} if the switch was called off before the victim
            was put to sleep.
        """
        model = victim.resident
        slept = model.state is AWAKE
        if slept:
            await self._drain(model, plan.target)
            if not plan.wanted:
                return False
            plan.sleepStarted = self._clock.seconds()
            await self._sleep(model, "capacity", plan.target.name)
        while model.state not in RESTING:
            # Put to sleep meanwhile by something else (a death): wait.
            await model.untilSettled()
        if victim.unload and model.state is not UNLOADED:
            if not slept:
                # Evicted by its unload alone.
                plan.sleepStarted = self._clock.seconds()
                self._observer.evicted(model.name, "capacity")
            await self._unload(model, "capacity")
        # Its room is the target's now (see Plan.setAside); the model itself
        # may be woken again where there is room.
        victim.done = True
        if self._victims.get(model.name) is plan:
            del self._victims[model.name]
        self._dispatch()
        return True

    async def _drain(self, old: Resident, new: Resident) -> None:
        """
        Stop C{old} taking requests and let the policy wait for it.
        """
        old.enter(DRAINING)
        started = self._clock.seconds()
        context = SwitchContext(old.name, new.name, lambda: self._drained(old))
        try:
            wait = self._policy.beforeSwitch(context)
        except Exception:
            # A policy bug must not wedge the switcher half-way through a
            # switch: fall back to the plain drain.
            self.log.failure("policy failed before a switch; draining anyway")
            wait = self._drained(old)
        if wait is not None:
            await self._boundedDrain(wait, old, new.name)
        self._observer.drained(old.name, new.name, self._clock.seconds() - started)

    async def _boundedDrain(self, wait: Deferred[None], old: Resident, to: str) -> None:
        """
        Wait for the drain, at most C{drain_timeout_secs}; then go on
        (switch to C{to}) whatever is still in flight (it will be cut off
        by the sleep hook).
        """
        timeout = self._drainTimeout
        if timeout is not None:
            wait.addTimeout(timeout, self._clock)
        try:
            await wait
        except TimeoutError:
            self.log.warn(
                "{model}: {in_flight} request(s) still in flight after {timeout_secs}s"
                " of draining; switching to {to} anyway",
                event="drain_timeout",
                model=old.name,
                to=to,
                in_flight=old.inFlight,
                timeout_secs=timeout,
            )
        except Exception:
            self.log.failure("policy's drain wait failed; switching on")

    def _drained(self, state: Resident) -> Deferred[None]:
        if state.inFlight == 0:
            return succeed(None)
        watcher: Deferred[None] = Deferred(lambda d: state.drainWatchers.remove(d))
        state.drainWatchers.append(watcher)
        return watcher

    async def _sleep(self, model: Resident, reason: str, to: str | None) -> None:
        """
        Put an up model to sleep: it stops serving at once; its placement is
        given back when its C{sleep} hook has ended, however it ended.
        """
        self._leave(model, SLEEPING)
        self._observer.deactivated(model.name, self._clock.seconds() - model.awakeSince)
        self._observer.evicted(model.name, reason)
        self.log.info(
            "{model} put to sleep ({reason})",
            event="model_evicted",
            model=model.name,
            reason=reason,
            **{"for": to},
        )
        result = await self._runHook(model, "sleep")
        if not result.succeeded:
            # wake is idempotent, so a failed sleep does not stop the switch.
            self.log.warn(
                "{model}: sleep hook failed ({error}); going on",
                event="sleep_hook_failed",
                model=model.name,
                to=to,
                reason=reason,
                error=result.describeFailure(),
            )
        self._settle(model, ASLEEP)

    async def _unload(self, model: Resident, reason: str) -> None:
        """
        Unload an asleep model: its C{asleep_resources} are given back when
        its C{unload} hook has ended, however it ended.
        """
        model.enter(UNLOADING)
        model.cancelTimer()
        result = await self._runHook(model, "unload")
        if not result.succeeded:
            self.log.warn(
                "{model}: unload hook failed ({error})",
                event="unload_hook_failed",
                model=model.name,
                error=result.describeFailure(),
            )
        self.log.info(
            "{model} unloaded ({reason})",
            event="model_unloaded",
            model=model.name,
            reason=reason,
        )
        self._settle(model, UNLOADED)

    async def _wake(self, plan: Plan) -> None:
        new = plan.target
        need = self._needs(new)[plan.placement]
        if not fits(need, self._free(excluding=plan)):
            # Cannot happen while plans set aside what they need; if it did,
            # the plan's waiters are answered (see _crashed).
            raise LedgerError(f"no room left to wake {new.name}: {dict(need)}")
        new.placement = plan.placement
        new.enter(WAKING)
        new.cancelTimer()
        self._ledger.hold(new.name, new.holdingIn(WAKING))
        started = plan.sleepStarted
        if started is None:
            started = self._clock.seconds()
        result = await self._runHook(new, "wake")
        now = self._clock.seconds()
        fromName = plan.primary
        duration = now - started
        self._observer.switched(fromName, new.name, result.succeeded, duration)
        if result.succeeded:
            self.costs.record(fromName, new.name, duration)
            self.costs.recordWake(new.name, result.durationSecs)
            new.enter(AWAKE)
            new.awakeSince = new.idleSince = now
            self.log.info(
                "{model} active (from {from}, {duration_secs:.2f}s)",
                event="model_activated",
                model=new.name,
                duration_secs=duration,
                **{"from": fromName or IDLE},
            )
            self._tellPolicy(
                SwitchedContext(
                    fromName,
                    new.name,
                    duration,
                    tuple(v.resident.name for v in plan.victims),
                )
            )
            self._releaseWaiters(new)
            self._armIdle(new)
            new.fireSettled()
            return
        detail = result.describeFailure()
        self.log.error(
            "{model}: switch failed: {error}",
            event="switch_failed",
            model=new.name,
            error=detail,
            **{"from": fromName or IDLE},
        )
        new.enter(SLEEPING)
        await self._runHook(new, "sleep")
        failedAt = self._clock.seconds()
        self._modelFailedAt[new.name] = failedAt
        for pool in new.placements[plan.placement]:
            self._failedAt[pool] = failedAt
        self.lastError = f"{new.name}: {detail}"
        self._settle(new, FAILED)
        self._failWaiters(new, SwitchFailed(new.name, detail))

    def _leave(self, model: Resident, state: ModelState) -> None:
        """
        An up model stops serving: it moves to C{state} (C{sleeping}).
        """
        model.enter(state)
        model.cancelTimer()

    def _settle(self, model: Resident, state: ModelState) -> None:
        """
        A hook ended: move C{model} to the resting C{state}, give back what
        it no longer holds, and start what waited for that.
        """
        model.enter(state)
        model.placement = None
        self._ledger.hold(model.name, model.holdingIn(state))
        self._armUnload(model)
        model.fireSettled()
        self._dispatch()

    async def _runHook(self, state: Resident, hook: str) -> HookResult:
        """
        Run a hook; a runner that errs counts as a failed hook, not a crash.
        """
        started = self._clock.seconds()
        config = state.config
        if state.placement is not None:
            config = config.placed(state.placement)
        try:
            result = await self._hooks.run(config, hook)
        except Exception as e:
            self.log.failure(
                "{model}: {hook} hook runner failed", model=state.name, hook=hook
            )
            result = HookResult(
                model=state.name,
                hook=hook,
                exitCode=None,
                signal=None,
                timedOut=False,
                durationSecs=self._clock.seconds() - started,
                stderr=str(e).encode("utf-8", "replace"),
            )
        self._observer.hookRan(result)
        return result

    def _tellPolicy(self, context: SwitchedContext) -> None:
        try:
            self._policy.afterSwitch(context)
        except Exception:
            self.log.failure("policy failed after a switch")

    def _releaseWaiters(self, state: Resident) -> None:
        now = self._clock.seconds()
        while state.waiters and state.inFlight < state.limit:
            waiter = state.waiters.popleft()
            self._observer.waited(state.name, now - waiter.since)
            waiter.deferred.callback(self._grant(state))

    def _failWaiters(self, state: Resident, error: Exception) -> None:
        waiters, state.waiters = state.waiters, type(state.waiters)()
        now = self._clock.seconds()
        for waiter in waiters:
            self._observer.waited(state.name, now - waiter.since)
            waiter.deferred.errback(Failure(error))

    # -- timers and chores ---------------------------------------------------

    def _armIdle(self, state: Resident) -> None:
        """
        Start C{state}'s idle clock, if it has a TTL and nothing to do.
        """
        ttl = state.config.idle_ttl_secs
        if ttl is None or state.state is not AWAKE or state.timer is not None:
            return
        if state.inFlight or state.waiters:
            return
        due = state.idleSince + ttl - self._clock.seconds()
        state.timer = self._clock.callLater(max(0.0, due), self._idleExpired, state)

    def _idleExpired(self, state: Resident) -> None:
        state.timer = None
        if state.state is not AWAKE or state.inFlight or state.waiters:
            return
        if state.name in self._victims or self._closing:
            return
        ttl = state.config.idle_ttl_secs
        assert ttl is not None
        if self._clock.seconds() - state.idleSince < ttl:
            self._armIdle(state)
            return
        self._chore(state, self._sleep(state, "idle_ttl", None))

    def _armUnload(self, state: Resident) -> None:
        """
        Start C{state}'s unload clock, if it rests loaded and has one.
        """
        after = state.config.unload_after_secs
        if not after or state.state not in (ASLEEP, FAILED) or self._closing:
            return
        state.timer = self._clock.callLater(after, self._unloadDue, state)

    def _unloadDue(self, state: Resident) -> None:
        state.timer = None
        if state.state not in (ASLEEP, FAILED) or state.waiters:
            return
        if state.name in self._targets or state.name in self._victims:
            return
        self._chore(state, self._unload(state, "unload_after"))

    def _chore(self, state: Resident, work: Coroutine[Any, Any, None]) -> None:
        """
        Run a hook outside any plan (an idle sleep, an unload, a death's
        clean-up), with C{state} claimed meanwhile.
        """
        self._chores.add(state.name)
        d = Deferred.fromCoroutine(work)
        d.addErrback(
            lambda f: self.log.failure("{model}: hook crashed", f, model=state.name)
        )

        def done(_: object) -> None:
            self._chores.discard(state.name)
            if state.waiters and state.state in RESTING:
                self._consult(state)
            self._settledDown()

        d.addBoth(done)

    def _settledDown(self) -> None:
        """
        A plan or chore ended: start the next one, or whoever waits for
        quiet.
        """
        self._runExclusive()
        self._dispatch()
        if self._isQuiet():
            quiet, self._quiet = self._quiet, []
            for d in quiet:
                d.callback(None)

    def _isQuiet(self) -> bool:
        """
        Whether no hook is running or due to run for a plan, a chore or
        exclusive work (adoption).
        """
        return not (self._plans or self._chores or self._inExclusive)

    def _untilQuiet(self) -> Deferred[None]:
        if self._isQuiet():
            return succeed(None)
        d: Deferred[None] = Deferred(lambda d: self._quiet.remove(d))
        self._quiet.append(d)
        return d

    # -- the scheduler -------------------------------------------------------

    def _tick(self) -> None:
        if self._plans or self._arranged:
            return
        try:
            choice = self._policy.schedule(self._tickContext())
        except Exception:
            self.log.failure("policy scheduler failed")
            return
        if choice is not None and choice in self._models:
            if self._models[choice].state is not AWAKE:
                self._arrange(choice)

    # -- liveness and shutdown --------------------------------------------------

    def exclusively(
        self, work: Callable[[], Coroutine[Any, Any, Any]]
    ) -> Deferred[Any]:
        """
        Run C{work} once no switch is running, starting none until it is
        done. For adoption at start-up.
        """
        d: Deferred[Any] = Deferred()
        self._exclusive.append((work, d))
        self._runExclusive()
        return d

    def _runExclusive(self) -> None:
        if self._closing:
            # What has not started by shutdown never will.
            skipped, self._exclusive = self._exclusive, []
            for _, waiting in skipped:
                waiting.callback(None)
        if self._inExclusive or self._plans or not self._exclusive:
            return
        work, d = self._exclusive.pop(0)
        self._inExclusive = True

        def done(result: object) -> object:
            self._inExclusive = False
            self._settledDown()
            return result

        Deferred.fromCoroutine(work()).addBoth(done).chainDeferred(d)

    def runHook(self, model: str, hook: str) -> Deferred[HookResult]:
        """
        Run one of C{model}'s hooks, counted like the switcher's own.
        """
        return Deferred.fromCoroutine(self._runHook(self._models[model], hook))

    def adopt(self, model: str) -> bool:
        """
        See L{ISwitcher.adopt}.
        """
        state = self._models[model]
        if state.state not in RESTING:
            return False
        placement = firstFit(self._needs(state), self._free())
        if placement is None:
            return False
        now = self._clock.seconds()
        state.placement = placement
        self._ledger.hold(model, state.upHolding(placement))
        state.state = AWAKE
        state.awakeSince = state.idleSince = now
        self.log.info(
            "{model} is already awake: adopted", event="model_adopted", model=model
        )
        self._releaseWaiters(state)
        self._armIdle(state)
        return True

    # -- reload ----------------------------------------------------------------

    # ISwitcher says "object" to keep interfaces.py free of config imports.
    def reconfigure(  # type: ignore[override]
        self,
        config: Config,
        policy: ISwitchPolicy,
        eviction: IEvictionPolicy,
    ) -> Deferred[dict[str, list[str]]]:
        """
        See L{ISwitcher.reconfigure}. Added models are taken at once; the
        rest waits until no switch runs.
        """
        if config.pools != self._ledger.capacity:
            return fail(
                ValueError("the capacity table changed: restart llmux to apply it")
            )
        now = self._clock.seconds()
        added = [m.name for m in config.models if m.name not in self._models]
        for model in config.models:
            if model.name in added:
                state = Resident.build(model, config.pools, now)
                self._models[model.name] = state
                self._ledger.hold(model.name, state.holdingIn(state.state))
        work = lambda: self._reconfigure(config, policy, eviction, added)  # noqa: E731
        return self.exclusively(work)

    async def _reconfigure(
        self,
        config: Config,
        policy: ISwitchPolicy,
        eviction: IEvictionPolicy,
        added: list[str],
    ) -> dict[str, list[str]]:
        new = {model.name: model for model in config.models}
        report: dict[str, list[str]] = {
            "added": added,
            "removed": [n for n in self._models if n not in new],
            "changed": [],
            "unchanged": [],
        }
        for name, model in new.items():
            if name not in added:
                old = self._models[name].config
                kind = "changed" if _runsDifferently(old, model) else "unchanged"
                report[kind].append(name)
        leaving = [self._models.pop(name) for name in report["removed"]]
        self._arranged = [n for n in self._arranged if n in self._models]
        for state in leaving:
            self._failWaiters(state, ModelNotFound(state.name))
        for state in leaving + [self._models[n] for n in report["changed"]]:
            await self._retire(state)
            state.cancelTimer()
        for state in leaving:
            self._ledger.hold(state.name, {})
        now = self._clock.seconds()
        for name in report["changed"]:
            retired = self._models[name]
            fresh = Resident.build(new[name], config.pools, now)
            fresh.waiters = retired.waiters
            self._models[name] = fresh
            self._ledger.hold(name, fresh.holdingIn(fresh.state))
        for name in report["unchanged"]:
            self._models[name].takeSettings(new[name])
        for name in report["changed"]:
            if self._models[name].waiters:
                # Their requests still want them: ask for a wake, which
                # starts once this reload is over.
                self._consult(self._models[name])
        self._models = {name: self._models[name] for name in new}
        self._order = config.modelNames
        self._maxQueue = config.policy.max_queue
        self._drainTimeout = config.policy.drain_timeout_secs
        self._eviction = eviction
        self._swapPolicy(policy)
        self.log.info(
            "reloaded: added {added}, removed {removed}, changed {changed}",
            event="config_reloaded",
            **{kind: ", ".join(names) or "none" for kind, names in report.items()},
        )
        return report

    async def _retire(self, state: Resident) -> None:
        """
        Put a model that is removed or changed to sleep with its old hooks:
        drained if up, then unloaded if it has an C{unload} hook (it holds
        nothing after), or left asleep.
        """
        await self._adminSleep(state, "reload")
        if state.config.unload is not None and state.state in (ASLEEP, FAILED):
            await self._unload(state, "reload")

    def _swapPolicy(self, policy: ISwitchPolicy) -> None:
        """
        Use C{policy} from now on, with its own scheduler.
        """
        if self._ticker is not None and self._ticker.running:
            self._ticker.stop()
        self._ticker = None
        self._policy = policy
        self.start()

    # -- the admin API -------------------------------------------------------

    def sleepModel(self, model: str) -> Deferred[ModelState]:
        """
        See L{ISwitcher.sleepModel}.
        """
        state = self._models[model]
        return self.exclusively(lambda: self._adminSleep(state))

    async def _adminSleep(self, state: Resident, reason: str = "admin") -> ModelState:
        if state.state in UP:
            if state.state is AWAKE:
                state.enter(DRAINING)
            await self._boundedDrain(self._drained(state), state, "sleep")
            await self._sleep(state, reason, None)
        elif state.state in (WAKING, SLEEPING, UNLOADING) or state.name in self._chores:
            await state.untilSettled()
        return state.state

    def unloadModel(self, model: str) -> Deferred[ModelState]:
        """
        See L{ISwitcher.unloadModel}.
        """
        state = self._models[model]
        if state.config.unload is None:
            return fail(NoUnloadHook(model))
        return self.exclusively(lambda: self._adminUnload(state))

    async def _adminUnload(self, state: Resident) -> ModelState:
        await self._adminSleep(state)
        if state.state in (ASLEEP, FAILED):
            await self._unload(state, "admin")
        return state.state

    def pin(self, model: str, pinned: bool) -> None:
        """
        See L{ISwitcher.pin}.
        """
        state = self._models[model]
        if state.pinned == pinned:
            return
        if pinned:
            self._checkPinnable(model)
        state.pinned = pinned
        self.log.info(
            "{model} {what}",
            event="model_pinned" if pinned else "model_unpinned",
            model=model,
            what="pinned" if pinned else "unpinned",
        )
        self._dispatch()

    def _checkPinnable(self, model: str) -> None:
        """
        Whether C{model} can be pinned: every pinned model must be able to
        be awake at once, as the config requires of its own pins.

        @raise CannotPin: if not, saying why.
        """
        models = tuple(
            attrs.evolve(m.config, pin=m.pinned or m.name == model)
            for m in self._models.values()
        )
        try:
            capacity = self._ledger.capacity if self._declared else None
            checkResidency(models, capacity)
        except ConfigError as e:
            raise CannotPin(model, e.message) from None

    def markDead(self, model: str, reason: str) -> Deferred[None]:
        """
        See L{ISwitcher.markDead}.
        """
        state = self._models[model]
        if state.state is not AWAKE:
            return succeed(None)
        self.log.error(
            "{model} is dead ({reason}); it will be woken again on demand",
            event="model_dead",
            model=model,
            reason=reason,
        )
        self._leave(state, SLEEPING)
        self._observer.deactivated(model, self._clock.seconds() - state.awakeSince)
        self._observer.died(model)
        self._observer.evicted(model, "dead")
        self.lastError = f"{model}: {reason}"
        done: Deferred[None] = Deferred()

        async def cleanUp() -> None:
            # A dead backend is unloaded when it can be: its own sleep may
            # hang on a server that no longer answers, and once it is gone
            # it holds nothing, asleep or not.
            if state.config.unload is not None:
                await self._runHook(state, "unload")
                self._settle(state, UNLOADED)
            else:
                await self._runHook(state, "sleep")
                self._settle(state, ASLEEP)
            done.callback(None)

        self._chore(state, cleanUp())
        return done

    def shutdown(self, timeoutSecs: float, sleepAwake: bool) -> Deferred[None]:
        """
        See L{ISwitcher.shutdown}.
        """
        return Deferred.fromCoroutine(self._shutdown(timeoutSecs, sleepAwake))

    async def _shutdown(self, timeoutSecs: float, sleepAwake: bool) -> None:
        self._closing = True
        self.stop()
        inFlight = sum(model.inFlight for model in self._models.values())
        waiting = sum(len(model.waiters) for model in self._models.values())
        self.log.info(
            "shutting down: {waiting} waiting request(s) refused,"
            " {in_flight} in flight",
            event="shutdown_started",
            waiting=waiting,
            in_flight=inFlight,
        )
        self._arranged.clear()
        self._runExclusive()
        for model in self._models.values():
            self._failWaiters(
                model, ModelNotReady(model.name, "llmux is shutting down")
            )
        # A switch under way may finish; none may start after shutdown.
        everything: Deferred[Any] = DeferredList(
            [self._drained(model) for model in self._models.values()]
            + [self._untilQuiet()],
            consumeErrors=True,
        )
        # Not addTimeout: a cancelled DeferredList fires with its (failed)
        # results, not with a failure, so the timeout would go unnoticed.
        giveUp = self._clock.callLater(timeoutSecs, everything.cancel)
        await everything
        if giveUp.active():
            giveUp.cancel()
        else:
            self.log.warn(
                "shutdown: gave up waiting after {timeout_secs}s",
                event="shutdown_timeout",
                timeout_secs=timeoutSecs,
            )
        if sleepAwake:
            up = [m for m in self._models.values() if m.state in UP]
            await gatherResults([Deferred.fromCoroutine(self._sleepUp(m)) for m in up])

    async def _sleepUp(self, model: Resident) -> None:
        if model.state is DRAINING:
            model.enter(AWAKE)
        await self._sleep(model, "shutdown", None)


#: What a model's backend runs by: a change to any of these means its old
#: process, hooks or holdings no longer apply.
_RUNS_BY = (
    "port",
    "wake",
    "sleep",
    "alive",
    "unload",
    "process",
    "directory",
    "resources",
    "asleep_resources",
)


def _runsDifferently(old: ModelConfig, new: ModelConfig) -> bool:
    """
    Whether a reload must put C{old} to sleep before C{new} takes over.
    """
    return any(getattr(old, key) != getattr(new, key) for key in _RUNS_BY)
