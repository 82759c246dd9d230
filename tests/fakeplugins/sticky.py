"""
A test policy plugin: never switches on its own.
"""

from __future__ import annotations

import attrs
from zope.interface import implementer

from llmux.config import PolicyConfig
from llmux.interfaces import Decision, ISwitchPolicy, PendingContext
from llmux.policies.base import BasePolicy, PolicyFactory


@implementer(ISwitchPolicy)
@attrs.define
class StickyPolicy(BasePolicy):
    name = "sticky"

    @classmethod
    def fromConfig(cls, settings: PolicyConfig) -> StickyPolicy:
        cls.checkOwnKeys(settings, ())
        return cls(**cls.commonSettings(settings))

    def onPending(self, context: PendingContext) -> Decision:
        return Decision.SKIP


sticky = PolicyFactory(
    "sticky", "Never switch.", "tests.fakeplugins.sticky.StickyPolicy.fromConfig"
)
