# -*- test-case-name: tests.test_policies -*-
"""
Switch and eviction policies, and how llmux finds them.

Policies are found through the Twisted plugin system: any module in a
C{twisted/plugins/} directory on the path may define L{IPolicyFactory}
providers (switch policies, C{--policy NAME}) and L{IEvictionPolicyFactory}
providers (eviction policies, C{eviction: NAME}). The built-in ones are
found exactly the same way as a third-party policy.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from twisted.plugin import getPlugins

from ..config import PolicyConfig
from ..interfaces import (
    IEvictionPolicy,
    IEvictionPolicyFactory,
    IPolicyFactory,
    ISwitchPolicy,
)

__all__ = [
    "PolicyConflict",
    "UnknownPolicy",
    "buildEvictionPolicy",
    "buildPolicy",
    "findEvictionPolicies",
    "findPolicies",
]


class UnknownPolicy(Exception):
    """
    No policy of that name was found; the message lists the ones that were.
    """

    def __init__(self, name: str, known: list[str], kind: str = "policy"):
        choices = ", ".join(sorted(known)) or "none"
        super().__init__(f"unknown {kind} {name!r} (found: {choices})")
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
    return _find(IPolicyFactory, package, "policy")


def findEvictionPolicies(
    package: ModuleType | None = None,
) -> dict[str, IEvictionPolicyFactory]:
    """
    Every eviction policy the plugin system finds, by name; see
    L{findPolicies}.
    """
    return _find(IEvictionPolicyFactory, package, "eviction policy")


def _find(interface: Any, package: ModuleType | None, kind: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for factory in getPlugins(interface, package):
        known = found.setdefault(factory.name, factory)
        if known is not factory and known != factory:
            raise PolicyConflict(
                f"two plugins define the {kind} {factory.name!r}:"
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


def buildEvictionPolicy(
    name: str, package: ModuleType | None = None
) -> IEvictionPolicy:
    """
    Find the eviction policy called C{name} and build it.

    @raise UnknownPolicy: if no plugin provides C{name}.
    """
    policies = findEvictionPolicies(package)
    factory = policies.get(name)
    if factory is None:
        raise UnknownPolicy(name, list(policies), "eviction policy")
    return factory.buildEvictionPolicy()
