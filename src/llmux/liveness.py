# -*- test-case-name: tests.test_liveness -*-
"""
Putting the C{alive} hook to use (llmux 2.4.0 defined it but never called it).

At start-up, a model that is already awake is adopted instead of being
reloaded: restarting llmux must not cost a model load. While a model is
active, its C{alive} hook runs periodically; after several failures in a row
the model is given up, so the next request wakes it again instead of getting
502s from a dead backend forever.

Both run under the switcher's lock (L{Switcher.exclusively}), so they never
overlap a switch.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from .config import Config
from .logs import observer
from .switcher import Active, Switcher

__all__ = ["Liveness"]


class Liveness:
    """
    Start-up adoption and periodic health checks of the active model.
    """

    log = Logger(observer=observer)

    def __init__(self, switcher: Switcher, config: Config, clock: IReactorTime) -> None:
        self._switcher = switcher
        self._config = config
        self._clock = clock
        # Consecutive failed checks of the model checked last.
        self._failing: tuple[str | None, int] = (None, 0)
        self._checker: LoopingCall | None = None
        self.adopted: Deferred[None] | None = None

    def start(self) -> None:
        """
        Adopt an awake model (if C{adopt_running}) and start the checks (if
        C{alive_interval_secs} is not 0).
        """
        if self._config.adopt_running:
            self.adopted = self._switcher.exclusively(self._adopt)
            self.adopted.addErrback(lambda f: self.log.failure("adoption failed", f))
        interval = self._config.alive_interval_secs
        if interval > 0 and self._checker is None:
            self._checker = LoopingCall(self._check)
            self._checker.clock = self._clock
            self._checker.start(interval, now=False).addErrback(
                lambda f: self.log.failure("health checks stopped", f)
            )

    def stop(self) -> None:
        """
        Stop the periodic checks.
        """
        if self._checker is not None and self._checker.running:
            self._checker.stop()
        self._checker = None

    async def _adopt(self) -> None:
        """
        Ask every model, in config order, whether it is already up; keep the
        first that is, and put any other that is to sleep (one GPU, one model).
        """
        adopted = None
        for model in self._config.modelNames:
            result = await self._switcher.runHook(model, "alive")
            if not result.succeeded:
                continue
            if adopted is None:
                adopted = model
                self._switcher.adopt(model)
            else:
                self.log.warn(
                    "{model} is also awake; putting it to sleep"
                    " ({adopted} was adopted)",
                    event="extra_model_awake",
                    model=model,
                    adopted=adopted,
                )
                await self._switcher.runHook(model, "sleep")

    def _check(self) -> Deferred[None] | None:
        """
        One periodic tick: check the active model's health, unless a switch
        is under way or nothing is active.
        """
        if self._switcher.busy or not isinstance(self._switcher.state, Active):
            return None
        return self._switcher.exclusively(self._probe)

    async def _probe(self) -> None:
        state = self._switcher.state
        if not isinstance(state, Active):
            return
        model = state.model
        result = await self._switcher.runHook(model, "alive")
        if result.succeeded:
            self._failing = (model, 0)
            return
        previous, count = self._failing
        failures = count + 1 if previous == model else 1
        self._failing = (model, failures)
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
            self._failing = (None, 0)
            reason = f"alive hook failed {limit} time(s): {result.describeFailure()}"
            await self._switcher.markDead(model, reason)
