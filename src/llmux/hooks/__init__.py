# -*- test-case-name: tests.test_hooks -*-
"""
Running a model's C{wake}, C{sleep}, C{alive} and C{unload} hooks, whatever
form the config gives them (L{llmux.hookconfig}):

  - a shell script: L{llmux.hooks.shell};
  - a list of HTTP steps: L{llmux.hooks.http};
  - an action on the model's own process: L{llmux.hooks.process}.

However a hook runs, it ends as one L{HookResult}, logged and counted the
same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
from treq.client import HTTPClient
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger, LogLevel
from twisted.web.client import Agent
from zope.interface import implementer

from llmux.config import ModelConfig
from llmux.hookconfig import Hook, Managed
from llmux.interfaces import HookResult, IHookRunner
from llmux.logs import observer
from llmux.web.client import BackendEndpoints, QuietConnectionPool

from .http import runSteps
from .process import ManagedProcesses
from .shell import runScript

__all__ = ["HOOKS", "HookRunner", "ManagedProcesses", "hookClient"]

#: The hooks a model has (C{unload} is optional).
HOOKS = ("wake", "sleep", "alive", "unload")
#: The timeout each hook runs under: C{unload} frees memory, as C{sleep}
#: does, and shares its limit.
TIMEOUT_OF = {"wake": "wake", "sleep": "sleep", "alive": "alive", "unload": "sleep"}


def hookClient(reactor: Any) -> HTTPClient:
    """
    The HTTP client of hook steps and readiness checks: no pooled
    connections, so a check always dials the server as it is now, and a
    backend llmux stops keeps no connection of llmux's.
    """
    pool = QuietConnectionPool(reactor, persistent=False)
    return HTTPClient(
        Agent.usingEndpointFactory(reactor, BackendEndpoints(reactor), pool=pool)
    )


@implementer(IHookRunner)
@attrs.define
class HookRunner:
    """
    Runs any model's hooks.

    Shell hooks run as C{sh -c <script>} in the model's directory, in their
    own process group, with llmux's environment plus C{LLMUX_MODEL} (the
    model name is passed only as that value, never inserted into a command
    line); their stdin is closed and the last C{outputLimit} bytes of their
    stdout and stderr are kept. Past its timeout, a hook's process group
    gets SIGTERM, then SIGKILL after C{killGraceSecs}, and the hook counts
    as failed. HTTP steps and managed processes run within the same
    timeouts.

    A model with a C{command} needs its process for any hook to mean
    anything: its C{wake} starts the process when it is not running (a
    server just started is awake), its C{alive} fails while it is not, and
    its C{sleep} and C{unload} have nothing to do then. A running server
    whose own C{wake} fails is stopped, so the next wake starts it afresh.

    @ivar reactor: an L{IReactorProcess} and L{IReactorTime} provider.
    @ivar timeouts: seconds each hook (C{"wake"}, C{"sleep"}, C{"alive"}) may
        run; C{None} or a missing key means no limit. C{"unload"} runs under
        the C{"sleep"} limit.
    @ivar processes: the models' own processes.
    @ivar client: makes the calls of HTTP steps.
    """

    log = Logger(observer=observer)

    #: Typed loosely: it must provide both IReactorProcess and IReactorTime.
    reactor: Any
    timeouts: Mapping[str, float | None] = attrs.field(factory=dict)
    killGraceSecs: float = 5.0
    outputLimit: int = 64 * 1024
    client: HTTPClient = attrs.field(
        default=attrs.Factory(lambda self: hookClient(self.reactor), takes_self=True)
    )
    processes: ManagedProcesses = attrs.field(
        default=attrs.Factory(
            lambda self: ManagedProcesses(self.reactor, self.client), takes_self=True
        )
    )

    # IHookRunner says "object" to keep interfaces.py free of config imports.
    def run(  # type: ignore[override]
        self, model: ModelConfig, hook: str
    ) -> Deferred[HookResult]:
        """
        Run C{hook} of C{model}.

        @return: a L{Deferred} that fires with a L{HookResult} however the hook
            ended, including when it could not be started.
        @raise ValueError: if C{hook} is not a hook name, or the model has
            no such hook.
        """
        if hook not in HOOKS:
            raise ValueError(f"unknown hook {hook!r} (expected one of {HOOKS})")
        spec: Hook | None = getattr(model, hook)
        if spec is None:
            raise ValueError(f"{model.name} has no {hook} hook")
        timeout = self.timeouts.get(TIMEOUT_OF[hook])
        return self._dispatch(model, hook, spec, timeout).addCallback(self._logged)

    def _dispatch(
        self, model: ModelConfig, hook: str, spec: Hook, timeout: float | None
    ) -> Deferred[HookResult]:
        """
        Run C{spec}, after the rules of a model with its own server (see the
        class docstring).
        """
        if model.process is not None and not self.processes.running(model.name):
            if hook == "wake":
                spec = Managed.START
            elif hook == "alive":
                error = "backend process is not running"
                return succeed(HookResult.ranNoProcess(model.name, hook, 0.0, error))
            else:
                # Nothing to put to sleep or unload: the server is gone.
                return succeed(HookResult.ranNoProcess(model.name, hook, 0.0))
        if model.process is not None and hook == "wake" and spec is not Managed.START:
            return Deferred.fromCoroutine(self._wakeRunning(model, spec, timeout))
        return self._dispatchStep(model, hook, spec, timeout)

    def _dispatchStep(
        self, model: ModelConfig, hook: str, spec: Hook, timeout: float | None
    ) -> Deferred[HookResult]:
        """
        Run C{spec}, whatever its form.
        """
        if spec is Managed.START:
            return self.processes.start(model, hook, timeout)
        if spec is Managed.STOP:
            return self.processes.stop(model, hook)
        if spec is Managed.READY:
            return self.processes.check(model, hook, timeout)
        if isinstance(spec, str):
            return runScript(
                self.reactor,
                model,
                hook,
                spec,
                timeout,
                self.killGraceSecs,
                self.outputLimit,
            )
        return runSteps(self.client, self.reactor, model, hook, spec, timeout)

    async def _wakeRunning(
        self, model: ModelConfig, spec: Hook, timeout: float | None
    ) -> HookResult:
        """
        Wake a model whose own server runs (asleep, say in vLLM's sleep
        mode). If that fails, the server is stopped: the next wake starts
        a fresh one instead of asking a broken server again.
        """
        result = await self._dispatchStep(model, "wake", spec, timeout)
        if not result.succeeded:
            await self.processes.stop(model, "wake")
        return result

    def _logged(self, result: HookResult) -> HookResult:
        self._logResult(result)
        return result

    def _logResult(self, result: HookResult) -> None:
        """
        Emit C{hook_completed} or C{hook_failed}, and the output tails at
        debug level.
        """
        stdout = result.stdout.decode("utf-8", "replace")
        stderr = result.stderr.decode("utf-8", "replace")
        if stdout or stderr:
            self.log.debug(
                "{model}: {hook} hook stdout:\n{stdout}\nstderr:\n{stderr}",
                event="hook_output",
                model=result.model,
                hook=result.hook,
                stdout=stdout,
                stderr=stderr,
            )
        if result.succeeded:
            # A healthy model's alive hook succeeds every alive_interval_secs:
            # worth seeing with --verbose, not in every log.
            self.log.emit(
                LogLevel.debug if result.hook == "alive" else LogLevel.info,
                "{model}: {hook} hook completed in {duration_secs:.2f}s",
                event="hook_completed",
                model=result.model,
                hook=result.hook,
                duration_secs=result.durationSecs,
            )
            return
        # An alive hook that exits non-zero has answered "not alive", which
        # is routine for a sleeping model; only its timeouts are trouble.
        answered = result.hook == "alive" and not result.timedOut
        self.log.emit(
            LogLevel.info if answered else LogLevel.warn,
            "{model}: {hook} hook failed after {duration_secs:.2f}s: {reason}",
            event="hook_failed",
            model=result.model,
            hook=result.hook,
            exit_code=result.exitCode,
            signal=result.signal,
            timed_out=result.timedOut,
            duration_secs=result.durationSecs,
            stderr=stderr,
            reason=result.describeFailure(),
        )
