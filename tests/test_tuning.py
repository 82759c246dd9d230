"""
Tests for L{llmux.tuning}: what the twistd-built service does to its process.
"""

from __future__ import annotations

import gc

from twisted.trial.unittest import SynchronousTestCase
from twisted.web._newclient import HTTPClientParser
from twisted.web.http import _ChunkedTransferDecoder

from llmux.tuning import GC_THRESHOLDS, freezeStartupHeap, tuneProcess
from llmux.web.cycles import (
    ForgetfulChunkedDecoder,
    chunkedDecoderKeepsCallbacks,
    removeChunkedDecoderFix,
)


class TuneProcessTests(SynchronousTestCase):
    """
    L{tuneProcess} changes process-wide state; every test puts it back.
    """

    def setUp(self) -> None:
        thresholds = gc.get_threshold()
        self.addCleanup(gc.set_threshold, *thresholds)
        self.addCleanup(gc.unfreeze)
        self.addCleanup(removeChunkedDecoderFix)

    def test_thresholds(self) -> None:
        """
        The oldest generation is collected after 1000 collections of the
        middle one, not CPython's 10; the young generations keep their
        defaults.
        """
        tuneProcess()
        self.assertEqual(gc.get_threshold(), GC_THRESHOLDS)
        self.assertEqual(GC_THRESHOLDS, (700, 10, 1000))

    def test_chunkedDecoderFix(self) -> None:
        """
        Client parsers decode chunked bodies with the forgetful decoder
        while Twisted's own keeps its callbacks.
        """
        tuneProcess()
        decoder = HTTPClientParser._transferDecoders[b"chunked"]
        if chunkedDecoderKeepsCallbacks():
            self.assertIs(decoder, ForgetfulChunkedDecoder)
        else:
            self.assertIs(decoder, _ChunkedTransferDecoder)

    def test_freezesStartupHeap(self) -> None:
        """
        What exists when the service starts is moved out of the collector's
        sight, so full collections do not walk it again.
        """
        gc.unfreeze()
        survivor = [object()]
        freezeStartupHeap()
        self.assertGreater(gc.get_freeze_count(), 0)
        oldest = {id(o) for o in gc.get_objects(generation=2)}
        self.assertNotIn(id(survivor), oldest)
