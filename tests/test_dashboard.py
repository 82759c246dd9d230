"""
The dashboard at C{GET /llmux/ui}: its files as served, and the page itself
in a real headless Chromium driven by selenium against a real llmux service
on loopback.

The browser tests need the C{selenium} package (in the C{test} extras) and
Debian's C{chromium} and C{chromium-driver}; without them they are skipped.
With C{LLMUX_SCREENSHOT=1} they also save C{docs/dashboard.png}.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from typing import Any, TypeVar

import treq
from twisted.internet import reactor, tcp
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from twisted.web.test.requesthelper import DummyRequest

from llmux.config import parseConfig
from llmux.policies.fifo import FifoPolicy
from llmux.service import LlmuxService, makeLlmuxService
from llmux.web.ui import UI_PATHS, UiResource

from .helpers import freePort
from .test_e2e import ROOT, Harness

T = TypeVar("T")
ADMIN = "admin-secret-0123456789"
TEAM = "team-secret-0123456789"

INSTALL = (
    "the dashboard's browser tests need selenium (pip install '.[test]') and"
    " a headless Chromium with its driver"
    " (apt-get install chromium chromium-driver)"
)


class UiResourceTests(SynchronousTestCase):
    """
    L{UiResource} serves its three files by exact path and nothing else.
    """

    def render(self, path: bytes, method: bytes = b"GET") -> tuple[Any, bytes]:
        request: Any = DummyRequest([])
        request.path = path
        request.method = method
        body = UiResource().render(request)
        assert isinstance(body, bytes)
        return request, body

    def test_files(self) -> None:
        """
        The page, its script and its style sheet, each with its type.
        """
        expected = {
            b"/llmux/ui": (b"text/html", b"<!DOCTYPE html>"),
            b"/llmux/ui/": (b"text/html", b"<!DOCTYPE html>"),
            b"/llmux/ui/dashboard.js": (b"text/javascript", b"// llmux dashboard"),
            b"/llmux/ui/dashboard.css": (b"text/css", b"/* llmux dashboard"),
        }
        self.assertEqual(set(expected), set(UI_PATHS))
        for path, (contentType, start) in expected.items():
            request, body = self.render(path)
            self.assertEqual(request.responseCode, None)
            headers = request.responseHeaders.getRawHeaders(b"content-type")
            self.assertEqual(headers, [contentType + b"; charset=utf-8"])
            self.assertTrue(body.startswith(start), path)

    def test_notFound(self) -> None:
        """
        Any other path, traversals included, is a JSON 404.
        """
        for path in (
            b"/llmux/ui/index.html",
            b"/llmux/ui/../ui.py",
            b"/llmux/ui/..%2f..%2fsetup.py",
            b"/llmux/ui/dashboard.js/",
            b"/llmux/ui/nope.js",
        ):
            request, body = self.render(path)
            self.assertEqual(request.responseCode, 404, path)
            headers = request.responseHeaders.getRawHeaders(b"content-type")
            self.assertEqual(headers, [b"application/json"])
            self.assertIn(b'"Not found"', body)

    def test_methods(self) -> None:
        """
        C{POST} is refused with a 405.
        """
        request, _ = self.render(b"/llmux/ui", b"POST")
        self.assertEqual(request.responseCode, 405)


class UiRouteTests(TestCase):
    """
    A running llmux serves the dashboard at its paths.
    """

    timeout = 30

    async def test_served(self) -> None:
        h = Harness(self)
        base = h.start({"alpha": h.recordingModel(h.backend("alpha"))})
        for path, contentType in (
            ("/llmux/ui", b"text/html; charset=utf-8"),
            ("/llmux/ui/", b"text/html; charset=utf-8"),
            ("/llmux/ui/dashboard.js", b"text/javascript; charset=utf-8"),
            ("/llmux/ui/dashboard.css", b"text/css; charset=utf-8"),
        ):
            response = await treq.get(base + path, pool=h.pool)
            self.assertEqual(response.code, 200, path)
            self.assertEqual(
                response.headers.getRawHeaders(b"content-type"), [contentType]
            )
            body = await response.content()
            self.assertTrue(body)
        response = await treq.get(base + "/llmux/ui/../../setup.py", pool=h.pool)
        self.assertNotEqual(response.code, 200)
        await response.content()


def _browser() -> tuple[str, str]:
    """
    The Chromium and chromedriver to use.

    @raise SkipTest: without them or without selenium.
    """
    try:
        import selenium  # noqa: F401
    except ImportError:
        raise SkipTest(INSTALL) from None
    chromium = next(
        filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None
    )
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        raise SkipTest(INSTALL)
    return chromium, driver


class Browser:
    """
    A headless Chromium, driven from a thread so the reactor goes on serving.
    """

    def __init__(self, chromium: str, driver: str) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for argument in (
            "--headless=new",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--window-size=1280,1100",
        ):
            options.add_argument(argument)
        self.driver = webdriver.Chrome(
            service=Service(executable_path=driver), options=options
        )

    def wait(self, condition: Callable[[Any], T], timeout: float = 10) -> T:
        from selenium.webdriver.support.ui import WebDriverWait

        result: T = WebDriverWait(self.driver, timeout, poll_frequency=0.05).until(
            condition
        )
        return result

    def script(self, code: str, *args: Any) -> Any:
        """
        Run C{code} in the page (in one go, so rows redrawn meanwhile do not
        go stale under the test).
        """
        return self.driver.execute_script(code, *args)

    def states(self) -> dict[str, str]:
        """
        Each model row's state, as shown.
        """
        result: dict[str, str] = self.script(
            """
            const states = {};
            for (const row of document.querySelectorAll("#models tbody tr")) {
              states[row.dataset.model] =
                row.querySelector("td.state").textContent.split(" ")[0];
            }
            return states;
            """
        )
        return result

    def state(self, model: str) -> str:
        return self.states().get(model, "")

    def marks(self, event: str, model: str) -> int:
        """
        How many ticks the timeline shows for C{event} on C{model}'s lane.
        """
        count: int = self.script(
            "return document.querySelectorAll("
            "`#timeline line.mark[data-event='${arguments[0]}']"
            "[data-model='${arguments[1]}']`).length;",
            event,
            model,
        )
        return count

    def click(self, model: str, action: str) -> None:
        """
        Click C{model}'s C{action} button once it shows.
        """
        self.wait(
            lambda d: self.script(
                "const b = document.querySelector("
                "`tr[data-model='${arguments[0]}'] button[data-action='${arguments[1]}']`);"
                "if (!b || b.offsetParent === null) return false;"
                "b.click(); return true;",
                model,
                action,
            )
        )

    def notice(self) -> str:
        text: str = self.script("return document.getElementById('notice').textContent;")
        return text

    def adminShown(self) -> bool:
        shown: bool = self.script(
            "return document.body.classList.contains('admin')"
            " && document.getElementById('reload').offsetParent !== null;"
        )
        return shown

    def enterKey(self, key: str) -> None:
        from selenium.webdriver.common.by import By

        field = self.driver.find_element(By.ID, "key")
        field.clear()
        field.send_keys(key)
        self.driver.find_element(
            By.CSS_SELECTOR, "#key-form button[type=submit]"
        ).click()

    def connection(self) -> str:
        text: str = self.script(
            "return document.getElementById('connection').textContent;"
        )
        return text


class BrowserTests(TestCase):
    """
    The page in a real browser against a real llmux.
    """

    timeout = 120

    def setUp(self) -> None:
        self.chromium, self.driverPath = _browser()
        self.h = Harness(self)
        self.port = freePort()
        self.services: list[LlmuxService] = []

    def startService(
        self,
        models: list[str],
        capacity: dict[str, float] | None = None,
        wake: str = "",
        auth: dict[str, Any] | None = None,
    ) -> str:
        """
        Start llmux on C{self.port}; with C{capacity}, each model takes 40
        units of its first pool; C{wake} is extra shell code for the wake
        hooks; C{auth} the C{auth} table.
        """
        h = self.h
        settings: dict[str, Any] = {}
        if capacity:
            settings["capacity"] = capacity
        if auth:
            settings["auth"] = auth
        first = next(iter(capacity or {"gpu0": 0}))
        config = parseConfig(
            {
                "models": {
                    name: {
                        **h.recordingModel(h.backend(name, chunkDelay=0.01), wake=wake),
                        **({"resources": [{first: 40}]} if capacity else {}),
                    }
                    for name in models
                },
                "policy": {},
                **settings,
            },
            h.directory.path,
        )
        service = makeLlmuxService(
            config,
            FifoPolicy.fromConfig(config.policy),
            f"tcp:{self.port}:interface=127.0.0.1",
            reactor,
        )
        service.startService()
        self.services.append(service)
        self.addCleanup(service.stopService)
        return f"http://127.0.0.1:{self.port}"

    async def quit(self, browser: Browser) -> None:
        await deferToThread(browser.driver.quit)
        # Let the server see the streams close before the reactor check.
        await deferLater(reactor, 0.3)

    async def inBrowser(self, f: Callable[..., T], *args: Any) -> T:
        result: T = await deferToThread(f, *args)
        return result

    async def test_dashboard(self) -> None:
        """
        The page lists the models, follows a switch live (state and
        timeline), puts a model to sleep from its button (local client, no
        admin key configured), and recovers after llmux restarts.
        """
        h = self.h
        base = self.startService(["alpha", "beta"])
        browser = await self.inBrowser(Browser, self.chromium, self.driverPath)
        self.addCleanup(self.quit, browser)
        await self.inBrowser(browser.driver.get, base + "/llmux/ui")
        states = await self.inBrowser(
            browser.wait, lambda d: len(browser.states()) == 2 and browser.states()
        )
        self.assertEqual(states, {"alpha": "asleep", "beta": "asleep"})
        await self.inBrowser(browser.wait, lambda d: browser.connection() == "live")

        # A cold start, then a switch: shown within 2 s, no reload.
        await h.chat(base, "alpha")
        await self.inBrowser(
            browser.wait, lambda d: browser.state("alpha") == "awake", 2
        )
        await h.chat(base, "beta")
        await self.inBrowser(
            browser.wait,
            lambda d: browser.states() == {"alpha": "asleep", "beta": "awake"},
            2,
        )
        self.assertEqual(
            await self.inBrowser(browser.marks, "switch_started", "beta"), 1
        )
        self.assertGreaterEqual(
            await self.inBrowser(browser.marks, "model_activated", "beta"), 1
        )
        self.assertGreaterEqual(
            await self.inBrowser(browser.marks, "model_evicted", "alpha"), 1
        )

        # The sleep button, with no admin key configured: a local client.
        await self.inBrowser(browser.click, "beta", "sleep")
        await self.inBrowser(
            browser.wait, lambda d: browser.state("beta") == "asleep", 5
        )
        self.assertIn("sleep beta", h.hooks())

        # llmux restarts on the same port with one more model.
        # Like a process that exits, its connections close too (an
        # in-process service that stops listening would keep them).
        old = self.services[-1]
        listening = old.port
        await old.stopService()
        for reader in reactor.getReaders():
            if isinstance(reader, tcp.Server) and reader.server is listening:
                reader.abortConnection()
        await self.inBrowser(browser.wait, lambda d: browser.connection() != "live", 10)
        screenshot = os.environ.get("LLMUX_SCREENSHOT") == "1"
        self.startService(
            ["alpha", "beta", "gamma"],
            {"gpu0": 80},
            # Wakes that take a while, for a timeline worth a picture.
            wake="sleep 0.5" if screenshot else "",
        )
        await self.inBrowser(
            browser.wait,
            lambda d: "gamma" in browser.states() and browser.connection() == "live",
            15,
        )
        await h.chat(base, "gamma")
        await self.inBrowser(
            browser.wait, lambda d: browser.state("gamma") == "awake", 2
        )
        self.assertGreaterEqual(
            await self.inBrowser(browser.marks, "model_activated", "gamma"), 1
        )

        # Two of three fit: capacity bars.
        await h.chat(base, "alpha")
        await self.inBrowser(
            browser.wait,
            lambda d: (
                browser.script("return document.querySelectorAll('#pools .seg').length")
                == 2
            ),
            2,
        )
        if screenshot:
            for model in ("beta", "gamma", "alpha", "beta", "alpha"):
                await deferLater(reactor, 2)
                await h.chat(base, model)
            await deferLater(reactor, 1.5)
            path = ROOT.descendant(["docs", "dashboard.png"]).path
            await self.inBrowser(browser.driver.save_screenshot, path)

    async def test_keys(self) -> None:
        """
        With keys configured, the page asks for one; an API key shows the
        models but no admin buttons; an admin key shows them, and they work.
        """
        self.patch(os, "environ", {**os.environ, "ADMIN_KEY": ADMIN, "TEAM_KEY": TEAM})
        base = self.startService(
            ["alpha", "beta"],
            auth={
                "admin_keys": [{"name": "ops", "key_env": "ADMIN_KEY"}],
                "api_keys": [{"name": "team", "key_env": "TEAM_KEY"}],
            },
        )
        browser = await self.inBrowser(Browser, self.chromium, self.driverPath)
        self.addCleanup(self.quit, browser)
        await self.inBrowser(browser.driver.get, base + "/llmux/ui")
        await self.inBrowser(
            browser.wait, lambda d: "Missing API key" in browser.notice()
        )
        self.assertEqual(await self.inBrowser(browser.states), {})

        await self.inBrowser(browser.enterKey, TEAM)
        await self.inBrowser(
            browser.wait,
            lambda d: (
                browser.states() == {"alpha": "asleep", "beta": "asleep"}
                and browser.connection() == "live"
                and "not an admin key"
                in browser.script(
                    "return document.getElementById('admin-hint').textContent"
                )
            ),
        )
        self.assertFalse(await self.inBrowser(browser.adminShown))

        await self.inBrowser(browser.enterKey, ADMIN)
        await self.inBrowser(browser.wait, lambda d: browser.adminShown())
        await self.inBrowser(browser.click, "alpha", "pin")
        await self.inBrowser(
            browser.wait,
            lambda d: (
                "pinned"
                in browser.script(
                    "return document.querySelector("
                    "\"tr[data-model='alpha'] td.pin\").textContent"
                )
            ),
            5,
        )
