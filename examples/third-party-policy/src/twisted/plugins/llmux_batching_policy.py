"""
Registers the C{batching} policy with llmux through Twisted's plugin system.

Name plugin files after your distribution: every package shares the
C{twisted/plugins/} directory, and a file of the same name would overwrite
another package's.
"""

from llmux.policies.base import PolicyFactory

batching = PolicyFactory(
    name="batching",
    description="Switch for a batch of requests, or for one that waited max_wait_secs.",
    builder="llmux_batching.policy.BatchingPolicy.fromConfig",
)
