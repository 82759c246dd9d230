# -*- test-case-name: tests.test_web_resource -*-
"""
llmux's HTTP side: the resource tree, the streaming proxy leaf and the JSON
errors.

L{buildRoot} assembles the tree, L{makeSite} the L{twisted.web.server.Site}
that serves it.
"""

from llmux.web.proxy import ProxyResource
from llmux.web.resource import buildRoot, makeSite

__all__ = ["ProxyResource", "buildRoot", "makeSite"]
