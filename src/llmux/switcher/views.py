# -*- test-case-name: tests.test_residency -*-
"""
What the switcher shows: status documents, model views and the contexts
its policies see.

All of it is read from the switcher's books, never stored beside them, so
it cannot drift from the truth. L{SwitcherViews} is a mixin of
L{llmux.switcher.switcher.Switcher}: the orchestration lives there, what it
reports lives here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ..cost import IDLE, CostTracker
from ..interfaces import (
    Blocker,
    IEvictionPolicy,
    ISwitchPolicy,
    ModelState,
    ModelView,
    PendingContext,
    PoolView,
    TickContext,
)
from ..resources import shortfall
from .ledger import Ledger
from .model import AWAKE, DRAINING, UP, WAKING, Resident
from .planning import Plan, Victim, candidates, choose, firstFit, pinnedBlockers
from .states import Active, Idle, State, Switching

__all__ = ["SwitcherViews"]


class SwitcherViews:
    """
    The read-only side of the switcher.
    """

    _models: dict[str, Resident]
    _order: tuple[str, ...]
    _ledger: Ledger
    _declared: bool
    _plans: list[Plan]
    _targets: Mapping[str, Plan]
    _victims: Mapping[str, Plan]
    _chores: set[str]
    _clock: IReactorTime
    _policy: ISwitchPolicy
    _eviction: IEvictionPolicy
    costs: CostTracker
    lastError: str | None
    log: Logger

    def _needs(self, state: Resident) -> tuple[dict[str, float], ...]:
        return state.needs(self._ledger.holding(state.name))

    def _free(self, excluding: Plan | None = None) -> dict[str, float]:
        """
        What is free, less what plans under way (but C{excluding}) set aside.
        """
        return self._ledger.free(
            p.setAside(self._ledger) for p in self._plans if p is not excluding
        )

    def _propose(self, state: Resident) -> tuple[int, tuple[Victim, ...]] | None:
        """
        The eviction policy's proposal to make room for C{state}, checked.
        """
        found = candidates(
            state,
            self._models.values(),
            self._ledger,
            [*self._targets, *self._victims, *self._chores],
            self._clock.seconds(),
            self.costs,
        )
        try:
            return choose(
                self._eviction,
                state,
                self._models,
                self._needs(state),
                self._free(),
                self._ledger.capacity,
                found,
            )
        except Exception:
            self.log.failure("eviction policy failed; evicting nothing")
            return None

    # -- what policies see ---------------------------------------------------

    def _up(self) -> tuple[str, ...]:
        return tuple(name for name in self._order if self._models[name].state in UP)

    def _fallbackActive(self) -> str | None:
        """
        The model a one-model policy should see as active when no eviction
        is proposed: the up model woken last.
        """
        up = [self._models[name] for name in self._up()]
        if not up:
            return None
        return max(up, key=lambda model: model.awakeSince).name

    def _activeView(self, active: str | None) -> tuple[float, int, float]:
        """
        How long C{active} has been awake, its in-flight count and how long
        it has been idle; zeros for C{None}.
        """
        if active is None:
            return 0.0, 0, 0.0
        now = self._clock.seconds()
        state = self._models[active]
        idle = now - state.idleSince if state.inFlight == 0 else 0.0
        return now - state.awakeSince, state.inFlight, idle

    def _switchingTo(self) -> str | None:
        return self._plans[-1].target.name if self._plans else None

    def queueDepths(self) -> dict[str, int]:
        """
        Requests waiting, by model.
        """
        return {name: len(state.waiters) for name, state in self._models.items()}

    def _victimsFor(self, state: Resident) -> tuple[str, ...]:
        if state.state in UP or state.state is WAKING:
            return ()
        if self._declared and firstFit(self._needs(state), self._free()) is not None:
            return ()
        proposal = self._propose(state)
        return tuple(v.resident.name for v in proposal[1]) if proposal else ()

    def _pendingContext(self, state: Resident) -> PendingContext:
        victims = self._victimsFor(state)
        active = victims[0] if victims else self._fallbackActive()
        activeFor, inFlight, idle = self._activeView(active)
        return PendingContext(
            target=state.name,
            active=active,
            targetQueueDepth=len(state.waiters),
            oldestWaitSecs=self._clock.seconds() - state.waiters[0].since,
            activeInFlight=inFlight,
            activeForSecs=activeFor,
            activeIdleSecs=idle,
            queueDepths=self.queueDepths(),
            switchCostSecs=self.costs.estimate(active, state.name),
            switchingTo=self._switchingTo(),
            models=self._order,
            awake=self._up(),
            victims=victims,
            victimsInFlight={v: self._models[v].inFlight for v in victims},
        )

    def _tickContext(self) -> TickContext:
        now = self._clock.seconds()
        waiting = sorted(
            (m for m in self._models.values() if m.waiters and m.state is not AWAKE),
            key=lambda m: m.waiters[0].since,
        )
        blockedBy = {m.name: self._victimsFor(m) for m in waiting}
        first = next((v for v in blockedBy.values() if v), ())
        active = first[0] if first else self._fallbackActive()
        activeFor, inFlight, idle = self._activeView(active)
        return TickContext(
            active=active,
            activeForSecs=activeFor,
            activeInFlight=inFlight,
            activeIdleSecs=idle,
            queueDepths=self.queueDepths(),
            oldestWaits={
                name: now - state.waiters[0].since
                for name, state in self._models.items()
                if state.waiters
            },
            switchCosts=self.costs.estimatesFrom(active),
            models=self._order,
            awake=self._up(),
            blockedBy={k: v for k, v in blockedBy.items() if v},
            inFlight={name: m.inFlight for name, m in self._models.items()},
        )

    # -- introspection -------------------------------------------------------

    @property
    def state(self) -> State:
        """
        See L{ISwitcher.state}.
        """
        if self._plans:
            plan = self._plans[-1]
            return Switching(plan.primary, plan.target.name)
        active = self._fallbackActive()
        return Active(active) if active is not None else Idle()

    @property
    def awake(self) -> str | None:
        """
        The up model woken last, or C{None}.
        """
        return self._fallbackActive()

    def inFlight(self, model: str) -> int:
        """
        Requests in flight on C{model}.
        """
        return self._models[model].inFlight

    def isDraining(self, model: str) -> bool:
        """
        Whether C{model} is being drained to make room.
        """
        return self._models[model].state is DRAINING

    def stateOf(self, model: str) -> ModelState:
        """
        The state of C{model}.
        """
        return self._models[model].state

    def pools(self) -> tuple[PoolView, ...]:
        """
        See L{ISwitcher.pools}.
        """
        if not self._declared:
            return ()
        used = self._ledger.used()
        return tuple(
            PoolView(pool, units, used.get(pool, 0.0))
            for pool, units in self._ledger.capacity.items()
        )

    def views(self) -> tuple[ModelView, ...]:
        """
        See L{ISwitcher.views}.
        """
        return tuple(self._view(self._models[name]) for name in self._order)

    def _view(self, state: Resident) -> ModelView:
        now = self._clock.seconds()
        timer = state.timer
        expires = None
        if timer is not None and state.state is AWAKE:
            expires = max(0.0, timer.getTime() - now)
        return ModelView(
            name=state.name,
            state=state.state,
            placement=state.placement,
            holds=dict(self._ledger.holding(state.name)) if self._declared else {},
            pinned=state.pinned,
            inFlight=state.inFlight,
            queueDepth=len(state.waiters),
            oldestWaitSecs=now - state.waiters[0].since if state.waiters else None,
            awakeSince=state.awakeSince if state.state in UP else None,
            idleExpiresInSecs=expires,
        )

    def blockers(self, model: str) -> tuple[Blocker, ...]:
        """
        See L{ISwitcher.blockers}.
        """
        state = self._models[model]
        if not state.waiters:
            return ()
        if state.state is AWAKE:
            return (Blocker(state.name, f"max_in_flight ({state.inFlight} in flight)"),)
        if state.state is WAKING:
            return ()
        plan = self._targets.get(state.name)
        if plan is not None:
            return tuple(
                Blocker(v.resident.name, self._describe(v.resident))
                for v in plan.victims
                if not v.done
            )
        evicting = self._victims.get(state.name)
        if evicting is not None:
            why = f"{self._describe(state)} to make room for {evicting.target.name}"
            return (Blocker(state.name, why),)
        if state.name in self._chores:
            return (Blocker(state.name, self._describe(state)),)
        pinned = pinnedBlockers(state, self._models.values(), self._ledger)
        if pinned:
            return tuple(Blocker(name, "pinned") for name in pinned)
        victims = self._victimsFor(state)
        if victims:
            why = "to be evicted when the policy decides"
            return tuple(Blocker(name, why) for name in victims)
        return self._inTheWay(state)

    def _inTheWay(self, state: Resident) -> tuple[Blocker, ...]:
        """
        When no eviction can be proposed (the models in the way are waking,
        going to sleep or making room for another): the models holding what
        C{state} lacks, and what they are doing.
        """
        free = self._free()
        short = {pool for need in self._needs(state) for pool in shortfall(need, free)}
        return tuple(
            Blocker(model.name, self._describe(model))
            for model in self._models.values()
            if model is not state and short & set(self._ledger.holding(model.name))
        )

    def _describe(self, model: Resident) -> str:
        if model.state is DRAINING:
            return f"draining ({model.inFlight} in flight)"
        if model.state is AWAKE and model.name in self._victims:
            return "awake until its min_active_secs"
        return model.state.value

    def status(self) -> dict[str, Any]:
        """
        A snapshot of the switcher for status pages, as plain JSON-able data.
        """
        now = self._clock.seconds()
        state = self.state
        active = self.awake
        views = self.views()
        return {
            "state": state.name,
            "switching": (
                {"from": state.from_ or IDLE, "to": state.to}
                if isinstance(state, Switching)
                else None
            ),
            "active_model": active,
            "active_since": self._models[active].awakeSince if active else None,
            "active_for_secs": (
                now - self._models[active].awakeSince if active else None
            ),
            "awake": [v.name for v in views if v.up],
            "capacity": dict(self._ledger.capacity) if self._declared else None,
            "used": (
                {pool.name: pool.used for pool in self.pools()}
                if self._declared
                else None
            ),
            "models": {
                view.name: _describeView(view, self.blockers(view.name))
                for view in views
            },
            "switch_costs": [
                {"from": source, "to": target, "ema_secs": secs}
                for (source, target), secs in sorted(self.costs.snapshot().items())
            ],
            "policy": dict(self._policy.describe()),
            "eviction": dict(self._eviction.describe()),
            "last_error": self.lastError,
        }


def _describeView(view: ModelView, blockers: tuple[Blocker, ...]) -> dict[str, Any]:
    """
    One model's entry in the status document.
    """
    return {
        "queue_depth": view.queueDepth,
        "oldest_wait_secs": view.oldestWaitSecs,
        "in_flight": view.inFlight,
        "draining": view.state is DRAINING,
        "state": view.state.value,
        "placement": view.placement,
        "holds": dict(view.holds),
        "pinned": view.pinned,
        "idle_expires_in_secs": view.idleExpiresInSecs,
        "blocked_by": [{"model": b.model, "reason": b.reason} for b in blockers],
    }
