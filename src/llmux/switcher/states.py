# -*- test-case-name: tests.test_switcher -*-
"""
The switcher's summary state, as one-model-at-a-time views show it: idle,
switching (a wake under way) or active (the model woken last).
"""

from __future__ import annotations

import attrs

__all__ = ["Active", "Idle", "State", "Switching"]


@attrs.frozen
class Idle:
    """
    No model is awake.
    """

    name = "idle"


@attrs.frozen
class Switching:
    """
    A switch from C{from_} (C{None}: nothing is evicted) to C{to} is under way.
    """

    name = "switching"

    from_: str | None
    to: str


@attrs.frozen
class Active:
    """
    C{model} is awake and serving (the one woken last, when several are).
    """

    name = "active"

    model: str


State = Idle | Switching | Active
