# -*- test-case-name: tests.test_reload -*-
"""
Reloading the config file while llmux runs (SPEC section 11), on SIGHUP or
C{POST /llmux/reload}.

The new file is read and checked in full first: an invalid one changes
nothing, and its one-line error is logged and returned. Then the switcher
takes the model changes (L{ISwitcher.reconfigure}: removed and changed
models put to sleep with their old hooks, added ones usable, unchanged ones
untouched), and the settings every request reads are swapped in one step
(L{llmux.settings.Settings}), with the hook timeouts, the request limits
and the health-check settings.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from .config import Config, ConfigError, loadConfig
from .hooks import HookRunner
from .interfaces import ISwitcher
from .liveness import Liveness
from .logs import observer
from .policies import PolicyConflict, UnknownPolicy, buildEvictionPolicy, buildPolicy
from .settings import Settings
from .web.limits import RequestLimits

__all__ = ["Reloader"]

_log = Logger(observer=observer, namespace="llmux.reload")


@attrs.define
class Reloader:
    """
    Reloads C{path}; call it.

    @ivar policyName: the switch policy llmux runs (C{--policy}), rebuilt
        from the new C{policy:} table.
    @ivar site: has the C{limits} its channels read.
    """

    path: str
    policyName: str
    switcher: ISwitcher
    settings: Settings
    hooks: HookRunner
    liveness: Liveness
    site: Any

    def __call__(self) -> Deferred[dict[str, Any]]:
        """
        Reload the file.

        @return: fires with what changed (C{added}, C{removed}, C{changed},
            C{unchanged} model names, and C{notes} on what needs a restart);
            fails with a L{ConfigError} if the file is invalid (then nothing
            changed).
        """
        return Deferred.fromCoroutine(self._reload())

    async def _reload(self) -> dict[str, Any]:
        try:
            config, policy, eviction = self._read()
        except ConfigError as e:
            _log.error("reload refused: {error}", event="reload_failed", error=str(e))
            raise
        old = self.settings.config
        # New requests see the new names at once: a removed model is unknown
        # (its waiters are refused), an added one is known, a changed one
        # waits for its restart.
        self._swap(config)
        report: dict[str, Any] | None = await self.switcher.reconfigure(
            config, policy, eviction
        )
        if report is None:
            # Shutdown began first: no exclusive work runs any more.
            raise ConfigError(None, "llmux is shutting down", self.path)
        notes = []
        if config.port != old.port:
            notes.append(
                "port: read at start-up only; llmux listens where it started"
                " (restart llmux to apply it)"
            )
        return {**report, "notes": notes}

    def _read(self) -> tuple[Config, Any, Any]:
        """
        The new config and the policies built for it.

        @raise ConfigError: for anything wrong with them.
        """
        config = loadConfig(self.path)
        if config.pools != self.settings.config.pools:
            raise ConfigError(
                "capacity", "changed: restart llmux to apply it", self.path
            )
        try:
            policy = buildPolicy(self.policyName, config.policy)
            eviction = buildEvictionPolicy(config.eviction)
        except (UnknownPolicy, PolicyConflict) as e:
            raise ConfigError(None, str(e), self.path) from None
        except ConfigError as e:
            raise e.withSource(self.path) from None
        return config, policy, eviction

    def _swap(self, config: Config) -> None:
        """
        Put C{config}'s settings in force for new requests.
        """
        self.settings.swap(config)
        self.hooks.timeouts = config.hook_timeouts
        self.site.limits = RequestLimits(
            maxBodyBytes=config.max_body_bytes, bodyTimeoutSecs=config.body_timeout_secs
        )
        self.liveness.reconfigure(config)
