from llmux.policies.base import PolicyFactory

sticky = PolicyFactory(
    "sticky", "Another.", "llmux.policies.fifo.FifoPolicy.fromConfig"
)
