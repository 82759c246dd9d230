# -*- test-case-name: tests.test_switcher -*-
"""
A fake L{IHookRunner} for tests and simulations: no processes, only Deferreds.

Each call is recorded. A call ends when the test says so
(L{FakeHookRunner.finish}), or by itself after a configured duration on the
injected clock, so a whole switch can be played out on a
L{twisted.internet.task.Clock}.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from ..config import ModelConfig
from ..interfaces import HookResult, IHookRunner

__all__ = ["FakeHookRunner", "HookCall"]


@attrs.define(eq=False)
class HookCall:
    """
    One recorded run of a hook, ended by L{FakeHookRunner.finish}.

    @ivar config: the model's config as the hook was run for it (placed,
        when it runs for a placement).
    """

    model: str
    hook: str
    started: float
    deferred: Deferred[HookResult]
    config: ModelConfig | None = None

    @property
    def pending(self) -> bool:
        return not self.deferred.called


@implementer(IHookRunner)
@attrs.define
class FakeHookRunner:
    """
    Records hook runs and ends them on command or after a set duration.

    @ivar clock: the clock for durations and timestamps.
    @ivar durations: seconds a hook takes, by C{(model, hook)} or by C{hook};
        a hook with no duration stays pending until L{finish} is called.
    @ivar exitCodes: exit codes by C{(model, hook)} for hooks that end by
        themselves; 0 when absent.
    """

    clock: IReactorTime
    durations: Mapping[object, float] = attrs.field(factory=dict)
    exitCodes: dict[tuple[str, str], int] = attrs.field(factory=dict)
    calls: list[HookCall] = attrs.field(factory=list)

    def run(self, model: object, hook: str) -> Deferred[HookResult]:
        assert isinstance(model, ModelConfig)
        call = HookCall(model.name, hook, self.clock.seconds(), Deferred(), model)
        self.calls.append(call)
        duration = self.durations.get((model.name, hook), self.durations.get(hook))
        if duration is not None:
            code = self.exitCodes.get((model.name, hook), 0)
            self.clock.callLater(duration, self.finish, call, code)
        return call.deferred

    def finish(self, call: HookCall, exitCode: int = 0, stderr: bytes = b"") -> None:
        """
        End C{call} with C{exitCode}.
        """
        call.deferred.callback(
            HookResult(
                model=call.model,
                hook=call.hook,
                exitCode=exitCode,
                signal=None,
                timedOut=False,
                durationSecs=self.clock.seconds() - call.started,
                stderr=stderr,
            )
        )

    def pending(self) -> list[HookCall]:
        """
        The calls not yet ended, oldest first.
        """
        return [call for call in self.calls if call.pending]

    def finishNext(
        self, model: str, hook: str, exitCode: int = 0, stderr: bytes = b""
    ) -> None:
        """
        End the oldest pending run of C{model}'s C{hook}.

        @raise AssertionError: if there is none.
        """
        for call in self.pending():
            if (call.model, call.hook) == (model, hook):
                self.finish(call, exitCode, stderr)
                return
        raise AssertionError(f"no pending {hook} hook for {model}: {self.log()}")

    def log(self) -> list[tuple[str, str]]:
        """
        Every call so far as C{(model, hook)}, in order.
        """
        return [(call.model, call.hook) for call in self.calls]
