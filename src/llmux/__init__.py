"""
llmux: one GPU, many models. A hook-driven multiplexer for OpenAI-compatible
inference servers, built on Twisted.
"""

from ._version import __version__

__all__ = ["__version__"]
