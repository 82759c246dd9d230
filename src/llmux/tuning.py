# -*- test-case-name: tests.test_tuning -*-
"""
Process-wide tuning for a llmux process: the service twistd builds, never a
test process (whose tests would keep whatever it froze, and would see
Twisted's classes changed under them).

What it does, and why (docs/performance.md has the measurements):

  - breaks the reference cycle Twisted's chunked body decoder leaves behind
    every streamed response (L{llmux.web.cycles}), so a finished stream is
    freed by reference counting instead of waiting for a full collection;
  - freezes what start-up allocated, so full collections do not walk the
    modules, classes and config that live as long as the process;
  - raises the threshold of the oldest generation, so the few objects that
    still survive two collections (open streams, pooled connections) are
    not walked again every few hundred milliseconds under load.
"""

from __future__ import annotations

import gc

from .web.cycles import installChunkedDecoderFix

__all__ = ["GC_THRESHOLDS", "freezeStartupHeap", "tuneProcess"]

#: CPython's collection thresholds for llmux: the defaults for the young
#: generations, and a full collection after 1000 collections of the middle
#: one instead of 10. Measured against 10 and 100000 (docs/performance.md,
#: "Garbage"): 10 pauses 0.5-1 s at a time under thousands of open streams;
#: 1000 and 100000 both ran a 60 s soak without a full collection, and 1000
#: still collects the cycles that do arise within seconds under load.
GC_THRESHOLDS = (700, 10, 1000)


def tuneProcess() -> None:
    """
    Apply everything above. Call once the service has started.
    """
    installChunkedDecoderFix()
    freezeStartupHeap()
    gc.set_threshold(*GC_THRESHOLDS)


def freezeStartupHeap() -> None:
    """
    Move everything start-up allocated (modules, classes, the config, the
    service) out of the garbage collector's sight.

    They live as long as the process, yet every full collection would walk
    them again: tens of thousands of objects, tens of milliseconds with the
    reactor stopped, about once a second under load. Frozen, a full collection
    walks only what requests allocated.
    """
    gc.collect()
    gc.freeze()
