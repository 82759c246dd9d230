# -*- test-case-name: tests.test_policies -*-
"""
Switch policies, and how llmux finds them.

Policies are found through the Twisted plugin system: any module in a
C{twisted/plugins/} directory on the path may define L{IPolicyFactory}
providers. The built-in C{fifo} and C{round_robin} are found exactly the same
way as a third-party policy.
"""

from __future__ import annotations

from types import ModuleType

from twisted.plugin import getPlugins

from ..config import PolicyConfig
from ..interfaces import IPolicyFactory, ISwitchPolicy

__all__ = ["PolicyConflict", "UnknownPolicy", "buildPolicy", "findPolicies"]


class UnknownPolicy(Exception):
    """
    No policy of that name was found; the message lists the ones that were.
    """

    def __init__(self, name: str, known: list[str]):
        choices = ", ".join(sorted(known)) or "none"
        super().__init__(f"unknown policy {name!r} (found: {choices})")
        self.name = name
        self.known = known


class PolicyConflict(Exception):
    """
    Two different plugins claim the same policy name.
    """


def findPolicies(package: ModuleType | None = None) -> dict[str, IPolicyFactory]:
    """
    Every policy the plugin system finds, by name.

    The same factory object can be found more than once (a plugin module that
    re-exports another's factory); that is harmless and counted once. Two
    different factories with one name are an error: which would win would
    depend on the order of the path.

    @param package: the plugin package to search; C{twisted.plugins} by
        default. Tests pass a package of their own.
    @raise PolicyConflict: naming the policy and both factories.
    """
    found: dict[str, IPolicyFactory] = {}
    for factory in getPlugins(IPolicyFactory, package):
        known = found.setdefault(factory.name, factory)
        if known is not factory and known != factory:
            raise PolicyConflict(
                f"two plugins define the policy {factory.name!r}:"
                f" {known!r} and {factory!r}"
            )
    return found


def buildPolicy(
    name: str, settings: PolicyConfig, package: ModuleType | None = None
) -> ISwitchPolicy:
    """
    Find the policy called C{name} and build it from the C{policy:} table.

    @raise UnknownPolicy: if no plugin provides C{name}.
    @raise ConfigError: if the policy rejects its settings.
    """
    policies = findPolicies(package)
    factory = policies.get(name)
    if factory is None:
        raise UnknownPolicy(name, list(policies))
    return factory.buildPolicy(settings)
