"""
A third-party policy package is found by the plugin system when it is on the
path, and can be selected by name: examples/third-party-policy.
"""

from __future__ import annotations

import json
import os
import sys

from twisted.internet import reactor
from twisted.internet.utils import getProcessOutputAndValue
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

ROOT = FilePath(__file__).parent().parent()
EXAMPLE_SRC = ROOT.descendant(["examples", "third-party-policy", "src"])

SCRIPT = """
import json
from llmux.config import PolicyConfig
from llmux.policies import buildPolicy, findPolicies
from zope.interface.verify import verifyObject
from llmux.interfaces import ISwitchPolicy
policy = buildPolicy("batching", PolicyConfig(extra={"batch_size": 8}))
verifyObject(ISwitchPolicy, policy)
print(json.dumps({"found": sorted(findPolicies()), "batch": policy.batchSize}))
"""


class ThirdPartyPolicyTests(TestCase):
    """
    The example package's policy, found through twisted.plugins.
    """

    timeout = 60

    async def test_foundAndSelectable(self) -> None:
        """
        With the example's source on the path (as an install would put it),
        getPlugins finds 'batching' next to the built-ins, and it builds by
        name with its own settings.
        """
        # A fresh interpreter: twisted.plugins computes its search path from
        # sys.path when first imported.
        path = os.pathsep.join([EXAMPLE_SRC.path, ROOT.child("src").path, *sys.path])
        env = {**os.environ, "PYTHONPATH": path}
        out, err, code = await getProcessOutputAndValue(
            sys.executable, ["-c", SCRIPT], env=env, reactor=reactor
        )
        self.assertEqual(code, 0, err.decode())
        result = json.loads(out.decode().strip().splitlines()[-1])
        self.assertEqual(result["batch"], 8)
        self.assertLessEqual({"batching", "fifo", "round_robin"}, set(result["found"]))
