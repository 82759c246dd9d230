# -*- test-case-name: tests.test_simulation_engine -*-
"""
The discrete-event simulator: the real L{Switcher} and a real policy plugin,
driven by simulated hooks, backends and arrivals on one
L{twisted.internet.task.Clock}.

Nothing about switching is re-implemented here. The policy is built by name
through the plugin system (L{llmux.policies.buildPolicy}), exactly as
C{llmux --policy NAME} builds it, and the switcher is the server's own
class; the simulation only supplies what the server gets from the outside
world (requests, hook processes, inference servers, time) and watches.

Time moves event by event: the clock jumps straight to the next scheduled
call, so an hour of traffic with 10 s switches takes well under a second.
Arrivals are scheduled one at a time, each scheduling the next, so the
clock's list of pending calls stays short however long the workload is.

With a declared capacity (L{Scenario.capacity}, and each model's
L{Residency}), the switcher is built from the same C{capacity:} table and
model keys as a server's, and the eviction policy by name through the plugin
system (L{llmux.policies.buildEvictionPolicy}), as C{eviction: NAME} builds
it: several models are awake at once, exactly as they would be live.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import pairwise
from types import ModuleType

import attrs
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface import implementer

from ..config import DEFAULT_EVICTION, Config, PolicyConfig, parseConfig
from ..errors import ModelCannotFit, ModelNotReady, RequestTimedOut
from ..interfaces import (
    IEvictionPolicy,
    ISlot,
    ISwitchPolicy,
)
from ..policies import buildEvictionPolicy, buildPolicy
from ..switcher import Switcher, _Unobserved
from .backends import SimulatedBackend
from .hooks import SimulatedHookRunner, SwitchCosts
from .records import REFUSED, TIMEOUT, Evicted, Outcome, Run, Sample, Switched
from .residency import Residency
from .workloads import Request

__all__ = ["DEFAULT_GRACE_SECS", "Scenario", "Simulation", "simulate"]

#: How long a run may go on after the last arrival before it is cut off.
DEFAULT_GRACE_SECS = 3600.0

#: Placeholder hook scripts: the simulated hook runner never runs them.
SIMULATED_HOOK = "simulated"

#: Backend ports in the generated config; never listened on.
FIRST_PORT = 20000


@attrs.frozen
class Scenario:
    """
    Everything about a simulated run except the policy.

    @ivar models: the configured models, in config order (the order
        C{round_robin} visits them in).
    @ivar requests: the workload, sorted by arrival time.
    @ivar costs: what switches cost.
    @ivar concurrency: requests each model's backend serves at once, by
        model; others serve C{defaultConcurrency}.
    @ivar graceSecs: how long the run may go on after the last arrival;
        requests still waiting then are reported as unfinished.
    @ivar capacity: the C{capacity:} table: several models may be awake at
        once within it. C{None}: one model awake at a time.
    @ivar residency: the residency keys of models that set any, by model.
    @ivar eviction: the name of the eviction policy (C{eviction:}).
    """

    models: tuple[str, ...]
    requests: tuple[Request, ...]
    costs: SwitchCosts = SwitchCosts.uniform(10.0)
    defaultConcurrency: int = 1
    concurrency: Mapping[str, int] = attrs.field(factory=dict)
    graceSecs: float = DEFAULT_GRACE_SECS
    capacity: Mapping[str, float] | None = None
    residency: Mapping[str, Residency] = attrs.field(factory=dict)
    eviction: str = DEFAULT_EVICTION

    def __attrs_post_init__(self) -> None:
        """
        @raise ValueError: if the models or requests cannot be simulated.
        @raise llmux.config.ConfigError: if llmux would reject the capacity
            and residency keys in a config file, saying why as it would.
        """
        if not self.models:
            raise ValueError("a scenario needs at least one model")
        if len(set(self.models)) != len(self.models):
            raise ValueError(f"model names repeat: {', '.join(self.models)}")
        unknown = sorted({r.model for r in self.requests} - set(self.models))
        if unknown:
            raise ValueError(
                f"requests for models not in the scenario: {', '.join(unknown)}"
            )
        if any(b.t < a.t for a, b in pairwise(self.requests)):
            raise ValueError("requests must be sorted by arrival time")
        strangers = sorted(set(self.residency) - set(self.models))
        if strangers:
            raise ValueError(
                f"residency for models not in the scenario: {', '.join(strangers)}"
            )
        self.config(PolicyConfig())

    def concurrencyFor(self, model: str) -> int:
        return self.concurrency.get(model, self.defaultConcurrency)

    def residencyOf(self, model: str) -> Residency:
        return self.residency.get(model, Residency())

    def config(self, policy: PolicyConfig) -> Config:
        """
        The llmux configuration the switcher is built from: the scenario's
        models (with placeholder hooks), its capacity and residency keys,
        and the given C{policy:} table.

        The models and the capacity go through the config file's own
        parser, so a simulation accepts exactly what a server would.

        @raise llmux.config.ConfigError: naming the field at fault.
        """
        hooks = {hook: SIMULATED_HOOK for hook in ("wake", "sleep", "alive")}
        models = {
            name: {
                "port": FIRST_PORT + i,
                **hooks,
                **self.residencyOf(name).configKeys(SIMULATED_HOOK),
            }
            for i, name in enumerate(self.models)
        }
        data: dict[str, object] = {"models": models, "eviction": self.eviction}
        if self.capacity is not None:
            data["capacity"] = dict(self.capacity)
        config = parseConfig(data)
        return attrs.evolve(config, policy=policy, source="<simulation>")


@implementer(ILogObserver)
@attrs.define
class _PolicyErrors:
    """
    Keeps the failures llmux logs during a run. The switcher catches what a
    policy raises, logs it and goes on, so without this a broken policy
    would only show as odd numbers.
    """

    messages: list[str] = attrs.field(factory=list)

    def __call__(self, event: LogEvent) -> None:
        failure = event.get("log_failure")
        if not isinstance(failure, Failure):
            return
        if not str(event.get("log_namespace", "")).startswith("llmux."):
            return
        error = type(failure.value).__name__
        self.messages.append(
            f"{formatEvent(event)}: {error}: {failure.getErrorMessage()}"
        )


@attrs.define
class _Observations(_Unobserved):
    """
    What the switcher tells its observer (as it tells a server's metrics)
    that the report counts: the wakes with their measured cost, and the
    models put to sleep, and why.
    """

    clock: Clock
    wakes: list[Switched] = attrs.field(factory=list)
    sleeps: list[Evicted] = attrs.field(factory=list)

    def switched(
        self, from_: str | None, to: str, succeeded: bool, durationSecs: float
    ) -> None:
        self.wakes.append(
            Switched(self.clock.seconds(), from_, to, succeeded, durationSecs)
        )

    def evicted(self, model: str, reason: str) -> None:
        self.sleeps.append(Evicted(self.clock.seconds(), model, reason))


class Simulation:
    """
    One policy, one scenario: the real switcher on a clock of its own.

    @ivar clock: the simulated time.
    @ivar policy: the policy, as the plugin system built it.
    @ivar eviction: the eviction policy, as the plugin system built it.
    @ivar switcher: the real L{Switcher}.
    @ivar hooks: the simulated hook runner the switcher uses.
    @ivar backends: the simulated backend of each model.
    """

    def __init__(
        self,
        scenario: Scenario,
        policyName: str,
        settings: PolicyConfig | None = None,
        plugins: ModuleType | None = None,
        evictionPlugins: ModuleType | None = None,
    ) -> None:
        """
        @param settings: the C{policy:} table; the policy validates its keys.
        @param plugins: the plugin package to find the policy in; by default
            C{twisted.plugins}, as for the server.
        @param evictionPlugins: the plugin package to find the scenario's
            eviction policy in; by default C{twisted.plugins}.
        @raise llmux.policies.UnknownPolicy: if no plugin provides the name
            (or the eviction policy's).
        @raise llmux.config.ConfigError: if the policy rejects its settings.
        """
        settings = PolicyConfig() if settings is None else settings
        self.scenario = scenario
        self.clock = Clock()
        self.policy: ISwitchPolicy = buildPolicy(policyName, settings, plugins)
        self.eviction: IEvictionPolicy = buildEvictionPolicy(
            scenario.eviction, evictionPlugins
        )
        self.hooks = SimulatedHookRunner(self.clock, scenario.costs)
        self._config = scenario.config(settings)
        self._observations = _Observations(self.clock)
        self.switcher = Switcher(
            self._config,
            self.policy,
            self.hooks,
            self.clock,
            self._observations,
            self.eviction,
        )
        self.backends = {
            model: SimulatedBackend(self.clock, model, scenario.concurrencyFor(model))
            for model in scenario.models
        }
        self._outcomes = [Outcome(request) for request in scenario.requests]
        self._pending = len(self._outcomes)
        self._samples: list[Sample] = []
        self._errors = _PolicyErrors()

    def run(self) -> Run:
        """
        Play the whole workload through, until every request is served or
        has failed (or the scenario's grace time after the last arrival is
        over), and return what happened.
        """
        requests = self.scenario.requests
        limit = (requests[-1].t if requests else 0.0) + self.scenario.graceSecs
        globalLogPublisher.addObserver(self._errors)
        try:
            self.switcher.start()
            if any(model.preload for model in self._config.models):
                self.switcher.preload()
            if self._outcomes:
                self.clock.callLater(requests[0].t, self._arrive, 0)
            self._sample()
            while self._pending:
                calls = self.clock.getDelayedCalls()
                nextTime = min((call.getTime() for call in calls), default=limit)
                if nextTime >= limit:
                    # Nothing will serve what still waits before the cut-off
                    # (if ever): let the time pass and stop.
                    self._advanceTo(limit)
                    break
                self._advanceTo(nextTime)
                self._sample()
        finally:
            self.switcher.stop()
            globalLogPublisher.removeObserver(self._errors)
        return Run(
            policy=self.policy.name,
            settings=dict(self.policy.describe()),
            models=self.scenario.models,
            outcomes=tuple(self._outcomes),
            hookRuns=tuple(self.hooks.runs),
            samples=tuple(self._samples),
            end=self.clock.seconds(),
            policyErrors=tuple(self._errors.messages),
            switched=tuple(self._observations.wakes),
            evicted=tuple(self._observations.sleeps),
            capacity=self.scenario.capacity,
        )

    def _advanceTo(self, when: float) -> None:
        """
        Move the clock to C{when}, running everything due by then.

        C{Clock.advance} adds the amount to the current time; a float sum can
        fall one step short of C{when}, so go on until it is reached.
        """
        self.clock.advance(max(0.0, when - self.clock.seconds()))
        while self.clock.seconds() < when:
            self.clock.advance(when - self.clock.seconds())

    # -- requests ------------------------------------------------------------

    def _arrive(self, index: int) -> None:
        requests = self.scenario.requests
        if index + 1 < len(requests):
            delay = requests[index + 1].t - self.clock.seconds()
            self.clock.callLater(max(0.0, delay), self._arrive, index + 1)
        outcome = self._outcomes[index]
        self.switcher.acquire(outcome.request.model).addCallbacks(
            self._granted, self._failed, (outcome,), errbackArgs=(outcome,)
        )

    def _granted(self, slot: ISlot, outcome: Outcome) -> None:
        outcome.granted = self.clock.seconds()
        backend = self.backends[outcome.request.model]
        backend.submit(
            outcome.request.serviceSecs,
            slot,
            lambda: self._started(outcome),
            lambda: self._finished(outcome),
        )

    def _started(self, outcome: Outcome) -> None:
        outcome.started = self.clock.seconds()

    def _finished(self, outcome: Outcome) -> None:
        outcome.finished = self.clock.seconds()
        self._pending -= 1

    def _failed(self, reason: Failure, outcome: Outcome) -> None:
        if reason.check(RequestTimedOut):
            outcome.error = TIMEOUT
        elif reason.check(ModelNotReady, ModelCannotFit):
            outcome.error = REFUSED
        else:
            outcome.error = reason.getErrorMessage()
        self._pending -= 1

    # -- observation ---------------------------------------------------------

    def _sample(self) -> None:
        # The switcher's views are in config order: the scenario's.
        views = self.switcher.views()
        sample = Sample(
            t=self.clock.seconds(),
            awake=tuple(view.name for view in views if view.up),
            switching=self.hooks.running > 0,
            queued=tuple(view.queueDepth for view in views),
            executing=tuple(self.backends[view.name].executing for view in views),
            states=tuple(view.state for view in views),
        )
        if self._samples and self._samples[-1].sameState(sample):
            return
        self._samples.append(sample)


def simulate(
    scenario: Scenario,
    policyName: str,
    settings: PolicyConfig | None = None,
    plugins: ModuleType | None = None,
    evictionPlugins: ModuleType | None = None,
) -> Run:
    """
    Build a L{Simulation} of C{policyName} on C{scenario} and run it.
    """
    return Simulation(scenario, policyName, settings, plugins, evictionPlugins).run()
