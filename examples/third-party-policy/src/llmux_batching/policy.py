"""
C{batching}: wake a sleeping model only for a batch of requests.

A switch is worth more when it serves many requests. This policy waits until
C{batch_size} requests are queued for a model, or until the oldest of them has
waited C{max_wait_secs}, before switching to it.
"""

from __future__ import annotations

import attrs
from zope.interface import implementer

from llmux.config import PolicyConfig, readNumber
from llmux.interfaces import (
    Decision,
    DeferUntil,
    ISwitchPolicy,
    PendingContext,
    TickContext,
)
from llmux.policies.base import BasePolicy


@implementer(ISwitchPolicy)
@attrs.define
class BatchingPolicy(BasePolicy):
    """
    Switch for a full batch, or for a request that has waited long enough.
    """

    name = "batching"
    schedulerInterval: float | None = 0.5
    batchSize: int = 4
    maxWaitSecs: float = 10.0

    @classmethod
    def fromConfig(cls, settings: PolicyConfig) -> BatchingPolicy:
        cls.checkOwnKeys(settings, ("batch_size", "max_wait_secs"))
        batch = readNumber(settings.extra, "batch_size", 4, "policy", positive=True)
        return cls(
            batchSize=int(batch),
            maxWaitSecs=readNumber(settings.extra, "max_wait_secs", 10.0, "policy"),
            **cls.commonSettings(settings),
        )

    def onPending(self, context: PendingContext) -> Decision | DeferUntil:
        if context.active is None or context.targetQueueDepth >= self.batchSize:
            return Decision.SWITCH_NOW
        return Decision.SKIP

    def schedule(self, context: TickContext) -> str | None:
        for model, waited in context.oldestWaits.items():
            if waited >= self.maxWaitSecs:
                return model
        return None
