"""
Residency end to end (SPEC section 9): several models awake at once under a
declared capacity, with the whole llmux service over loopback, real C{sh}
hooks that record what ran, and in-process fake backends.

Everything asserted is what a user sees: HTTP answers, C{/llmux/status},
C{/v1/models}, C{/metrics} and the hook log.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.web.server import Request

from llmux.testing.fakebackend import makeSite

from .test_e2e import Harness, StreamCollector, errorOf, llmuxError
from .test_observability import sample, scrape


class TimedBackend:
    """
    An in-process fake backend that notes, in wall-clock time
    (C{time.time()}, the clock C{date} reads in a hook), when each request
    reached it and when each answer was over on its side.

    @ivar port: the port it listens on.
    @ivar starts: when each request arrived, in order.
    @ivar ends: when each answer was finished (or abandoned), in order.
    """

    def __init__(
        self, h: Harness, model: str, chunkDelay: float = 0.05, chunks: int = 8
    ) -> None:
        self.starts: list[float] = []
        self.ends: list[float] = []
        site = makeSite(model, reactor, chunkDelay, chunks)
        resourceFor = site.getResourceFor

        def noting(request: Request) -> Any:
            self.starts.append(time.time())
            request.notifyFinish().addBoth(lambda _: self.ends.append(time.time()))
            return resourceFor(request)

        site.getResourceFor = noting  # type: ignore[method-assign]
        listening = reactor.listenTCP(0, site, interface="127.0.0.1")
        h.case.addCleanup(listening.stopListening)
        self.port: int = listening.getHost().port


def model(
    h: Harness, port: int, wake: str = "", sleep: str = "", **settings: Any
) -> dict[str, Any]:
    """
    A recording model (see L{Harness.recordingModel}) with residency
    C{settings} such as C{resources} or C{pin}.
    """
    return {**h.recordingModel(port, wake=wake, sleep=sleep), **settings}


#: Extra sleep-hook code: write when the hook ran, in wall-clock seconds, to
#: C{<model>.slept-at} in the hooks' directory.
NOTE_SLEEP_TIME = 'date +%s.%N > "$LLMUX_MODEL.slept-at"'


def sleptAt(h: Harness, name: str) -> float:
    """
    When C{name}'s sleep hook ran (see L{NOTE_SLEEP_TIME}).
    """
    return float(h.directory.child(f"{name}.slept-at").getContent())


async def status(h: Harness, base: str) -> dict[str, Any]:
    response = await treq.get(base + "/llmux/status", pool=h.pool)
    h.case.assertEqual(response.code, 200)
    document: dict[str, Any] = await response.json()
    return document


async def statusWhen(
    h: Harness, base: str, condition: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """
    Poll C{/llmux/status} until C{condition} holds for it; return it.
    """
    deadline = time.monotonic() + 10
    while True:
        document = await status(h, base)
        if condition(document):
            return document
        if time.monotonic() > deadline:
            h.case.fail(f"status never reached the expected state: {document}")
        await deferLater(reactor, 0.02)


def states(document: dict[str, Any]) -> dict[str, str]:
    """
    Each model's C{state} in a status document.
    """
    return {name: entry["state"] for name, entry in document["models"].items()}


async def loadStatuses(h: Harness, base: str) -> dict[str, str]:
    """
    Each model's C{status.value} in C{/v1/models}.
    """
    response = await treq.get(base + "/v1/models", pool=h.pool)
    h.case.assertEqual(response.code, 200)
    listing = await response.json()
    return {entry["id"]: entry["status"]["value"] for entry in listing["data"]}


def streamedText(body: bytes) -> str:
    """
    The content of a chat completion stream, joined.
    """
    events = [line[len(b"data: ") :] for line in body.split(b"\n\n") if line]
    return "".join(
        choice["delta"].get("content") or ""
        for event in events
        if event != b"[DONE]"
        for choice in json.loads(event)["choices"]
    )


def fullText(name: str, chunks: int) -> str:
    """
    What the fake backend of C{name} says in C{chunks} pieces.
    """
    return f"Hello from {name}:" + "".join(f" token {i}" for i in range(1, chunks))


def assertIntact(
    case: TestCase, collector: StreamCollector, name: str, chunks: int
) -> None:
    """
    The stream ended cleanly with every chunk of C{name}'s answer and
    C{[DONE]}.
    """
    case.assertTrue(collector.complete, collector.reason)
    case.assertTrue(collector.body.endswith(b"data: [DONE]\n\n"))
    case.assertEqual(collector.body.count(b"data: "), chunks + 3)
    case.assertEqual(streamedText(collector.body), fullText(name, chunks))


class CoexistenceTests(TestCase):
    """
    Models that fit together stay awake together.
    """

    timeout = 30

    async def test_twoFitServeAlternately(self) -> None:
        """
        A and B, 40 units each of an 80-unit pool, serve alternating requests
        with one wake each and no sleep hook at all; both are C{awake} in the
        status document, C{loaded} in /v1/models, and the pool is full.
        """
        h = Harness(self)
        base = h.start(
            {
                "A": model(h, h.backend("A"), resources={"gpu": 40}),
                "B": model(h, h.backend("B"), resources={"gpu": 40}),
            },
            {"capacity": {"gpu": 80}},
        )
        for name in "ABABAB":
            self.assertEqual((await h.chat(base, name))["model"], name)
        self.assertEqual(h.hooks(), ["wake A", "wake B"])
        document = await status(h, base)
        self.assertEqual(states(document), {"A": "awake", "B": "awake"})
        self.assertEqual(sorted(document["awake"]), ["A", "B"])
        self.assertEqual(document["capacity"], {"gpu": 80})
        self.assertEqual(document["used"], {"gpu": 80})
        self.assertEqual(document["models"]["A"]["holds"], {"gpu": 40})
        self.assertEqual(await loadStatuses(h, base), {"A": "loaded", "B": "loaded"})
        samples = await scrape(h, base)
        for name in "AB":
            self.assertEqual(sample(samples, "llmux_active_model", model=name), 1)
            self.assertEqual(
                sample(samples, "llmux_model_state", model=name, state="awake"), 1
            )


class EvictionTests(TestCase):
    """
    A model that does not fit makes room by evicting the least recently used
    idle model, and only that one.
    """

    timeout = 30

    def threeModels(self, h: Harness) -> str:
        """
        Start A, B and C, 40 units each of an 80-unit pool.
        """
        return h.start(
            {name: model(h, h.backend(name), resources={"gpu": 40}) for name in "ABC"},
            {"capacity": {"gpu": 80}},
        )

    async def test_leastRecentlyUsedEvicted(self) -> None:
        """
        After A then B, a request for C puts A (not B) to sleep and wakes C;
        status, /v1/models and the metrics show A asleep, B and C awake, one
        capacity eviction of A and a full pool.
        """
        h = Harness(self)
        base = self.threeModels(h)
        await h.chat(base, "A")
        await h.chat(base, "B")
        self.assertEqual((await h.chat(base, "C"))["model"], "C")
        self.assertEqual(h.hooks(), ["wake A", "wake B", "sleep A", "wake C"])
        document = await status(h, base)
        self.assertEqual(states(document), {"A": "asleep", "B": "awake", "C": "awake"})
        self.assertEqual(document["used"], {"gpu": 80})
        self.assertEqual(document["models"]["A"]["holds"], {})
        self.assertEqual(
            await loadStatuses(h, base),
            {"A": "unloaded", "B": "loaded", "C": "loaded"},
        )
        samples = await scrape(h, base)
        self.assertEqual(
            sample(samples, "llmux_evictions_total", model="A", reason="capacity"),
            1.0,
        )
        for name in "BC":
            self.assertIn(
                sample(samples, "llmux_evictions_total", model=name, reason="capacity"),
                (None, 0.0),
            )
        self.assertEqual(sample(samples, "llmux_capacity_used_units", pool="gpu"), 80.0)
        self.assertEqual(sample(samples, "llmux_capacity_units", pool="gpu"), 80.0)
        self.assertEqual(
            sample(samples, "llmux_model_state", model="A", state="asleep"), 1
        )

    async def test_recencyNotWakeOrder(self) -> None:
        """
        After A, B, then A again, a request for C evicts B: the least
        recently used, although A was woken first.
        """
        h = Harness(self)
        base = self.threeModels(h)
        for name in "ABA":
            await h.chat(base, name)
        self.assertEqual((await h.chat(base, "C"))["model"], "C")
        self.assertEqual(h.hooks(), ["wake A", "wake B", "sleep B", "wake C"])
        document = await status(h, base)
        self.assertEqual(states(document), {"A": "awake", "B": "asleep", "C": "awake"})
        # The evicted model wakes again when asked for, evicting A now.
        self.assertEqual((await h.chat(base, "B"))["model"], "B")
        self.assertEqual(h.hooks()[4:], ["sleep A", "wake B"])


class BusyVictimTests(TestCase):
    """
    A busy model is never cut off by an eviction.
    """

    timeout = 30

    async def test_streamOnVictimFinishesFirst(self) -> None:
        """
        With B pinned, A is the only possible victim for C. A stream in
        progress on A when C is requested completes intact (every chunk and
        [DONE]); meanwhile A is draining, C's request waits with A as its
        blocker, and no sleep hook runs. A's sleep hook runs only after A's
        backend finished the stream, and then C is woken and served.
        """
        chunks = 25
        h = Harness(self)
        backendA = TimedBackend(h, "A", chunkDelay=0.04, chunks=chunks)
        base = h.start(
            {
                "A": model(
                    h, backendA.port, sleep=NOTE_SLEEP_TIME, resources={"gpu": 40}
                ),
                "B": model(h, h.backend("B"), resources={"gpu": 40}, pin=True),
                "C": model(h, h.backend("C"), resources={"gpu": 40}),
            },
            {"capacity": {"gpu": 80}},
        )
        collector = await h.stream(base, "A")
        await h.chat(base, "B")
        forC = Deferred.fromCoroutine(h.chat(base, "C"))
        document = await statusWhen(
            h, base, lambda d: d["models"]["C"]["queue_depth"] == 1
        )
        self.assertEqual(document["models"]["A"]["state"], "draining")
        self.assertEqual(document["models"]["A"]["in_flight"], 1)
        self.assertEqual(
            document["models"]["C"]["blocked_by"],
            [{"model": "A", "reason": "draining (1 in flight)"}],
        )
        self.assertEqual(h.hooks(), ["wake A", "wake B"])
        self.assertFalse(collector.done.called, "A's stream ended too early")
        await collector.done
        assertIntact(self, collector, "A", chunks)
        self.assertEqual((await forC)["model"], "C")
        self.assertEqual(h.hooks(), ["wake A", "wake B", "sleep A", "wake C"])
        [streamEnded] = backendA.ends
        self.assertGreater(sleptAt(h, "A"), streamEnded)
        document = await status(h, base)
        self.assertEqual(states(document), {"A": "asleep", "B": "awake", "C": "awake"})

    async def test_idleVictimPreferredOverBusy(self) -> None:
        """
        With A streaming and B idle (though used after A), a request for C
        evicts B, not A: C is served while A's stream still runs, and A's
        stream then completes intact without A ever being put to sleep.
        """
        # Long enough (3 s) that two hooks finish within it on a busy machine.
        chunks = 30
        h = Harness(self)
        base = h.start(
            {
                "A": model(
                    h,
                    h.backend("A", chunkDelay=0.1, chunks=chunks),
                    resources={"gpu": 40},
                ),
                "B": model(h, h.backend("B"), resources={"gpu": 40}),
                "C": model(h, h.backend("C"), resources={"gpu": 40}),
            },
            {"capacity": {"gpu": 80}},
        )
        collector = await h.stream(base, "A")
        await h.chat(base, "B")
        self.assertEqual((await h.chat(base, "C"))["model"], "C")
        self.assertFalse(collector.done.called, "A's stream ended too early")
        self.assertEqual(h.hooks(), ["wake A", "wake B", "sleep B", "wake C"])
        await collector.done
        assertIntact(self, collector, "A", chunks)
        document = await status(h, base)
        self.assertEqual(states(document), {"A": "awake", "B": "asleep", "C": "awake"})
        self.assertEqual(h.hooks(), ["wake A", "wake B", "sleep B", "wake C"])


class HookEnvironmentTests(TestCase):
    """
    Hooks are told which placement their model got.
    """

    timeout = 30

    async def test_placementAndPools(self) -> None:
        """
        With gpu0 too full for X's first placement, X gets its second one:
        its wake hook sees C{LLMUX_PLACEMENT=1} and C{LLMUX_POOLS=gpu1}; a
        placement over two pools is given as C{gpu0,gpu1}. The status
        document shows each model's placement and holdings.
        """
        h = Harness(self)
        log = h.hookLog.path
        record = f'echo "env $LLMUX_MODEL $LLMUX_PLACEMENT $LLMUX_POOLS" >> {log}'
        base = h.start(
            {
                "F": model(h, h.backend("F"), wake=record, resources={"gpu0": 35}),
                "X": model(
                    h,
                    h.backend("X"),
                    wake=record,
                    resources=[{"gpu0": 30}, {"gpu1": 30}],
                ),
                "Y": model(
                    h, h.backend("Y"), wake=record, resources={"gpu0": 5, "gpu1": 5}
                ),
            },
            {"capacity": {"gpu0": 40, "gpu1": 40}},
        )
        for name in "FXY":
            self.assertEqual((await h.chat(base, name))["model"], name)
        self.assertEqual(
            h.hooks(),
            [
                "wake F",
                "env F 0 gpu0",
                "wake X",
                "env X 1 gpu1",
                "wake Y",
                "env Y 0 gpu0,gpu1",
            ],
        )
        document = await status(h, base)
        self.assertEqual(states(document), {"F": "awake", "X": "awake", "Y": "awake"})
        models = document["models"]
        self.assertEqual(
            {
                name: (models[name]["placement"], models[name]["holds"])
                for name in "FXY"
            },
            {
                "F": (0, {"gpu0": 35}),
                "X": (1, {"gpu1": 30}),
                "Y": (0, {"gpu0": 5, "gpu1": 5}),
            },
        )
        self.assertEqual(document["used"], {"gpu0": 40, "gpu1": 35})

    async def test_noCapacityNoPlacement(self) -> None:
        """
        Without a declared capacity, hooks get neither C{LLMUX_PLACEMENT}
        nor C{LLMUX_POOLS}.
        """
        h = Harness(self)
        log = h.hookLog.path
        record = (
            f'echo "env $LLMUX_MODEL ${{LLMUX_PLACEMENT-unset}}'
            f' ${{LLMUX_POOLS-unset}}" >> {log}'
        )
        base = h.start({"A": model(h, h.backend("A"), wake=record)})
        await h.chat(base, "A")
        self.assertEqual(h.hooks(), ["wake A", "env A unset unset"])


class PinTests(TestCase):
    """
    Pinned models are never evicted for another model.
    """

    timeout = 30

    def startPinned(self, h: Harness, **pinned: Any) -> str:
        """
        Start P (60 units, pinned) and X (40 units) on an 80-unit pool.
        """
        return h.start(
            {
                "P": model(
                    h, h.backend("P"), resources={"gpu": 60}, pin=True, **pinned
                ),
                "X": model(h, h.backend("X"), resources={"gpu": 40}),
            },
            {"capacity": {"gpu": 80}},
        )

    async def test_pinnedHoldsRoom(self) -> None:
        """
        With pinned P awake, a request for X, which could only fit by
        evicting P, is refused at once with a 503 JSON error naming P and a
        C{Retry-After} of 60 seconds; no hook runs for it, nothing is
        queued, and P keeps serving.
        """
        h = Harness(self)
        base = self.startPinned(h)
        await h.chat(base, "P")
        response = await h.post(base + "/v1/chat/completions", {"model": "X"})
        self.assertEqual(response.headers.getRawHeaders(b"retry-after"), [b"60"])
        self.assertEqual(
            await errorOf(response),
            (
                503,
                b"application/json",
                llmuxError("Model X cannot fit: capacity held by pinned models P"),
            ),
        )
        self.assertEqual(h.hooks(), ["wake P"])
        document = await status(h, base)
        self.assertEqual(states(document), {"P": "awake", "X": "asleep"})
        self.assertEqual(document["models"]["X"]["queue_depth"], 0)
        self.assertEqual((await h.chat(base, "P"))["model"], "P")
        self.assertEqual(h.hooks(), ["wake P"])

    async def test_retryAfterIdleTimeToLive(self) -> None:
        """
        When the pinned model will sleep by itself (C{idle_ttl_secs}),
        C{Retry-After} says when: at most its time to live.
        """
        h = Harness(self)
        base = self.startPinned(h, idle_ttl_secs=20)
        await h.chat(base, "P")
        response = await h.post(base + "/v1/chat/completions", {"model": "X"})
        self.assertEqual(response.code, 503)
        await response.content()
        [retryAfter] = response.headers.getRawHeaders(b"retry-after")
        self.assertIn(int(retryAfter), range(1, 21))
        self.assertEqual(h.hooks(), ["wake P"])


class ConcurrencyAndPreloadTests(TestCase):
    """
    C{max_in_flight} and C{preload}.
    """

    timeout = 30

    async def test_maxInFlightSerializes(self) -> None:
        """
        With C{max_in_flight: 1}, a second request for A while a stream runs
        on A waits (status: queued, blocked by A's max_in_flight) and reaches
        A's backend only once the stream is over there; both succeed.
        """
        chunks = 15
        h = Harness(self)
        backend = TimedBackend(h, "A", chunkDelay=0.04, chunks=chunks)
        base = h.start(
            {"A": model(h, backend.port, resources={"gpu": 40}, max_in_flight=1)},
            {"capacity": {"gpu": 80}},
        )
        collector = await h.stream(base, "A")
        second = Deferred.fromCoroutine(h.chat(base, "A"))
        document = await statusWhen(
            h, base, lambda d: d["models"]["A"]["queue_depth"] == 1
        )
        self.assertEqual(document["models"]["A"]["in_flight"], 1)
        self.assertEqual(
            document["models"]["A"]["blocked_by"],
            [{"model": "A", "reason": "max_in_flight (1 in flight)"}],
        )
        self.assertEqual(len(backend.starts), 1)
        await collector.done
        assertIntact(self, collector, "A", chunks)
        self.assertEqual((await second)["model"], "A")
        self.assertEqual(len(backend.starts), 2)
        self.assertGreaterEqual(backend.starts[1], backend.ends[0])
        self.assertEqual(h.hooks(), ["wake A"])

    async def test_preload(self) -> None:
        """
        C{preload: true} wakes A at start-up, before any request; B, also
        preloaded but unable to fit beside A, is left asleep rather than
        evicting it; a request for A then runs no hook.
        """
        h = Harness(self)
        base = h.start(
            {
                "A": model(h, h.backend("A"), resources={"gpu": 60}, preload=True),
                "B": model(h, h.backend("B"), resources={"gpu": 40}, preload=True),
                "C": model(h, h.backend("C"), resources={"gpu": 20}),
            },
            {"capacity": {"gpu": 80}},
        )
        document = await statusWhen(
            h, base, lambda d: d["models"]["A"]["state"] == "awake"
        )
        self.assertEqual(h.hooks(), ["wake A"])
        self.assertEqual(states(document), {"A": "awake", "B": "asleep", "C": "asleep"})
        self.assertEqual(
            await loadStatuses(h, base),
            {"A": "loaded", "B": "unloaded", "C": "unloaded"},
        )
        self.assertEqual((await h.chat(base, "A"))["model"], "A")
        self.assertEqual(h.hooks(), ["wake A"])
