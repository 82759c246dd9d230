# -*- test-case-name: tests.test_residency -*-
"""
Planning a wake: where the model goes, and who makes room for it.

A L{Plan} is a target, one of its placements, and the victims that must go
to sleep (or be unloaded) first. While it runs, a plan sets aside what its
target will take from the free pools (L{Plan.setAside}): everything its
target needs beyond what its victims will give back. So capacity a victim
gives back goes to the target, never to a wake that started meanwhile, and
a plan that can start can always finish.

Everything here is arithmetic over the switcher's records; nothing runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import attrs

from ..cost import CostTracker
from ..interfaces import Candidate, Eviction, EvictionContext, IEvictionPolicy
from ..resources import Amounts, fits, minus, plus, shortfall
from .ledger import Ledger
from .model import AWAKE, RESTING, UNLOADED, Resident

__all__ = ["Plan", "Victim", "candidates", "choose", "pinnedBlockers"]


@attrs.define(eq=False)
class Victim:
    """
    A model a plan puts to sleep (if it is awake) and, if C{unload}, unloads.

    @ivar done: whether it has made its room; from then on it is a model
        like any other (it may even be woken again elsewhere).
    """

    resident: Resident
    unload: bool
    done: bool = False

    def holdingAfter(self) -> Amounts:
        """
        What it will hold once it has made room.
        """
        return {} if self.unload else self.resident.config.asleep_resources


@attrs.define(eq=False)
class Plan:
    """
    A wake under way, with the evictions it needs first.

    @ivar decided: whether the switch policy decided it (a switch), rather
        than it fitting by itself (an admission) or being a preload.
    @ivar reason: C{"request"} (its waiters want it; with none left it is
        called off) or C{"preload"}.
    @ivar sleepStarted: when the last victim to start its C{sleep} (or
        C{unload}) hook started it: the start of the switch's measured
        duration, so another victim's drain meanwhile is not counted as
        what the switch costs.
    """

    target: Resident
    placement: int
    victims: tuple[Victim, ...]
    decided: bool
    reason: str = "request"
    sleepStarted: float | None = None

    @property
    def primary(self) -> str | None:
        """
        The switch's C{from}: its first victim, or C{None}.
        """
        return self.victims[0].resident.name if self.victims else None

    @property
    def wanted(self) -> bool:
        """
        Whether the wake is still wanted: a preload always is; a request's
        wake is while requests wait for it.
        """
        return self.reason != "request" or bool(self.target.waiters)

    def setAside(self, ledger: Ledger) -> dict[str, float]:
        """
        What the target still needs from the free pools: its need beyond
        what it holds, less what its victims have yet to give back.
        """
        target = self.target
        if target.state in RESTING:
            need: Amounts = minus(
                target.upHolding(self.placement), ledger.holding(target.name)
            )
        else:
            need = {}
        coming = plus(
            *(
                minus(ledger.holding(v.resident.name), v.holdingAfter())
                for v in self.victims
                if not v.done
            )
        )
        return {pool: gap for pool, gap in minus(need, coming).items() if gap > 0}


def candidates(
    target: Resident,
    residents: Iterable[Resident],
    ledger: Ledger,
    claimed: Iterable[str],
    now: float,
    costs: CostTracker,
) -> tuple[Candidate, ...]:
    """
    The models that may be evicted for C{target}: not pinned, not claimed by
    a plan under way, and either awake (they can sleep) or resting with
    something an C{unload} hook can give back.
    """
    taken = set(claimed)
    found = []
    for model in residents:
        if model is target or model.pinned or model.name in taken:
            continue
        holds = ledger.holding(model.name)
        unloadable = model.config.unload is not None
        if model.state is AWAKE:
            keeps = {} if unloadable else model.config.asleep_resources
            state = "awake"
        elif model.state in RESTING and model.state is not UNLOADED and unloadable:
            keeps = {}
            state = "asleep"
        else:
            continue
        frees = {p: u for p, u in minus(holds, keeps).items() if u > 0}
        if not frees:
            continue
        found.append(
            Candidate(
                name=model.name,
                state=state,
                holds=dict(holds),
                frees=frees,
                inFlight=model.inFlight,
                queueDepth=len(model.waiters),
                idleSecs=now - model.idleSince if model.inFlight == 0 else 0.0,
                lastUsed=model.idleSince,
                wakeCostSecs=costs.wakeEstimate(model.name),
            )
        )
    return tuple(found)


def firstFit(needs: Sequence[Amounts], free: Amounts) -> int | None:
    """
    The first placement whose need fits in C{free}, or C{None}.
    """
    for index, need in enumerate(needs):
        if fits(need, free):
            return index
    return None


def choose(
    policy: IEvictionPolicy,
    target: Resident,
    residents: Mapping[str, Resident],
    needs: tuple[dict[str, float], ...],
    free: Mapping[str, float],
    capacity: Mapping[str, float],
    found: tuple[Candidate, ...],
) -> tuple[int, tuple[Victim, ...]] | None:
    """
    Ask C{policy} who makes room for C{target}, check that its choice does,
    and work out what each victim must do: sleep if awake, unload if asleep,
    and also unload an awake victim while its C{asleep_resources} are what
    is still short.

    @return: the placement and the victims, or C{None} if the policy found
        no choice (or made one that does not make room).
    """
    if not found:
        return None
    context = EvictionContext(
        target=target.name, needs=needs, free=free, capacity=capacity, candidates=found
    )
    choice = policy.chooseEviction(context)
    if not isinstance(choice, Eviction) or not _valid(choice, context):
        return None
    byName = {c.name: c for c in found}
    room: Amounts = free
    unloads = set()
    for name in choice.victims:
        candidate = byName[name]
        if candidate.state == "asleep":
            unloads.add(name)
            room = plus(room, candidate.frees)
        else:
            keeps = residents[name].config.asleep_resources
            room = plus(room, minus(candidate.holds, keeps))
    need = needs[choice.placement]
    for name in choice.victims:
        model = residents[name]
        if name in unloads or model.config.unload is None:
            continue
        if shortfall(need, room):
            room = plus(room, model.config.asleep_resources)
            unloads.add(name)
    return choice.placement, tuple(
        Victim(residents[name], name in unloads) for name in choice.victims
    )


def _valid(choice: Eviction, context: EvictionContext) -> bool:
    names = {c.name for c in context.candidates}
    return (
        0 <= choice.placement < len(context.needs)
        and len(set(choice.victims)) == len(choice.victims)
        and set(choice.victims) <= names
        and context.enough(choice.placement, choice.victims)
    )


def pinnedBlockers(
    target: Resident, residents: Iterable[Resident], ledger: Ledger
) -> tuple[str, ...]:
    """
    The pinned models in the way when C{target} could only fit by evicting
    them; empty when evicting unpinned models could make room.

    What no eviction can free: what pinned models hold, and the
    C{asleep_resources} of models without an C{unload} hook.
    """
    pinned: dict[str, Amounts] = {}
    fixed: dict[str, float] = {}
    for model in residents:
        if model is target:
            continue
        if model.pinned:
            holding = ledger.holding(model.name)
            pinned[model.name] = holding
            fixed = plus(fixed, holding)
        elif model.config.unload is None and model.state is not UNLOADED:
            fixed = plus(fixed, model.config.asleep_resources)
    room = minus(ledger.capacity, fixed)
    if any(fits(target.upHolding(i), room) for i in range(len(target.placements))):
        return ()
    short = set().union(
        *(shortfall(target.upHolding(i), room) for i in range(len(target.placements)))
    )
    return tuple(
        name
        for name, holding in pinned.items()
        if any(holding.get(pool, 0) > 0 for pool in short)
    )
