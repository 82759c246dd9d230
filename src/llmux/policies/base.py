# -*- test-case-name: tests.test_policies -*-
"""
What every policy shares: the common settings of the C{policy:} table, the
drain-before-switch behaviour, and the plugin factory.

A third-party policy may build on these or implement L{ISwitchPolicy} and
L{IPolicyFactory} from scratch; llmux only relies on the interfaces.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.plugin import IPlugin
from twisted.python.reflect import namedAny
from zope.interface import implementer

from ..config import POLICY_KEYS, PolicyConfig, checkKeys
from ..interfaces import (
    IPolicyFactory,
    ISwitchPolicy,
    SwitchContext,
    SwitchedContext,
    TickContext,
)

__all__ = ["BasePolicy", "PolicyFactory"]


@attrs.define
class BasePolicy:
    """
    The settings and behaviour common to the built-in policies.

    Subclasses set C{name} and implement C{onPending}; the rest has sensible
    defaults: drain before switching if the config says so, no scheduler.
    """

    name = "base"
    schedulerInterval: float | None = None

    requestTimeout: float | None = None
    minActiveSecs: float = 0.0
    drainBeforeSwitch: bool = True

    @staticmethod
    def commonSettings(settings: PolicyConfig) -> dict[str, Any]:
        """
        The keyword arguments for the common settings read from C{settings}.
        """
        return {
            "requestTimeout": settings.request_timeout_secs,
            "minActiveSecs": settings.min_active_secs,
            "drainBeforeSwitch": settings.drain_before_switch,
        }

    @staticmethod
    def checkOwnKeys(settings: PolicyConfig, ownKeys: tuple[str, ...]) -> None:
        """
        Reject keys of the C{policy:} table that neither llmux nor this policy
        knows, naming all that are known.
        """
        checkKeys(settings.extra, POLICY_KEYS + ownKeys, "policy")

    def beforeSwitch(self, context: SwitchContext) -> Deferred[None] | None:
        return context.waitForDrain() if self.drainBeforeSwitch else None

    def afterSwitch(self, context: SwitchedContext) -> None:
        pass

    def schedule(self, context: TickContext) -> str | None:
        return None

    def describe(self) -> Mapping[str, object]:
        return {
            "name": self.name,
            "request_timeout_secs": self.requestTimeout,
            "min_active_secs": self.minActiveSecs,
            "drain_before_switch": self.drainBeforeSwitch,
        }


@implementer(IPlugin, IPolicyFactory)
@attrs.frozen
class PolicyFactory:
    """
    A policy as a plugin: its name, a one-line description and the dotted
    name of a callable that builds the policy from a L{PolicyConfig}.

    The builder is imported only when the policy is selected, so plugin files
    stay cheap to load (twistd and the plugin cache import all of them).
    """

    name: str
    description: str
    builder: str

    def buildPolicy(self, settings: object) -> ISwitchPolicy:
        if not isinstance(settings, PolicyConfig):
            raise TypeError(f"expected a PolicyConfig, not {settings!r}")
        policy: ISwitchPolicy = namedAny(self.builder)(settings)
        return policy
