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
  - L{IHookRunner} runs a model's C{wake}/C{sleep}/C{alive} hook, so the switcher
    can be driven by real C{sh} processes, by a fake in tests, or by a
    simulation.

Keep these import paths stable: Twisted's plugin cache pickles interfaces by
reference.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping

import attrs
from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

__all__ = [
    "Decision",
    "DeferUntil",
    "HookResult",
    "IHookRunner",
    "IPolicyFactory",
    "ISlot",
    "ISwitchObserver",
    "ISwitchPolicy",
    "ISwitcher",
    "PendingContext",
    "SwitchContext",
    "SwitchedContext",
    "TickContext",
]


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


@attrs.frozen
class SwitchContext:
    """
    What a policy sees just before a switch puts the old model to sleep.

    @ivar from_: the model being switched away from (C{None}: a cold start).
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
    """

    from_: str | None
    to: str
    durationSecs: float


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
    """

    active: str | None
    activeForSecs: float
    activeInFlight: int
    activeIdleSecs: float
    queueDepths: Mapping[str, int]
    oldestWaits: Mapping[str, float]
    switchCosts: Mapping[str, float]
    models: tuple[str, ...]


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
class HookResult:
    """
    How one run of a hook ended.

    @ivar model: the model the hook ran for.
    @ivar hook: C{"wake"}, C{"sleep"} or C{"alive"}.
    @ivar exitCode: the exit status, or C{None} if a signal ended it.
    @ivar signal: the signal that ended it, or C{None}.
    @ivar timedOut: whether llmux killed it for running too long.
    @ivar durationSecs: wall time from spawn to the end of its output.
    @ivar stdout: the last bytes it wrote to standard output (bounded).
    @ivar stderr: the last bytes it wrote to standard error (bounded).
    """

    model: str
    hook: str
    exitCode: int | None
    signal: int | None
    timedOut: bool
    durationSecs: float
    stdout: bytes = b""
    stderr: bytes = b""

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
    Runs the C{wake}, C{sleep} and C{alive} hooks of configured models.
    """

    def run(model: object, hook: str) -> Deferred[HookResult]:
        """
        Run one hook of one model.

        @param model: the L{llmux.config.ModelConfig} of the model.
        @param hook: C{"wake"}, C{"sleep"} or C{"alive"}.
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


class ISwitcher(Interface):
    """
    What the HTTP side asks of the switcher: a slot on an awake model.
    """

    def acquire(model: str) -> Deferred[ISlot]:
        """
        Make C{model} the awake model if needed and hold an in-flight slot on it.

        @return: a L{Deferred} firing with an L{ISlot} once C{model} is awake;
            or failing with L{llmux.errors.ModelNotFound},
            L{llmux.errors.RequestTimedOut}, L{llmux.errors.SwitchFailed} or
            L{llmux.errors.ModelNotReady}. Cancelling it (the client went
            away) removes the request from its queue at once.
        """

    def status() -> dict[str, object]:
        """
        A snapshot of the switcher as plain JSON-able data, for status pages.
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
