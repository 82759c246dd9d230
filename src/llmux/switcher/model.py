# -*- test-case-name: tests.test_residency -*-
"""
One model as the switcher keeps it: its state, what it holds, its requests.

A model's state is one field, L{Resident.state}, and changes only through
L{Resident.enter}, which checks the move against L{MOVES}. What a model
holds follows from its state (L{Resident.holdingIn}):

  - C{unloaded}: nothing;
  - C{asleep}, C{failed}, C{unloading}: its C{asleep_resources};
  - C{waking}, C{awake}, C{draining}, C{sleeping}: its placement and its
    C{asleep_resources}.

So a model grows its holding only when a wake starts (reserved before the
C{wake} hook runs), and gives back its placement only when its C{sleep} hook
has finished, and its C{asleep_resources} only when C{unload} has. The
memory a model needs to go to sleep is never given away while it is awake,
so a model can always be put to sleep.
"""

from __future__ import annotations

import math
from collections import deque

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall

from ..config import ModelConfig
from ..interfaces import ISlot, ModelState
from ..resources import Amounts, minus

__all__ = ["MOVES", "UP", "RESTING", "Resident", "Waiter"]

ASLEEP = ModelState.ASLEEP
WAKING = ModelState.WAKING
AWAKE = ModelState.AWAKE
DRAINING = ModelState.DRAINING
SLEEPING = ModelState.SLEEPING
UNLOADED = ModelState.UNLOADED
UNLOADING = ModelState.UNLOADING
FAILED = ModelState.FAILED

#: The moves a model's state may make. Adoption (asleep or unloaded to
#: awake, without a wake) is the one move outside this table.
MOVES: dict[ModelState, frozenset[ModelState]] = {
    UNLOADED: frozenset({WAKING}),
    ASLEEP: frozenset({WAKING, UNLOADING}),
    FAILED: frozenset({WAKING, UNLOADING}),
    WAKING: frozenset({AWAKE, SLEEPING}),
    AWAKE: frozenset({DRAINING, SLEEPING}),
    DRAINING: frozenset({AWAKE, SLEEPING}),
    # Straight to unloaded: a dead model, cleaned up by its unload hook.
    SLEEPING: frozenset({ASLEEP, FAILED, UNLOADED}),
    UNLOADING: frozenset({UNLOADED}),
}

#: States in which the backend is up and serves what it has in flight.
UP = frozenset({AWAKE, DRAINING})
#: States with no hook running, from which a model can be woken.
RESTING = frozenset({ASLEEP, UNLOADED, FAILED})
#: States that hold the model's placement.
_PLACED = frozenset({WAKING, AWAKE, DRAINING, SLEEPING})


@attrs.define(eq=False)
class Waiter:
    """
    A request waiting for its model.
    """

    since: float
    deferred: Deferred[ISlot] = attrs.field(init=False)


@attrs.define(eq=False)
class Resident:
    """
    The switcher's book-keeping for one configured model.

    @ivar placements: what each placement holds besides C{asleep_resources}.
    @ivar placement: the placement it holds, while it holds one.
    @ivar limit: C{max_in_flight}, or infinity.
    @ivar idleSince: when its in-flight count last fell to 0 (or it woke).
    @ivar awakeSince: when it last became awake.
    @ivar timer: its pending idle-TTL or unload-after call, if any.
    @ivar settled: fired, and emptied, when its current hook ends.
    """

    config: ModelConfig
    placements: tuple[Amounts, ...]
    state: ModelState
    idleSince: float
    placement: int | None = None
    inFlight: int = 0
    awakeSince: float = 0.0
    limit: float = math.inf
    pinned: bool = False
    waiters: deque[Waiter] = attrs.field(factory=deque)
    drainWatchers: list[Deferred[None]] = attrs.field(factory=list)
    settled: list[Deferred[None]] = attrs.field(factory=list)
    timer: IDelayedCall | None = None

    @classmethod
    def build(cls, config: ModelConfig, capacity: Amounts, now: float) -> Resident:
        """
        A model as it starts: unloaded if it has an C{unload} hook (it holds
        nothing), else asleep (it holds its C{asleep_resources} for good).
        """
        return cls(
            config=config,
            placements=config.placementsWithin(capacity),
            state=UNLOADED if config.unload is not None else ASLEEP,
            idleSince=now,
            limit=_limitOf(config),
            pinned=config.pin,
        )

    def takeSettings(self, config: ModelConfig) -> None:
        """
        Take a reloaded config that runs the model as before (same port,
        hooks and resources): its other settings apply from now on.
        """
        if config.pin != self.config.pin:
            # The file's pin changed: it wins over one set by the admin API.
            self.pinned = config.pin
        self.config = config
        self.limit = _limitOf(config)

    @property
    def name(self) -> str:
        return self.config.name

    def enter(self, state: ModelState) -> None:
        """
        Move to C{state}.

        @raise ValueError: if the move is not in L{MOVES} (a bug).
        """
        if state not in MOVES[self.state]:
            raise ValueError(f"{self.name}: cannot go from {self.state} to {state}")
        self.state = state

    def upHolding(self, placement: int) -> dict[str, float]:
        """
        What it holds while up in C{placement}.
        """
        return self.config.upHolding(self.placements[placement])

    def holdingIn(self, state: ModelState) -> dict[str, float]:
        """
        What it holds in C{state}, with its current placement.
        """
        if state in _PLACED:
            assert self.placement is not None
            return self.upHolding(self.placement)
        if state is UNLOADED:
            return {}
        return dict(self.config.asleep_resources)

    def needs(self, holding: Amounts) -> tuple[dict[str, float], ...]:
        """
        For each placement, what waking it there adds to C{holding} (what
        it holds now).
        """
        return tuple(
            {p: u for p, u in minus(self.upHolding(i), holding).items() if u > 0}
            for i in range(len(self.placements))
        )

    def untilSettled(self) -> Deferred[None]:
        """
        A L{Deferred} that fires when the hook it runs now ends.
        """
        d: Deferred[None] = Deferred()
        self.settled.append(d)
        return d

    def fireSettled(self) -> None:
        waiting, self.settled = self.settled, []
        for d in waiting:
            d.callback(None)

    def cancelTimer(self) -> None:
        timer, self.timer = self.timer, None
        if timer is not None and timer.active():
            timer.cancel()


def _limitOf(config: ModelConfig) -> float:
    """
    How many requests it serves at once: C{max_in_flight}, or no limit.
    """
    return math.inf if config.max_in_flight is None else config.max_in_flight
