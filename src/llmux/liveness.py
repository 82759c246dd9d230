# -*- test-case-name: tests.test_liveness -*-
"""
Putting the C{alive} hook to use (llmux 2.4.0 defined it but never called it).

At start-up, models that are already awake are adopted instead of being
reloaded: restarting llmux must not cost a model load. While models are
awake, their C{alive} hooks run periodically; after several failures in a
row a model is given up, so the next request wakes it again instead of
getting 502s from a dead backend forever.

Adoption runs while no switch may start (L{ISwitcher.exclusively}); health
checks run beside whatever else happens, and a check whose model went to
sleep (or was woken again) while it ran counts for nothing.

Passive health (L{IBackendHealth}): when the proxy finds a backend refusing
or resetting connections, the model is checked at once, and one failed check
is enough to mark it dead, so a crashed backend costs seconds, not
C{alive_interval_secs * alive_failures}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from .config import Config
from .interfaces import IBackendHealth, ISwitcher, ModelState, ModelView
from .logs import observer

__all__ = ["Liveness"]


@implementer(IBackendHealth)
class Liveness:
    """
    Start-up adoption, periodic health checks of the awake models, and the
    checks the proxy asks for (L{suspect}).

    @ivar adopted: fires when adoption is over (C{None} without adoption).
    """

    log = Logger(observer=observer)

    def __init__(
        self, switcher: ISwitcher, config: Config, clock: IReactorTime
    ) -> None:
        self._switcher = switcher
        self._config = config
        self._clock = clock
        # Consecutive failed checks, by model, with when it was woken: a
        # model woken again starts from zero.
        self._failing: dict[str, tuple[float | None, int]] = {}
        self._checker: LoopingCall | None = None
        # Who waits for the check of each suspected model under way.
        self._suspected: dict[str, list[Deferred[bool]]] = {}
        self.adopted: Deferred[None] | None = None

    def start(self) -> None:
        """
        Adopt awake models (if C{adopt_running}) and start the checks (if
        C{alive_interval_secs} is not 0).
        """
        if self._config.adopt_running:
            self.adopted = self._switcher.exclusively(self._adopt)
            self.adopted.addErrback(lambda f: self.log.failure("adoption failed", f))
        self._startChecks()

    def _startChecks(self) -> None:
        interval = self._config.alive_interval_secs
        if interval > 0 and self._checker is None:
            self._checker = LoopingCall(self._check)
            self._checker.clock = self._clock
            self._checker.start(interval, now=False).addErrback(
                lambda f: self.log.failure("health checks stopped", f)
            )

    def reconfigure(self, config: Config) -> None:
        """
        Take a reloaded config: its checks' interval and failure limit from
        now on (adoption happens at start-up only).
        """
        interval = config.alive_interval_secs
        restart = interval != self._config.alive_interval_secs
        self._config = config
        if restart:
            self.stop()
            self._startChecks()

    def stop(self) -> None:
        """
        Stop the periodic checks.
        """
        if self._checker is not None and self._checker.running:
            self._checker.stop()
        self._checker = None

    def _adoptionOrder(self) -> list[str]:
        """
        Pinned models first, then the others, each in config order.
        """
        models = self._config.models
        return [m.name for m in models if m.pin] + [m.name for m in models if not m.pin]

    async def _adopt(self) -> None:
        """
        Ask every model whether it is already up; keep those that fit, and
        put any other that is to sleep (and unload it if it can be: llmux
        counts what it would hold asleep only from its first wake).
        """
        adopted: list[str] = []
        for model in self._adoptionOrder():
            result = await self._switcher.runHook(model, "alive")
            if not result.succeeded:
                continue
            if self._switcher.adopt(model):
                adopted.append(model)
                continue
            self.log.warn(
                "{model} is also awake but does not fit; putting it to sleep"
                " (adopted: {adopted})",
                event="extra_model_awake",
                model=model,
                adopted=", ".join(adopted),
            )
            await self._switcher.runHook(model, "sleep")
            config = self._config.model(model)
            if config is not None and config.unload is not None:
                await self._switcher.runHook(model, "unload")

    def _check(self) -> Deferred[Any] | None:
        """
        One periodic tick: check every awake model's health at once.
        """
        probes = [
            Deferred.fromCoroutine(self._probe(view))
            for view in self._switcher.views()
            if view.state is ModelState.AWAKE
        ]
        if not probes:
            return None
        return DeferredList(probes, consumeErrors=True)

    def _current(self, name: str) -> ModelView | None:
        for view in self._switcher.views():
            if view.name == name:
                return view
        return None

    def _stillAwake(self, view: ModelView) -> bool:
        """
        Whether the model C{view} saw is still awake, and not woken again
        since (a check that ran across a sleep says nothing of it).
        """
        now = self._current(view.name)
        return (
            now is not None
            and now.state is ModelState.AWAKE
            and now.awakeSince == view.awakeSince
        )

    async def _probe(self, view: ModelView) -> None:
        model = view.name
        result = await self._switcher.runHook(model, "alive")
        if not self._stillAwake(view):
            return
        if result.succeeded:
            self._failing[model] = (view.awakeSince, 0)
            return
        since, count = self._failing.get(model, (None, 0))
        failures = count + 1 if since == view.awakeSince else 1
        self._failing[model] = (view.awakeSince, failures)
        limit = self._config.alive_failures
        self.log.warn(
            "{model}: alive hook failed ({failures}/{limit}): {error}",
            event="alive_failed",
            model=model,
            failures=failures,
            limit=limit,
            error=result.describeFailure(),
        )
        if failures >= limit:
            self._failing.pop(model, None)
            reason = f"alive hook failed {limit} time(s): {result.describeFailure()}"
            # Not awaited: its clean-up may take minutes, and the other
            # models' checks go on meanwhile.
            self._switcher.markDead(model, reason)

    def suspect(self, model: str) -> Deferred[bool]:
        """
        See L{IBackendHealth.suspect}. Suspicions of one model while its
        check runs share that check.
        """
        view = self._current(model)
        if view is None or view.state is not ModelState.AWAKE:
            return succeed(False)
        waiter: Deferred[bool] = Deferred()
        waiters = self._suspected.get(model)
        if waiters is None:
            waiters = self._suspected[model] = []
            checking = Deferred.fromCoroutine(self._checkSuspect(view))
            checking.addErrback(self._checkFailed, model)
            checking.addCallback(self._suspicionOver, model)
        waiters.append(waiter)
        return waiter

    async def _checkSuspect(self, view: ModelView) -> bool:
        model = view.name
        result = await self._switcher.runHook(model, "alive")
        if not self._stillAwake(view):
            # Asleep now (not serving), or woken again while the check ran
            # (the check was of the old one): awake is what counts.
            now = self._current(model)
            return now is not None and now.state is ModelState.AWAKE
        if result.succeeded:
            return True
        self._failing.pop(model, None)
        self._switcher.markDead(
            model,
            "its backend refused or dropped a connection and its alive hook"
            f" failed: {result.describeFailure()}",
        )
        return False

    def _checkFailed(self, failure: Failure, model: str) -> bool:
        self.log.failure("checking {model} failed", failure, model=model)
        return False

    def _suspicionOver(self, alive: bool, model: str) -> None:
        for waiter in self._suspected.pop(model, []):
            if not waiter.called:
                waiter.callback(alive)
