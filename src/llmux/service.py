# -*- test-case-name: tests.test_service -*-
"""
The running llmux service: the switcher, the backend connection pool and the
HTTP listener, started and stopped together.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry
from twisted.application.service import MultiService
from twisted.application.strports import service as endpointService
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.client import Agent, HTTPConnectionPool

from .config import Config
from .hooks import HookRunner
from .interfaces import ISwitchPolicy
from .switcher import Switcher
from .web.resource import buildRoot, makeSite

__all__ = ["LlmuxService", "makeLlmuxService"]

#: Idle backend connections are dropped before this many seconds, below the
#: 5 s keep-alive of uvicorn (vLLM, SGLang): a completion POST sent on a
#: connection the backend just closed would fail, and POSTs are not retried.
POOL_IDLE_SECS = 4
#: Idle backend connections kept per model, so bursts reuse connections.
POOL_IDLE_PER_BACKEND = 64


class LlmuxService(MultiService):
    """
    Owns the switcher and the backend pool; its child is the HTTP listener.
    """

    log = Logger()

    def __init__(self, switcher: Switcher, pool: HTTPConnectionPool) -> None:
        super().__init__()
        self.switcher = switcher
        self.pool = pool

    def startService(self) -> None:
        self.switcher.start()
        super().startService()

    def stopService(self) -> Deferred[Any]:
        d: Deferred[Any] = Deferred.fromCoroutine(self._stop())
        return d

    async def _stop(self) -> None:
        await super().stopService()
        self.switcher.stop()
        await self.pool.closeCachedConnections()


def makeLlmuxService(
    config: Config, policy: ISwitchPolicy, listen: str, reactor: Any
) -> LlmuxService:
    """
    Assemble a ready-to-start llmux service.

    @param listen: a Twisted server endpoint string, e.g. C{tcp:3000}.
    @param reactor: provides process spawning, time and TCP.
    """
    switcher = Switcher(config, policy, HookRunner(reactor), reactor)
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = POOL_IDLE_PER_BACKEND
    pool.cachedConnectionTimeout = POOL_IDLE_SECS
    agent = Agent(reactor, pool=pool)
    root = buildRoot(switcher, config, agent, CollectorRegistry())
    service = LlmuxService(switcher, pool)
    endpointService(listen, makeSite(root)).setServiceParent(service)
    return service
