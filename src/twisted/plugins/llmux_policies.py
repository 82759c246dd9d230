"""
llmux's built-in switch and eviction policies, registered as Twisted plugins.

They are found by L{twisted.plugin.getPlugins} exactly as a third-party
policy package's plugins are. Keep this file import-light.
"""

from llmux.policies.base import PolicyFactory
from llmux.policies.eviction import EvictionFactory

fifo = PolicyFactory(
    name="fifo",
    description="Switch as soon as a request arrives for a model that is not awake.",
    builder="llmux.policies.fifo.FifoPolicy.fromConfig",
)

round_robin = PolicyFactory(
    name="round_robin",
    description=(
        "Models take turns in config order; a turn ends when the model is idle"
        " or has used its quantum."
    ),
    builder="llmux.policies.round_robin.RoundRobinPolicy.fromConfig",
)

cost_aware = PolicyFactory(
    name="cost_aware",
    description=(
        "A model keeps the GPU for a quantum proportional to the switch cost;"
        " max_wait_secs bounds every wait."
    ),
    builder="llmux.policies.cost_aware.CostAwarePolicy.fromConfig",
)

lru = EvictionFactory(
    name="lru",
    description=(
        "Evict idle models before busy ones, as few as possible, least"
        " recently used first."
    ),
    builder="llmux.policies.lru.LruEviction",
)

cheapest_wake = EvictionFactory(
    name="cheapest_wake",
    description=(
        "Evict the models that are cheapest to wake again (measured), so"
        " expensive ones stay resident."
    ),
    builder="llmux.policies.cheapest_wake.CheapestWakeEviction",
)
