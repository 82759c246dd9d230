# -*- test-case-name: tests.test_e2e -*-
"""
The running llmux service: the switcher, the backend connection pool and the
HTTP listener, started and stopped together.
"""

from __future__ import annotations

import signal
from typing import Any, cast

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import (
    IListeningPort,
    IReactorFromThreads,
    IStreamServerEndpoint,
)
from twisted.logger import ILogObserver, Logger
from twisted.python.components import Componentized
from twisted.python.failure import Failure
from twisted.web.client import HTTPConnectionPool
from twisted.web.server import Site

from .config import Config
from .hooks import HookRunner, ManagedProcesses
from .interfaces import IEvictionPolicy, ISwitcher, ISwitchPolicy
from .liveness import Liveness
from .logs import addressText, observer
from .metrics import Metrics
from .policies import buildEvictionPolicy
from .reload import Reloader
from .settings import Settings
from .switcher import Switcher
from .tuning import tuneProcess
from .web.client import backendAgent
from .web.resource import buildRoot, makeSite

__all__ = ["LlmuxService", "makeLlmuxService"]


class LlmuxService(Service):
    """
    Listens for clients and owns the switcher and the backend pool.

    @ivar port: the listening port once started (its C{getHost()} tells where).
    """

    log = Logger(observer=observer)

    def __init__(
        self,
        settings: Settings,
        switcher: ISwitcher,
        liveness: Liveness,
        pool: HTTPConnectionPool,
        site: Site,
        endpoint: IStreamServerEndpoint,
        metrics: Metrics,
        logObserver: ILogObserver | None = None,
        tune: bool = False,
        processes: ManagedProcesses | None = None,
        reload: Reloader | None = None,
    ) -> None:
        """
        @param settings: the configuration in force, which a reload swaps.
        @param metrics: the service's metrics; it times full garbage
            collections while it runs.
        @param logObserver: where the log should go, if not where twistd
            would send it.
        @param tune: whether to apply L{llmux.tuning.tuneProcess} on start
            (in the llmux process, not in a test process, which would keep
            whatever its tests made).
        @param processes: the backend processes llmux runs (C{command:}),
            all stopped when the service stops: llmux leaves none behind.
        @param reload: reloads the config file; run on SIGHUP while the
            service runs.
        """
        self.settings = settings
        self.switcher = switcher
        self.liveness = liveness
        self.pool = pool
        self.site = site
        self.endpoint = endpoint
        self.metrics = metrics
        self.logObserver = logObserver
        self.tune = tune
        self.processes = processes
        self.reload = reload
        self._hangup: Any = None
        self.port: IListeningPort | None = None

    @property
    def config(self) -> Config:
        """
        The configuration in force (a reload changes it).
        """
        return self.settings.config

    def setServiceParent(self, parent: Any) -> None:
        """
        Join C{parent}; when that is twistd's application, also hand it the
        log observer, which twistd then uses in place of its own.
        """
        if self.logObserver is not None and isinstance(parent, Componentized):
            parent.setComponent(ILogObserver, self.logObserver)
        super().setServiceParent(parent)

    def startService(self) -> None:
        """
        Start listening; a port that cannot be bound fails start-up loudly.
        """
        super().startService()
        failures: list[Failure] = []
        self.endpoint.listen(self.site).addCallbacks(self._listening, failures.append)
        if failures:
            # Stream endpoints listen synchronously: exiting here stops
            # twistd from running without a listener. One line, no traceback.
            raise SystemExit(f"llmux: error: cannot listen: {failures[0].value}")
        self.switcher.start()
        self.liveness.start()
        self.switcher.preload()
        self.metrics.watchGarbage()
        if self.reload is not None:
            self._hangup = signal.signal(signal.SIGHUP, self._hungUp)
        if self.tune:
            tuneProcess()

    def _hungUp(self, signum: int, frame: Any) -> None:
        """
        SIGHUP: reload the config file (from the reactor's loop).
        """
        from twisted.internet import reactor

        cast(IReactorFromThreads, reactor).callFromThread(self._reloadNow)

    def _reloadNow(self) -> None:
        assert self.reload is not None
        self.reload().addCallbacks(
            lambda report: self.log.info(
                "reloaded on SIGHUP: {report}", event="reload_done", report=report
            ),
            lambda failure: None,  # logged by the reloader, with its error
        )

    def _listening(self, port: IListeningPort) -> None:
        self.port = port
        address = addressText(port.getHost())
        self.log.info(
            "llmux listening on {address} (dashboard: {dashboard})",
            event="listening",
            address=address,
            dashboard=f"http://{address}/llmux/ui",
        )

    def stopService(self) -> Deferred[None]:
        if not self.running:
            return succeed(None)
        super().stopService()
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        """
        Stop accepting, refuse the waiting requests, let those in flight
        finish (bounded), optionally put the awake model to sleep.
        """
        if self.port is not None:
            await maybeDeferred(self.port.stopListening)
        self.liveness.stop()
        self.metrics.unwatchGarbage()
        if self._hangup is not None:
            signal.signal(signal.SIGHUP, self._hangup)
            self._hangup = None
        await self.switcher.shutdown(
            self.config.shutdown_timeout_secs, self.config.sleep_on_shutdown
        )
        await self.pool.closeCachedConnections()
        if self.processes is not None:
            await self.processes.stopAll()


def makeLlmuxService(
    config: Config,
    policy: ISwitchPolicy,
    listen: str,
    reactor: Any,
    logObserver: ILogObserver | None = None,
    tune: bool = False,
    eviction: IEvictionPolicy | None = None,
    source: str | None = None,
    policyName: str | None = None,
) -> LlmuxService:
    """
    Assemble a ready-to-start llmux service.

    @param listen: a Twisted server endpoint string, e.g. C{tcp:3000}.
    @param reactor: provides process spawning, time and networking.
    @param logObserver: where the log goes, if not where twistd sends it.
    @param tune: see L{LlmuxService}.
    @param eviction: the eviction policy; by default the one the config
        names, found through the plugin system.
    @param source: the config file C{config} was read from, and
        C{policyName} the switch policy's name: with both, the service
        reloads the file on SIGHUP and C{POST /llmux/reload}.
    """
    if eviction is None:
        eviction = buildEvictionPolicy(config.eviction)
    metrics = Metrics()
    hooks = HookRunner(reactor, timeouts=config.hook_timeouts)
    switcher = Switcher(config, policy, hooks, reactor, metrics, eviction)
    # A managed backend that exits is dead at once, not after health checks.
    hooks.processes.onExit = switcher.markDead
    metrics.watch(switcher)
    liveness = Liveness(switcher, config, reactor)
    agent, pool = backendAgent(reactor)
    settings = Settings(config)
    reloads: list[Reloader] = []

    def reload() -> Deferred[dict[str, Any]]:
        return reloads[0]()

    root = buildRoot(
        switcher,
        settings,
        agent,
        metrics,
        reactor,
        liveness,
        reload if source is not None and policyName is not None else None,
    )
    endpoint = serverFromString(reactor, listen)
    site = makeSite(
        root,
        maxBodyBytes=config.max_body_bytes,
        bodyTimeoutSecs=config.body_timeout_secs,
        metrics=metrics,
        clock=reactor,
    )
    if source is not None and policyName is not None:
        reloads.append(
            Reloader(source, policyName, switcher, settings, hooks, liveness, site)
        )
    return LlmuxService(
        settings,
        switcher,
        liveness,
        pool,
        site,
        endpoint,
        metrics,
        logObserver,
        tune,
        hooks.processes,
        reloads[0] if reloads else None,
    )
