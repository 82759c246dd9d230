from llmux.policies.base import PolicyFactory

sticky = PolicyFactory(
    "sticky", "One.", "tests.fakeplugins.sticky.StickyPolicy.fromConfig"
)
