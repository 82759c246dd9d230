# -*- test-case-name: tests.test_policies -*-
"""
The interfaces of llmux, declared once, and the plain data they exchange.

Three seams keep the switching logic free of HTTP, processes and wall time:

  - L{ISwitchPolicy} decides I{when} and I{to what} to switch; the switcher
    carries the decision out. Policies see read-only context objects defined
    here and never touch the switcher, the reactor or the network.
  - L{IPolicyFactory} is what the Twisted plugin system finds in
    C{twisted/plugins/}: a cheap, stateless object that builds one policy per
    running service from the C{policy:} table of the config.
  - L{IEvictionPolicy} chooses which models make room when the one a request
    wants does not fit in the declared capacity; L{IEvictionPolicyFactory}
    is how the plugin system finds one (C{eviction:} in the config).
  - L{IHookRunner} runs a model's C{wake}/C{sleep}/C{alive}/C{unload} hook, so
    the switcher can be driven by real C{sh} processes, by a fake in tests,
    or by a simulation.
  - L{ISwitcher} is everything the rest of llmux (the web layer, liveness,
    metrics, the simulator) may ask of the switcher; L{ModelView} is how it
    shows one model.

Keep these import paths stable: Twisted's plugin cache pickles interfaces by
reference.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

__all__ = [
    "Blocker",
    "Candidate",
    "Decision",
    "DeferUntil",
    "Eviction",
    "EvictionContext",
    "HookResult",
    "IEvictionPolicy",
    "IEvictionPolicyFactory",
    "IHookRunner",
    "IPolicyFactory",
    "ISlot",
    "ISwitchObserver",
    "ISwitchPolicy",
    "ISwitcher",
    "ModelState",
    "ModelView",
    "PendingContext",
    "PoolView",
    "SwitchContext",
    "SwitchedContext",
    "TickContext",
]


class ModelState(enum.Enum):
    """
    The states a model can be in, as the status, metrics and logs show them.
    """

    #: Not serving; holds its C{asleep_resources}.
    ASLEEP = "asleep"
    #: Its C{wake} hook runs; holds its placement.
    WAKING = "waking"
    #: Serving.
    AWAKE = "awake"
    #: Being put to sleep: finishes what it has in flight, takes nothing new.
    DRAINING = "draining"
    #: Its C{sleep} hook runs.
    SLEEPING = "sleeping"
    #: Holds nothing: never woken, or unloaded.
    UNLOADED = "unloaded"
    #: Its C{unload} hook runs.
    UNLOADING = "unloading"
    #: Its last wake failed; the next request tries again.
    FAILED = "failed"


class Decision(enum.Enum):
    """
    What a policy answers about a request waiting for a model that is not awake.
    """

    #: Arrange a switch to the request's model now (switches are serialized,
    #: so "now" means "next").
    SWITCH_NOW = "switch_now"
    #: Arrange nothing: a switch is already arranged, or the policy's
    #: scheduler (L{ISwitchPolicy.schedule}) will pick the moment.
    SKIP = "skip"


@attrs.frozen
class DeferUntil:
    """
    A policy decision: switch to the request's model once C{when} fires.

    The switch is still re-checked when it runs, so if every waiter has gone
    by then, nothing happens.
    """

    when: Deferred[object]


@attrs.frozen
class PendingContext:
    """
    What a policy sees when a request starts waiting for a model that is not
    awake.

    @ivar target: the model the request wants.
    @ivar active: the model awake now, or C{None} when nothing is.
    @ivar targetQueueDepth: requests waiting for C{target}, this one included.
    @ivar oldestWaitSecs: how long the oldest of them has waited.
    @ivar activeInFlight: requests the active model is serving.
    @ivar activeForSecs: how long the active model has been awake.
    @ivar activeIdleSecs: how long the active model has had nothing in flight
        (0 while it is serving).
    @ivar queueDepths: requests waiting, for every configured model.
    @ivar switchCostSecs: the estimated cost of switching from C{active} to
        C{target}, or C{None} if no such switch has been observed.
    @ivar switchingTo: the target of the switch under way, or C{None}.
    @ivar models: every configured model, in config order.
    @ivar awake: every model awake now (serving), in config order.
    @ivar victims: the models the eviction policy proposes to put to sleep
        (or unload) to make room for C{target}, the first of them being
        C{active}; empty when none is needed, or none can be proposed yet
        (the models in the way are waking or already being evicted).
    @ivar victimsInFlight: requests in flight on each of C{victims}.

    Without a capacity table one model is awake at a time: C{active} is it,
    and it is the only victim.
    """

    target: str
    active: str | None
    targetQueueDepth: int
    oldestWaitSecs: float
    activeInFlight: int
    activeForSecs: float
    activeIdleSecs: float
    queueDepths: Mapping[str, int]
    switchCostSecs: float | None
    switchingTo: str | None
    models: tuple[str, ...]
    awake: tuple[str, ...] = ()
    victims: tuple[str, ...] = ()
    victimsInFlight: Mapping[str, int] = attrs.field(factory=dict)


@attrs.frozen
class SwitchContext:
    """
    What a policy sees just before a switch puts the old model to sleep.

    @ivar from_: the model being switched away from (C{None}: a cold start).
        When several models make room, each is drained after its own
        C{beforeSwitch}.
    @ivar to: the model being switched to.
    @ivar waitForDrain: returns a L{Deferred} that fires once the old model has
        no requests in flight (at once if there is no old model).
    """

    from_: str | None
    to: str
    waitForDrain: Callable[[], Deferred[None]]


@attrs.frozen
class SwitchedContext:
    """
    What a policy sees after a successful switch.

    @ivar durationSecs: the measured cost of the switch: the time from the
        start of the old model's C{sleep} hook to the end of the new model's
        C{wake} hook.
    @ivar victims: every model put to sleep or unloaded to make room (the
        first is C{from_}).
    """

    from_: str | None
    to: str
    durationSecs: float
    victims: tuple[str, ...] = ()


@attrs.frozen
class TickContext:
    """
    What a policy's periodic scheduler sees.

    @ivar active: the model awake now, or C{None}.
    @ivar activeForSecs: how long it has been awake.
    @ivar activeInFlight: requests it is serving.
    @ivar activeIdleSecs: how long it has had nothing in flight.
    @ivar queueDepths: requests waiting, for every configured model.
    @ivar oldestWaits: age of the oldest waiting request of every model that
        has one.
    @ivar switchCosts: estimated cost of switching from C{active} to each model
        for which such a switch has been observed.
    @ivar models: every configured model, in config order.
    @ivar awake: every model awake now, in config order.
    @ivar blockedBy: for each waiting model that cannot be woken without
        making room, the victims the eviction policy proposes.
    @ivar inFlight: requests in flight, for every configured model.

    With several models awake, C{active} is the first proposed victim of the
    model that has waited longest, so a policy written for one awake model
    weighs the switch that model needs.
    """

    active: str | None
    activeForSecs: float
    activeInFlight: int
    activeIdleSecs: float
    queueDepths: Mapping[str, int]
    oldestWaits: Mapping[str, float]
    switchCosts: Mapping[str, float]
    models: tuple[str, ...]
    awake: tuple[str, ...] = ()
    blockedBy: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict)
    inFlight: Mapping[str, int] = attrs.field(factory=dict)


class ISwitchPolicy(Interface):
    """
    Decides when, and to which model, llmux switches.

    One instance serves one running switcher; it may keep state. Its methods
    are called from the reactor thread and must not block.
    """

    name = Attribute("str: the name that selects this policy (C{--policy NAME}).")
    requestTimeout = Attribute(
        "float or None: the longest a request waits for its model; None waits"
        " without limit."
    )
    minActiveSecs = Attribute(
        "float: the least time a model stays awake before it may be switched away."
    )
    schedulerInterval = Attribute(
        "float or None: seconds between calls to schedule(); None never calls it."
    )

    def onPending(context: PendingContext) -> Decision | DeferUntil:
        """
        A request started waiting for a model that is not awake: decide.
        """

    def beforeSwitch(context: SwitchContext) -> Deferred[None] | None:
        """
        A switch is about to put C{context.from_} to sleep; the old model no
        longer takes new requests. Return a L{Deferred} to hold the switch
        until it fires (typically C{context.waitForDrain()}), or C{None}.
        """

    def afterSwitch(context: SwitchedContext) -> None:
        """
        A switch succeeded.
        """

    def schedule(context: TickContext) -> str | None:
        """
        The periodic scheduler tick: return a model to switch to, or C{None}.
        Only called while no switch is in progress or arranged.
        """

    def describe() -> Mapping[str, object]:
        """
        The policy's effective settings, for status pages and logs.
        """


class IPolicyFactory(Interface):
    """
    A switch policy as the Twisted plugin system finds it.

    Providers live at module level in a C{twisted/plugins/*.py} file and also
    provide L{twisted.plugin.IPlugin}.
    """

    name = Attribute("str: unique policy name, e.g. C{round_robin}.")
    description = Attribute("str: one line for C{llmux --list-policies}.")

    def buildPolicy(settings: object) -> ISwitchPolicy:
        """
        Build a fresh policy for one running service.

        @param settings: the L{llmux.config.PolicyConfig} read from the
            C{policy:} table. The factory validates the policy-specific keys
            in C{settings.extra} and raises L{llmux.config.ConfigError} naming
            the field on a bad or unknown one.
        """


@attrs.frozen
class Candidate:
    """
    A model an eviction may put to sleep (if it is awake) or unload (if it
    is asleep), as an eviction policy sees it.

    @ivar state: C{"awake"} or C{"asleep"}.
    @ivar holds: what it holds now, by pool.
    @ivar frees: what evicting it gives back, by pool.
    @ivar inFlight: requests it is serving (a busy victim drains first).
    @ivar queueDepth: requests waiting for it.
    @ivar idleSecs: how long it has had nothing in flight (0 while busy).
    @ivar lastUsed: clock time of its last use: the end of its last request,
        or its wake if it has served none since.
    @ivar wakeCostSecs: the moving average of its measured wakes, or C{None}
        before the first.
    """

    name: str
    state: str
    holds: Mapping[str, float]
    frees: Mapping[str, float]
    inFlight: int
    queueDepth: int
    idleSecs: float
    lastUsed: float
    wakeCostSecs: float | None


@attrs.frozen
class EvictionContext:
    """
    What an eviction policy sees when a model does not fit.

    @ivar target: the model to make room for.
    @ivar needs: for each of its placements, in order, what it must add to
        what it holds now.
    @ivar free: what is free now (less what switches under way have set
        aside), by pool.
    @ivar capacity: the declared capacity, by pool.
    @ivar candidates: the models that may be evicted (not pinned, not
        waking, not already being evicted), in config order.
    """

    target: str
    needs: tuple[Mapping[str, float], ...]
    free: Mapping[str, float]
    capacity: Mapping[str, float]
    candidates: tuple[Candidate, ...]

    def enough(self, placement: int, victims: Iterable[str]) -> bool:
        """
        Whether evicting C{victims} makes room for C{placement}.
        """
        byName = {c.name: c for c in self.candidates}
        room = dict(self.free)
        for name in victims:
            for pool, units in byName[name].frees.items():
                room[pool] = room.get(pool, 0.0) + units
        need = self.needs[placement]
        return all(units <= room.get(pool, 0.0) + 1e-9 for pool, units in need.items())


@attrs.frozen
class Eviction:
    """
    An eviction policy's choice: the placement to wake the target in and the
    models to evict for it. The first is reported as the switch's C{from}
    (in metrics, logs and the cost estimates).
    """

    placement: int
    victims: tuple[str, ...]


class IEvictionPolicy(Interface):
    """
    Chooses the victims when a model does not fit beside the others.

    Whether and when the eviction happens is still the switch policy's
    decision; this one only says who would make room. Called from the
    reactor thread; must not block.
    """

    name = Attribute("str: the name that selects this policy (C{eviction:}).")

    def chooseEviction(context: EvictionContext) -> Eviction | None:
        """
        Pick a placement of C{context.target} and the candidates to evict so
        that it fits (see L{EvictionContext.enough}), or C{None} if no
        choice of candidates makes room.
        """

    def describe() -> Mapping[str, object]:
        """
        The policy's settings, for status pages.
        """


class IEvictionPolicyFactory(Interface):
    """
    An eviction policy as the Twisted plugin system finds it: providers
    live at module level in a C{twisted/plugins/*.py} file and also provide
    L{twisted.plugin.IPlugin}.
    """

    name = Attribute("str: unique eviction policy name, e.g. C{lru}.")
    description = Attribute("str: one line for C{llmux --list-policies}.")

    def buildEvictionPolicy() -> IEvictionPolicy:
        """
        Build a fresh eviction policy for one running service.
        """


@attrs.frozen
class HookResult:
    """
    How one run of a hook ended.

    @ivar model: the model the hook ran for.
    @ivar hook: C{"wake"}, C{"sleep"}, C{"alive"} or C{"unload"}.
    @ivar exitCode: the exit status, or C{None} if a signal ended it.
    @ivar signal: the signal that ended it, or C{None}.
    @ivar timedOut: whether llmux killed it for running too long.
    @ivar durationSecs: wall time from spawn to the end of its output.
    @ivar stdout: the last bytes it wrote to standard output (bounded).
    @ivar stderr: the last bytes it wrote to standard error (bounded).
    @ivar error: why a hook that is not a script failed (an HTTP step, a
        managed process), in one line; empty otherwise.
    """

    model: str
    hook: str
    exitCode: int | None
    signal: int | None
    timedOut: bool
    durationSecs: float
    stdout: bytes = b""
    stderr: bytes = b""
    error: str = ""

    @classmethod
    def ranNoProcess(
        cls,
        model: str,
        hook: str,
        durationSecs: float,
        error: str = "",
        timedOut: bool = False,
    ) -> HookResult:
        """
        The result of a hook that is not a script (HTTP steps, an action on
        a managed process): exit 0 if it succeeded, 1 with C{error} if not.
        """
        return cls(
            model=model,
            hook=hook,
            exitCode=1 if error else 0,
            signal=None,
            timedOut=timedOut,
            durationSecs=durationSecs,
            error=error,
        )

    @property
    def succeeded(self) -> bool:
        """
        Whether the hook exited 0 on its own.
        """
        return self.exitCode == 0 and not self.timedOut

    def describeFailure(self) -> str:
        """
        One line saying why the hook failed, with the tail of its stderr.
        """
        if self.error:
            if self.timedOut:
                return f"timed out after {self.durationSecs:.1f}s: {self.error}"
            return self.error
        if self.timedOut:
            what = f"timed out after {self.durationSecs:.1f}s"
        elif self.signal is not None:
            what = f"killed by signal {self.signal}"
        else:
            what = f"exit code {self.exitCode}"
        detail = self.stderr.decode("utf-8", "replace").strip()
        if detail:
            lastLine = detail.splitlines()[-1]
            what = f"{what}: {lastLine}"
        return what


class IHookRunner(Interface):
    """
    Runs the C{wake}, C{sleep}, C{alive} and C{unload} hooks of configured
    models.
    """

    def run(model: object, hook: str) -> Deferred[HookResult]:
        """
        Run one hook of one model.

        @param model: the L{llmux.config.ModelConfig} of the model, placed
            (L{llmux.config.ModelConfig.placed}) when it runs for a
            placement.
        @param hook: C{"wake"}, C{"sleep"}, C{"alive"} or C{"unload"}.
        @return: a L{Deferred} that fires with a L{HookResult} however the hook
            ended (a non-zero exit is a result, not an error).
        """


class ISlot(Interface):
    """
    An in-flight slot on an awake model: while any slot is held, the model is
    not put to sleep (when the policy drains before switching).
    """

    model = Attribute("str: the model this slot is on.")

    def release() -> None:
        """
        Give the slot back. Safe to call more than once; only the first call
        counts.
        """


@attrs.frozen
class Blocker:
    """
    A model that must drain, sleep or finish waking before a waiting model
    can be woken, and why.
    """

    model: str
    reason: str


@attrs.frozen
class ModelView:
    """
    One model as the switcher shows it: a snapshot, for status pages,
    metrics and health checks.

    @ivar placement: the index of the placement it holds, or C{None}.
    @ivar holds: what it holds of each declared pool (nothing without a
        capacity table).
    @ivar awakeSince: clock time it last became awake, while it is up
        (awake or draining); else C{None}.
    @ivar idleExpiresInSecs: seconds until its C{idle_ttl_secs} puts it to
        sleep, while that clock runs; else C{None}.
    """

    name: str
    state: ModelState
    placement: int | None
    holds: Mapping[str, float]
    pinned: bool
    inFlight: int
    queueDepth: int
    oldestWaitSecs: float | None
    awakeSince: float | None
    idleExpiresInSecs: float | None

    @property
    def up(self) -> bool:
        """
        Whether its backend is up and serving what it has in flight.
        """
        return self.state in (ModelState.AWAKE, ModelState.DRAINING)


@attrs.frozen
class PoolView:
    """
    One pool of the declared capacity and how much of it models hold.
    """

    name: str
    capacity: float
    used: float


class ISwitcher(Interface):
    """
    Everything the rest of llmux asks of the switcher: slots on awake models
    for the web layer, snapshots for status and metrics, hooks and adoption
    for liveness, and its life cycle for the service.
    """

    state = Attribute(
        "A summary for one-model-at-a-time views: Idle, Switching(from_, to)"
        " for the switch under way, or Active(model) for the model woken last."
    )
    costs = Attribute("The CostTracker of observed switches and wakes.")
    lastError = Attribute("str or None: the last failed switch or death.")

    def acquire(model: str) -> Deferred[ISlot]:
        """
        Make C{model} awake if needed and hold an in-flight slot on it.

        @return: a L{Deferred} firing with an L{ISlot} once C{model} is awake;
            or failing with L{llmux.errors.ModelNotFound},
            L{llmux.errors.RequestTimedOut}, L{llmux.errors.SwitchFailed},
            L{llmux.errors.ModelNotReady} or L{llmux.errors.ModelCannotFit}.
            Cancelling it (the client went away) removes the request from
            its queue at once.
        """

    def status() -> dict[str, object]:
        """
        A snapshot of the switcher as plain JSON-able data, for status pages.
        """

    def views() -> tuple[ModelView, ...]:
        """
        Every configured model, in config order. Cheap: read from the books.
        """

    def blockers(model: str) -> tuple[Blocker, ...]:
        """
        What keeps the requests waiting for C{model} waiting: the models that
        must drain, sleep or finish waking first, and why (empty when none
        waits). May ask the eviction policy who it would evict.
        """

    def pools() -> tuple[PoolView, ...]:
        """
        The declared capacity and its use, in config order; empty without a
        capacity table.
        """

    def start() -> None:
        """
        Start the policy's scheduler and the model timers.
        """

    def stop() -> None:
        """
        Stop every timer the switcher started.
        """

    def preload() -> Deferred[None]:
        """
        Wake every C{preload: true} model that fits without evicting
        anything, in config order, once adoption (if queued first with
        L{exclusively}) is over.
        """

    def shutdown(timeoutSecs: float, sleepAwake: bool) -> Deferred[None]:
        """
        Refuse new requests, answer the waiting ones, let those in flight
        finish (at most C{timeoutSecs}); then, if C{sleepAwake}, put every
        awake model to sleep.
        """

    def exclusively(work: Callable[[], Any]) -> Deferred[Any]:
        """
        Run the coroutine function C{work} once no switch is under way, and
        start none until it is done (adoption at start-up).
        """

    def runHook(model: str, hook: str) -> Deferred[HookResult]:
        """
        Run one of C{model}'s hooks, counted like the switcher's own.
        """

    def adopt(model: str) -> bool:
        """
        Take C{model}, found already awake at start-up, as awake, in its
        first placement that fits. Call only from L{exclusively}.

        @return: whether it fit; if not, nothing changed.
        """

    def reconfigure(
        config: object, policy: ISwitchPolicy, eviction: IEvictionPolicy
    ) -> Deferred[dict[str, list[str]]]:
        """
        Take a reloaded L{llmux.config.Config} (same capacity table), with
        the switch and eviction policies built for it, once no switch runs
        (none starts meanwhile). Models removed or whose port, hooks or
        resources changed are put to sleep with their old hooks (drained
        first if up; unloaded if they can be); waiters of removed models get
        L{llmux.errors.ModelNotFound}; added models can be used at once;
        other models are not touched, beyond their settings.

        @return: fires with the names C{added}, C{removed}, C{changed} and
            C{unchanged}; fails with C{ValueError} (nothing changed) if the
            capacity table differs.
        """

    def sleepModel(model: str) -> Deferred[ModelState]:
        """
        Put C{model} to sleep now (the admin API): no new request is served
        from it, those in flight finish (within C{drain_timeout_secs}), then
        its C{sleep} hook runs. Requests waiting for it wake it again after.
        No switch starts meanwhile.

        @return: fires with its state once done (C{asleep}, or C{failed}).
        """

    def unloadModel(model: str) -> Deferred[ModelState]:
        """
        Put C{model} to sleep as L{sleepModel} does, then run its C{unload}
        hook.

        @return: fires with its state once done; fails with
            L{llmux.errors.NoUnloadHook} if it has no C{unload} hook.
        """

    def pin(model: str, pinned: bool) -> None:
        """
        Pin C{model} (it is never evicted to make room for another) or
        unpin it, until llmux restarts or a reload changes its C{pin}.

        @raise llmux.errors.CannotPin: if the pinned models could then not
            all be awake at once.
        """

    def markDead(model: str, reason: str) -> Deferred[None]:
        """
        Give up on the awake C{model}: it stops serving at once, its
        C{unload} hook (if it has one, then it ends C{unloaded}) or else its
        C{sleep} hook runs to clean up, and the next request wakes it again.
        """


class IBackendHealth(Interface):
    """
    Passive health (SPEC section 10): what the proxy tells about backends
    that fail under it.
    """

    def suspect(model: str) -> Deferred[bool]:
        """
        A connection to C{model}'s backend was refused or reset before it
        answered: check the model at once (its C{alive} hook), and if it is
        dead, mark it so (L{ISwitcher.markDead}), so the next request wakes
        it instead of failing.

        @return: fires with whether the model is still awake and answering:
            C{False} if it was found dead, or was not awake. Cancelling it
            leaves the check running for others.
        """


class ISwitchObserver(Interface):
    """
    Told what happens inside the switcher, for counting: metrics, or the
    report of a simulation. Called synchronously from the switcher; must not
    raise or block.

    C{from_} is C{None} for a cold start (nothing was awake).
    """

    def switched(
        from_: str | None, to: str, succeeded: bool, durationSecs: float
    ) -> None:
        """
        A switch ended, with the time from the old model's C{sleep} hook to
        the end of the new model's C{wake} hook.
        """

    def drained(from_: str, to: str, durationSecs: float) -> None:
        """
        The old model of a switch stopped taking requests and drained.
        """

    def deactivated(model: str, activeSecs: float) -> None:
        """
        An awake model stopped serving after C{activeSecs} awake.
        """

    def waited(model: str, waitSecs: float) -> None:
        """
        A request left its model's queue (served, failed or gone) after
        waiting C{waitSecs}.
        """

    def hookRan(result: HookResult) -> None:
        """
        A hook ended.
        """

    def died(model: str) -> None:
        """
        The awake C{model} failed its health checks and was given up.
        """

    def evicted(model: str, reason: str) -> None:
        """
        C{model} was put to sleep or unloaded: to make room (C{capacity}),
        after its idle time (C{idle_ttl}), by an operator (C{admin}), because
        it died (C{dead}) or at shutdown (C{shutdown}).
        """
