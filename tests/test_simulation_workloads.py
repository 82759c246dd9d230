"""
Tests for L{llmux.simulation.workloads}: the generated arrivals and the
trace reader.
"""

from __future__ import annotations

import io
import random

from twisted.trial.unittest import SynchronousTestCase

from llmux.simulation.workloads import (
    Request,
    ServiceTimes,
    TraceError,
    batchChat,
    bursty,
    interleaved,
    poisson,
    readTrace,
)

FIXED = ServiceTimes(1.5)


def assertNear(
    case: SynchronousTestCase, value: float, expected: float, within: float
) -> None:
    """
    Fail unless C{value} is within C{within} of C{expected} (trial's
    assertAlmostEqual counts decimal places only).
    """
    case.assertLessEqual(abs(value - expected), within, f"{value} !~ {expected}")


class InterleavedTests(SynchronousTestCase):
    def test_turns(self) -> None:
        """
        One request every gap, the models in turn, arrivals before the end.
        """
        requests = interleaved(("A", "B", "C"), 2.0, 9.0, FIXED, random.Random(0))
        self.assertEqual(
            requests,
            (
                Request(0.0, "A", 1.5),
                Request(2.0, "B", 1.5),
                Request(4.0, "C", 1.5),
                Request(6.0, "A", 1.5),
                Request(8.0, "B", 1.5),
            ),
        )

    def test_badGap(self) -> None:
        self.assertRaises(
            ValueError, interleaved, ("A",), 0, 10, FIXED, random.Random(0)
        )


class RandomWorkloadTests(SynchronousTestCase):
    """
    The random workloads: deterministic for a seed, with the asked rates.
    """

    def test_seeded(self) -> None:
        """
        The same seed gives the same requests; another seed others.
        """
        service = ServiceTimes(1.0, distribution="exp")

        def make(seed: int) -> tuple[Request, ...]:
            return poisson({"A": 0.5, "B": 0.2}, 600, service, random.Random(seed))

        self.assertEqual(make(1), make(1))
        self.assertNotEqual(make(1), make(2))

    def test_poissonRates(self) -> None:
        """
        Over a long run, each model gets about rate x duration requests,
        sorted by time, within the duration.
        """
        requests = poisson({"A": 1.0, "B": 0.1}, 10_000, FIXED, random.Random(5))
        counts = {m: sum(1 for r in requests if r.model == m) for m in "AB"}
        assertNear(self, counts["A"] / 10_000, 1.0, 0.05)
        assertNear(self, counts["B"] / 10_000, 0.1, 0.02)
        times = [r.t for r in requests]
        self.assertEqual(times, sorted(times))
        self.assertTrue(0 <= times[0] and times[-1] < 10_000)

    def test_exponentialService(self) -> None:
        """
        Exponential service times average the mean; fixed ones equal it.
        """
        service = ServiceTimes(2.0, {"B": 4.0}, distribution="exp")
        requests = poisson({"A": 1, "B": 1}, 5000, service, random.Random(2))
        for model, mean in (("A", 2.0), ("B", 4.0)):
            times = [r.serviceSecs for r in requests if r.model == model]
            assertNear(self, sum(times) / len(times), mean, 0.25 * mean)
        self.assertRaises(ValueError, ServiceTimes, 1.0, {}, "gamma")

    def test_bursty(self) -> None:
        """
        Bursty traffic comes in bursts: at the same average rate as Poisson
        traffic it leaves much longer silences.
        """
        rng = random.Random(4)
        requests = bursty({"A": 2.0}, 20_000, 30, 90, FIXED, rng)
        gaps = [b.t - a.t for a, b in zip(requests, requests[1:], strict=False)]
        rate = len(requests) / 20_000
        # On a quarter of the time at 2/s: about 0.5/s on average.
        assertNear(self, rate, 0.5, 0.1)
        self.assertGreater(max(gaps), 200)
        self.assertGreater(sum(1 for g in gaps if g < 1.0) / len(gaps), 0.8)
        self.assertRaises(ValueError, bursty, {"A": 1}, 10, 0, 1, FIXED, rng)

    def test_batchChat(self) -> None:
        """
        The batch job floods its model during its window only; chat
        trickles to the other the whole time.
        """
        requests = batchChat(
            "batch",
            "chat",
            5.0,
            0.05,
            4000,
            FIXED,
            random.Random(9),
            batchStart=1000,
            batchSecs=1000,
        )
        batch = [r.t for r in requests if r.model == "batch"]
        chat = [r.t for r in requests if r.model == "chat"]
        self.assertTrue(1000 <= min(batch) and max(batch) < 2000)
        assertNear(self, len(batch) / 1000, 5.0, 0.5)
        self.assertLess(min(chat), 1000)
        self.assertGreater(max(chat), 2000)


class TraceTests(SynchronousTestCase):
    """
    Replaying a JSON-lines trace.
    """

    def test_read(self) -> None:
        """
        Records are sorted by time, shifted to start at 0, keep their
        service times, and get one drawn where they have none. Blank lines
        and comments are skipped.
        """
        text = (
            "# a comment\n"
            '{"t": 105.5, "model": "B", "service_secs": 3}\n'
            "\n"
            '{"t": 100, "model": "A", "service_secs": 0.25}\n'
            '{"t": 101, "model": "A"}\n'
        )
        requests = readTrace(io.StringIO(text), ServiceTimes(2.0), random.Random(0))
        self.assertEqual(
            requests,
            (
                Request(0.0, "A", 0.25),
                Request(1.0, "A", 2.0),
                Request(5.5, "B", 3.0),
            ),
        )

    def test_errorsNameTheLine(self) -> None:
        cases = [
            ("{nope\n", "t.jsonl:1: invalid JSON"),
            ("[1]\n", "t.jsonl:1: expected an object"),
            ('{"model": "A"}\n', "t.jsonl:1: t must be a number, not None"),
            ('{"t": "x", "model": "A"}\n', "t must be a number, not 'x'"),
            ('{"t": 1}\n', "t.jsonl:1: model must be a non-empty string"),
            (
                '{"t": 1, "model": "A"}\n{"t": 2, "model": "A", "service_secs": -1}\n',
                "t.jsonl:2: service_secs must be a number of 0 or more, not -1",
            ),
            ('{"t": NaN, "model": "A"}\n', "t must be a number, not nan"),
            ("\n# nothing\n", "t.jsonl: no requests in the trace"),
        ]
        for text, message in cases:
            with self.assertRaises(TraceError) as caught:
                readTrace(io.StringIO(text), FIXED, random.Random(0), "t.jsonl")
            self.assertIn(message, str(caught.exception))
