# -*- test-case-name: tests.test_policies -*-
"""
C{fifo}: switch as soon as a request arrives for a model that is not awake.

This is llmux 2.4.0's only policy. It gives the lowest latency to a lone
request and thrashes under interleaved traffic, where every request can pay a
whole switch.
"""

from __future__ import annotations

import attrs
from zope.interface import implementer

from ..config import PolicyConfig
from ..interfaces import Decision, DeferUntil, ISwitchPolicy, PendingContext
from .base import BasePolicy

__all__ = ["FifoPolicy"]


@implementer(ISwitchPolicy)
@attrs.define
class FifoPolicy(BasePolicy):
    """
    Switch now, for every waiting request; switches run in arrival order.
    """

    name = "fifo"

    @classmethod
    def fromConfig(cls, settings: PolicyConfig) -> FifoPolicy:
        cls.checkOwnKeys(settings, ())
        return cls(**cls.commonSettings(settings))

    def onPending(self, context: PendingContext) -> Decision | DeferUntil:
        return Decision.SWITCH_NOW
