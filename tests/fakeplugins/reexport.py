"""
Re-exports the sticky factory: the plugin system sees it a second time.
"""

from .sticky import sticky as alsoSticky

__all__ = ["alsoSticky"]
