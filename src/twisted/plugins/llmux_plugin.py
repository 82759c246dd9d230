"""
The C{llmux} twistd plugin: C{twistd -n llmux --config config.yaml}.

L{ServiceMaker} imports L{llmux.tap} only when the plugin is used, so listing
twistd's plugins stays cheap.
"""

from twisted.application.service import ServiceMaker

llmux = ServiceMaker(
    "llmux",
    "llmux.tap",
    "Multiplex OpenAI-compatible model servers, one awake model at a time.",
    "llmux",
)
