# -*- test-case-name: tests.test_switcher -*-
"""
The switcher: llmux's core, free of I/O and driven by an injected clock.

  - L{llmux.switcher.ledger}: what each model holds of the capacity;
  - L{llmux.switcher.model}: one model's state and book-keeping;
  - L{llmux.switcher.planning}: where a model goes and who makes room;
  - L{llmux.switcher.switcher}: the orchestration, behind L{ISwitcher};
  - L{llmux.switcher.views}: what it shows (status, views, policy contexts).
"""

from .states import Active, Idle, Switching
from .switcher import FAILURE_BACKOFF_SECS, Slot, Switcher, _Unobserved

__all__ = [
    "Active",
    "FAILURE_BACKOFF_SECS",
    "Idle",
    "Slot",
    "Switcher",
    "Switching",
    "_Unobserved",
]
