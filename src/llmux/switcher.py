# -*- test-case-name: tests.test_switcher -*-
"""
The switcher: which model is awake, who waits for which, and the switch itself.

It deals only in model names, slots, L{Deferred}s and time. The policy decides
when and to what to switch; the hook runner wakes and sleeps models; the clock
is injected. So the same switcher serves the live server, the unit tests on a
L{twisted.internet.task.Clock} and the simulator.

Rules (SPEC section 4) and where they live:

  - requests for the awake model take a slot at once (L{Switcher.acquire});
    others queue on their model and the policy is consulted;
  - switches run one at a time under a L{DeferredLock} (L{Switcher._switch}):
    backoff after a failure, re-check, cooldown, drain, sleep the old model,
    wake the new one, release or fail its waiters;
  - a released waiter receives its slot in the same instant it is released,
    while the switch still holds the lock. 2.4.0 needed a "settle" wait (up to
    5 s) for released requests to pick up their slots before the next switch
    could drain the model; here no such window exists, so the next switch
    always sees them in flight.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import attrs
from twisted.internet.defer import (
    Deferred,
    DeferredList,
    DeferredLock,
    TimeoutError,
    fail,
    succeed,
)
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from .config import Config, ModelConfig
from .cost import IDLE, CostTracker
from .errors import ModelNotFound, ModelNotReady, RequestTimedOut, SwitchFailed
from .interfaces import (
    Decision,
    DeferUntil,
    HookResult,
    IHookRunner,
    ISlot,
    ISwitcher,
    ISwitchObserver,
    ISwitchPolicy,
    PendingContext,
    SwitchContext,
    SwitchedContext,
    TickContext,
)
from .logs import observer

__all__ = ["Active", "FAILURE_BACKOFF_SECS", "Idle", "Switcher", "Switching"]

T = TypeVar("T")

#: After a failed switch, the next one waits until this long after the failure.
FAILURE_BACKOFF_SECS = 2.0


@attrs.frozen
class Idle:
    """
    No model is awake.
    """

    name = "idle"


@attrs.frozen
class Switching:
    """
    A switch from C{from_} (C{None}: nothing awake) to C{to} is under way.
    """

    name = "switching"

    from_: str | None
    to: str


@attrs.frozen
class Active:
    """
    C{model} is awake and serving.
    """

    name = "active"

    model: str


State = Idle | Switching | Active


@attrs.define(eq=False)
class _Waiter:
    """
    A request waiting for its model to wake.
    """

    since: float
    deferred: Deferred[ISlot] = attrs.field(init=False)


@attrs.define(eq=False)
class _Model:
    """
    The switcher's book-keeping for one configured model.
    """

    config: ModelConfig
    idleSince: float
    inFlight: int = 0
    draining: bool = False
    waiters: list[_Waiter] = attrs.field(factory=list)
    drainWatchers: list[Deferred[None]] = attrs.field(factory=list)

    @property
    def name(self) -> str:
        return self.config.name


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


@implementer(ISlot)
@attrs.define(eq=False)
class Slot:
    """
    One request in flight on C{model}; see L{ISlot}.
    """

    _switcher: Switcher
    _state: _Model
    _released: bool = False

    @property
    def model(self) -> str:
        return self._state.name

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._switcher._release(self._state)


@implementer(ISwitcher)
class Switcher:
    """
    Makes one model at a time the awake one and hands out in-flight slots.

    @ivar state: L{Idle}, L{Switching} or L{Active}.
    @ivar costs: the L{CostTracker} of observed switches.
    @ivar lastError: the message of the last failed switch, or C{None}.
    """

    log = Logger(observer=observer)

    def __init__(
        self,
        config: Config,
        policy: ISwitchPolicy,
        hooks: IHookRunner,
        clock: IReactorTime,
        observer: ISwitchObserver | None = None,
    ) -> None:
        """
        @param observer: told what happens, for metrics; optional.
        """
        self._policy = policy
        self._hooks = hooks
        self._clock = clock
        self._observer = observer or _Unobserved()
        self._maxQueue = config.policy.max_queue
        self._drainTimeout = config.policy.drain_timeout_secs
        self._closing = False
        now = clock.seconds()
        self._models = {m.name: _Model(m, idleSince=now) for m in config.models}
        self._order = config.modelNames
        self.state: State = Idle()
        self.costs = CostTracker()
        self.lastError: str | None = None
        # The model whose backend is up and may serve: the active one, and
        # the old one of a switch until its sleep hook starts.
        self._awake: str | None = None
        self._awakeSince = now
        self._lock = DeferredLock()
        self._arranged: set[str] = set()
        self._target: str | None = None
        self._lastFailure: float | None = None
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
        Stop the periodic scheduler.
        """
        if self._ticker is not None and self._ticker.running:
            self._ticker.stop()
        self._ticker = None

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
        if self._awake == model and not state.draining:
            return succeed(self._grant(state))
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
        return self._enqueue(state)

    def _grant(self, state: _Model) -> Slot:
        state.inFlight += 1
        return Slot(self, state)

    def _release(self, state: _Model) -> None:
        state.inFlight -= 1
        if state.inFlight == 0:
            state.idleSince = self._clock.seconds()
            watchers, state.drainWatchers = state.drainWatchers, []
            for watcher in watchers:
                watcher.callback(None)

    def _enqueue(self, state: _Model) -> Deferred[ISlot]:
        waiter = _Waiter(since=self._clock.seconds())
        waiter.deferred = Deferred(lambda d: self._forget(state, waiter))
        state.waiters.append(waiter)
        timeout = self._policy.requestTimeout
        if timeout is not None:
            waiter.deferred.addTimeout(
                timeout, self._clock, onTimeoutCancel=self._timedOut(state, timeout)
            )
        self._consult(state)
        return waiter.deferred

    def _forget(self, state: _Model, waiter: _Waiter) -> None:
        """
        Remove a waiter that timed out or was cancelled, at once, so it can
        neither keep its model's queue alive nor trigger a switch.
        """
        if waiter in state.waiters:
            state.waiters.remove(waiter)
            self._observer.waited(state.name, self._clock.seconds() - waiter.since)

    def _timedOut(self, state: _Model, timeout: float) -> Any:
        def convert(result: object, timeoutSecs: float) -> Failure:
            self.log.info(
                "{model}: request timed out after {timeout_secs}s waiting",
                event="request_timeout",
                model=state.name,
                timeout_secs=timeout,
            )
            return Failure(RequestTimedOut(state.name, timeout))

        return convert

    def _consult(self, state: _Model) -> None:
        """
        Ask the policy what to do about a request waiting for C{state}.
        """
        if state.name == self._target or state.name in self._arranged:
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

    # -- switching -----------------------------------------------------------

    def _arrange(self, target: str) -> None:
        """
        Queue a switch to C{target} behind any switch under way.
        """
        if target == self._target or target in self._arranged:
            return
        self._arranged.add(target)
        d = self._lock.run(lambda: Deferred.fromCoroutine(self._switchTo(target)))
        d.addErrback(
            lambda f: self.log.failure("switch to {target} crashed", f, target=target)
        )

    def _switchTo(self, target: str) -> Coroutine[Any, Any, None]:
        self._arranged.discard(target)
        return self._switch(self._models[target])

    async def _switch(self, state: _Model) -> None:
        await self._backoff()
        if self._awake == state.name and not state.draining:
            self._releaseWaiters(state)
            return
        if not state.waiters:
            self.log.debug("{model}: switch skipped, nobody waits", model=state.name)
            return
        old = self._models[self._awake] if self._awake is not None else None
        self._target = state.name
        self.state = Switching(old.name if old else None, state.name)
        self.log.info(
            "switching {from} -> {to}",
            event="switch_started",
            to=state.name,
            **{"from": old.name if old else IDLE},
        )
        try:
            await self._cooldown()
            if not state.waiters:
                return self._abandon(old, state)
            await self._drain(old, state)
            if not state.waiters:
                return self._abandon(old, state)
            started = self._clock.seconds()
            await self._sleep(old, state)
            await self._wake(old, state, started)
        finally:
            self._target = None

    def _abandon(self, old: _Model | None, new: _Model) -> None:
        """
        Call off a switch whose waiters all left before the old model was put
        to sleep: the old model goes on serving, including the requests that
        queued for it while it was draining.
        """
        self.log.info("{model}: switch called off, nobody waits", model=new.name)
        if old is None:
            self.state = Idle()
        else:
            old.draining = False
            self.state = Active(old.name)
            self._releaseWaiters(old)

    async def _backoff(self) -> None:
        if self._lastFailure is None:
            return
        remaining = self._lastFailure + FAILURE_BACKOFF_SECS - self._clock.seconds()
        if remaining > 0:
            await deferLater(self._clock, remaining)

    async def _cooldown(self) -> None:
        """
        Keep the old model awake (and serving) for the policy's minimum.
        """
        if self._awake is None:
            return
        awakeFor = self._clock.seconds() - self._awakeSince
        remaining = self._policy.minActiveSecs - awakeFor
        if remaining > 0:
            await deferLater(self._clock, remaining)

    async def _drain(self, old: _Model | None, new: _Model) -> None:
        """
        Stop the old model taking requests and let the policy wait for it.
        """
        if old is None:
            return
        old.draining = True
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
            await self._boundedDrain(wait, old, new)
        self._observer.drained(old.name, new.name, self._clock.seconds() - started)

    async def _boundedDrain(
        self, wait: Deferred[None], old: _Model, new: _Model
    ) -> None:
        """
        Wait for the drain, at most C{drain_timeout_secs}; then switch on
        whatever is still in flight (it will be cut off by the sleep hook).
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
                to=new.name,
                in_flight=old.inFlight,
                timeout_secs=timeout,
            )
        except Exception:
            self.log.failure("policy's drain wait failed; switching on")

    def _drained(self, state: _Model) -> Deferred[None]:
        if state.inFlight == 0:
            return succeed(None)
        watcher: Deferred[None] = Deferred(lambda d: state.drainWatchers.remove(d))
        state.drainWatchers.append(watcher)
        return watcher

    async def _sleep(self, old: _Model | None, new: _Model) -> None:
        if old is None:
            return
        self._awake = None
        self._observer.deactivated(old.name, self._clock.seconds() - self._awakeSince)
        result = await self._runHook(old, "sleep")
        old.draining = False
        if not result.succeeded:
            # wake is idempotent, so a failed sleep does not stop the switch.
            self.log.warn(
                "{model}: sleep hook failed ({error}); switching on",
                event="sleep_hook_failed",
                model=old.name,
                to=new.name,
                error=result.describeFailure(),
            )

    async def _wake(self, old: _Model | None, new: _Model, started: float) -> None:
        result = await self._runHook(new, "wake")
        now = self._clock.seconds()
        fromName = old.name if old else None
        duration = now - started
        self._observer.switched(fromName, new.name, result.succeeded, duration)
        if result.succeeded:
            self.costs.record(fromName, new.name, duration)
            self._awake, self._awakeSince = new.name, now
            new.idleSince = now
            self.state = Active(new.name)
            self.log.info(
                "{model} active (from {from}, {duration_secs:.2f}s)",
                event="model_activated",
                model=new.name,
                duration_secs=duration,
                **{"from": fromName or IDLE},
            )
            self._tellPolicy(SwitchedContext(fromName, new.name, duration))
            self._releaseWaiters(new)
            return
        detail = result.describeFailure()
        self.log.error(
            "{model}: switch failed: {error}",
            event="switch_failed",
            model=new.name,
            error=detail,
            **{"from": fromName or IDLE},
        )
        await self._runHook(new, "sleep")
        self.state = Idle()
        self._lastFailure = self._clock.seconds()
        self.lastError = f"{new.name}: {detail}"
        self._failWaiters(new, SwitchFailed(new.name, detail))

    async def _runHook(self, state: _Model, hook: str) -> HookResult:
        """
        Run a hook; a runner that errs counts as a failed hook, not a crash.
        """
        started = self._clock.seconds()
        try:
            result = await self._hooks.run(state.config, hook)
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

    def _releaseWaiters(self, state: _Model) -> None:
        waiters, state.waiters = state.waiters, []
        now = self._clock.seconds()
        for waiter in waiters:
            self._observer.waited(state.name, now - waiter.since)
            waiter.deferred.callback(self._grant(state))

    def _failWaiters(self, state: _Model, error: Exception) -> None:
        waiters, state.waiters = state.waiters, []
        now = self._clock.seconds()
        for waiter in waiters:
            self._observer.waited(state.name, now - waiter.since)
            waiter.deferred.errback(Failure(error))

    # -- the scheduler -------------------------------------------------------

    def _tick(self) -> None:
        if self._target is not None or self._arranged:
            return
        try:
            choice = self._policy.schedule(self._tickContext())
        except Exception:
            self.log.failure("policy scheduler failed")
            return
        if choice is not None and choice in self._models and choice != self._awake:
            self._arrange(choice)

    # -- liveness and shutdown --------------------------------------------------

    def exclusively(self, work: Callable[[], Coroutine[Any, Any, T]]) -> Deferred[T]:
        """
        Run C{work} when no switch is running, holding off switches until it
        is done (the switch lock). For health checks and adoption.
        """
        return self._lock.run(lambda: Deferred.fromCoroutine(work()))

    @property
    def busy(self) -> bool:
        """
        Whether a switch is running, arranged or waiting for its turn.
        """
        return self._lock.locked or bool(self._arranged) or self._target is not None

    async def runHook(self, model: str, hook: str) -> HookResult:
        """
        Run one of C{model}'s hooks, counted like the switcher's own.
        """
        return await self._runHook(self._models[model], hook)

    def adopt(self, model: str) -> None:
        """
        Take C{model}, found already awake at start-up, as the active model.
        Call only from L{exclusively}, while nothing is awake.
        """
        now = self._clock.seconds()
        self._awake, self._awakeSince = model, now
        self._models[model].idleSince = now
        self.state = Active(model)
        self.log.info(
            "{model} is already awake: adopted", event="model_adopted", model=model
        )
        self._releaseWaiters(self._models[model])

    async def markDead(self, model: str, reason: str) -> None:
        """
        Give up on the active C{model} (its health checks failed): put it to
        sleep to clean up, and go Idle, so the next request wakes it again.
        Call only from L{exclusively}.
        """
        if self._awake != model:
            return
        self.log.error(
            "{model} is dead ({reason}); it will be woken again on demand",
            event="model_dead",
            model=model,
            reason=reason,
        )
        self._awake = None
        self._observer.deactivated(model, self._clock.seconds() - self._awakeSince)
        self._observer.died(model)
        self.state = Idle()
        self.lastError = f"{model}: {reason}"
        await self._runHook(self._models[model], "sleep")

    def shutdown(self, timeoutSecs: float, sleepAwake: bool) -> Deferred[None]:
        """
        Stop for good: refuse new requests, answer every waiting one with
        L{ModelNotReady}, let in-flight requests finish (at most
        C{timeoutSecs}), then, if C{sleepAwake}, put the awake model to sleep.
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
        for model in self._models.values():
            self._failWaiters(
                model, ModelNotReady(model.name, "llmux is shutting down")
            )
        # The lock is taken for good: a switch under way may finish, none
        # may start after shutdown.
        everything: Deferred[Any] = DeferredList(
            [self._drained(model) for model in self._models.values()]
            + [self._lock.acquire()],
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
        if sleepAwake and self._awake is not None:
            await self._runHook(self._models[self._awake], "sleep")
            self._awake = None
            self.state = Idle()

    # -- what policies see ---------------------------------------------------

    def _activeView(self) -> tuple[float, int, float]:
        """
        How long the awake model has been awake, its in-flight count and how
        long it has been idle; zeros when nothing is awake.
        """
        if self._awake is None:
            return 0.0, 0, 0.0
        now = self._clock.seconds()
        state = self._models[self._awake]
        idle = now - state.idleSince if state.inFlight == 0 else 0.0
        return now - self._awakeSince, state.inFlight, idle

    def queueDepths(self) -> dict[str, int]:
        """
        Requests waiting, by model.
        """
        return {name: len(state.waiters) for name, state in self._models.items()}

    def _pendingContext(self, state: _Model) -> PendingContext:
        activeFor, inFlight, idle = self._activeView()
        return PendingContext(
            target=state.name,
            active=self._awake,
            targetQueueDepth=len(state.waiters),
            oldestWaitSecs=self._clock.seconds() - state.waiters[0].since,
            activeInFlight=inFlight,
            activeForSecs=activeFor,
            activeIdleSecs=idle,
            queueDepths=self.queueDepths(),
            switchCostSecs=self.costs.estimate(self._awake, state.name),
            switchingTo=self._target,
            models=self._order,
        )

    def _tickContext(self) -> TickContext:
        activeFor, inFlight, idle = self._activeView()
        now = self._clock.seconds()
        return TickContext(
            active=self._awake,
            activeForSecs=activeFor,
            activeInFlight=inFlight,
            activeIdleSecs=idle,
            queueDepths=self.queueDepths(),
            oldestWaits={
                name: now - state.waiters[0].since
                for name, state in self._models.items()
                if state.waiters
            },
            switchCosts=self.costs.estimatesFrom(self._awake),
            models=self._order,
        )

    # -- introspection -------------------------------------------------------

    def inFlight(self, model: str) -> int:
        """
        Requests in flight on C{model}.
        """
        return self._models[model].inFlight

    def isDraining(self, model: str) -> bool:
        """
        Whether C{model} is being drained for a switch away from it.
        """
        return self._models[model].draining

    def status(self) -> dict[str, Any]:
        """
        A snapshot of the switcher for status pages, as plain JSON-able data.
        """
        now = self._clock.seconds()
        state = self.state
        return {
            "state": state.name,
            "switching": (
                {"from": state.from_ or IDLE, "to": state.to}
                if isinstance(state, Switching)
                else None
            ),
            "active_model": self._awake,
            "active_since": self._awakeSince if self._awake else None,
            "active_for_secs": now - self._awakeSince if self._awake else None,
            "models": {
                name: {
                    "queue_depth": len(model.waiters),
                    "oldest_wait_secs": (
                        now - model.waiters[0].since if model.waiters else None
                    ),
                    "in_flight": model.inFlight,
                    "draining": model.draining,
                }
                for name, model in self._models.items()
            },
            "switch_costs": [
                {"from": source, "to": target, "ema_secs": secs}
                for (source, target), secs in sorted(self.costs.snapshot().items())
            ],
            "policy": dict(self._policy.describe()),
            "last_error": self.lastError,
        }

    @property
    def awake(self) -> str | None:
        """
        The model whose backend is up and may serve, or C{None}.
        """
        return self._awake
