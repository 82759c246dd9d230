"""
Tests for L{llmux.tap}, the twistd plugin and the console script: options,
and one-line errors before the reactor starts.
"""

from __future__ import annotations

import io
import os
import sys

from twisted.application.service import IServiceMaker
from twisted.internet import reactor
from twisted.internet.utils import getProcessOutputAndValue
from twisted.plugin import getPlugins
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase, TestCase

from llmux import __version__
from llmux.policies.round_robin import RoundRobinPolicy
from llmux.tap import Options

CONFIG = """\
models:
  a: {port: 18101, wake: "true", sleep: "true", alive: "true"}
  b: {port: 18102, wake: "true", sleep: "true", alive: "true"}
policy:
  quantum_secs: 12
port: 3999
"""

ROOT = FilePath(__file__).parent().parent()


def writeConfig(
    case: SynchronousTestCase, text: str = CONFIG, name: str = "c.yaml"
) -> str:
    directory = FilePath(case.mktemp())
    directory.makedirs()
    path = directory.child(name)
    path.setContent(text.encode())
    return path.path


class OptionsTests(SynchronousTestCase):
    """
    Parsing the command line.
    """

    def parse(self, *args: str) -> Options:
        options = Options()
        options.parseOptions(list(args))
        return options

    def fails(self, *args: str) -> str:
        """
        Parse C{args}, expecting exit status 1; return what was written to
        stderr.
        """
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        with self.assertRaises(SystemExit) as caught:
            self.parse(*args)
        self.assertEqual(caught.exception.code, 1)
        return stderr.getvalue()

    def test_defaults(self) -> None:
        """
        The config's port and the fifo policy are the defaults; round_robin
        reads its quantum from the policy table.
        """
        path = writeConfig(self, CONFIG.replace("  quantum_secs: 12\n", ""))
        options = self.parse("--config", path)
        self.assertEqual(options.listen, "tcp:3999:backlog=1024")
        self.assertEqual(options.policy.name, "fifo")
        self.assertEqual(options.config.modelNames, ("a", "b"))
        rr = self.parse("-c", writeConfig(self), "--policy", "round_robin")
        assert isinstance(rr.policy, RoundRobinPolicy)
        self.assertEqual(rr.policy.quantumSecs, 12)

    def test_portAndListen(self) -> None:
        """
        --port overrides the config; --listen overrides both.
        """
        path = writeConfig(self, CONFIG.replace("  quantum_secs: 12\n", ""))
        self.assertEqual(
            self.parse("-c", path, "-p", "4000").listen, "tcp:4000:backlog=1024"
        )
        listen = "tcp:4001:interface=127.0.0.1"
        self.assertEqual(
            self.parse("-c", path, "-p", "4000", "--listen", listen).listen, listen
        )

    def test_badConfig(self) -> None:
        """
        A config error is one line naming the file and the field.
        """
        path = writeConfig(
            self, "models:\n  a: {port: 70000, wake: w, sleep: s, alive: a}\n"
        )
        self.assertEqual(
            self.fails("-c", path),
            f"llmux: error: {path}: models.a.port: must be from 1 to 65535, not 70000\n",
        )

    def test_missingConfig(self) -> None:
        """
        The default config.yaml missing is one line too.
        """
        message = self.fails("-c", "/nonexistent/config.yaml")
        self.assertEqual(
            message,
            "llmux: error: /nonexistent/config.yaml: cannot read: No such file or directory\n",
        )

    def test_policyRejectsSetting(self) -> None:
        """
        A policy-specific key the chosen policy does not know is an error
        naming the file and the field.
        """
        path = writeConfig(self)
        message = self.fails("-c", path, "--policy", "fifo")
        self.assertTrue(
            message.startswith(
                f"llmux: error: {path}: policy.quantum_secs: unknown key"
            )
        )

    def test_unknownPolicy(self) -> None:
        """
        An unknown policy name lists the policies found.
        """
        message = self.fails("-c", writeConfig(self), "--policy", "nope")
        self.assertEqual(
            message,
            "llmux: error: unknown policy 'nope' (found: cost_aware, fifo, round_robin)\n",
        )

    def test_evictionPolicy(self) -> None:
        """
        The config's eviction policy is built through the plugin system; an
        unknown name is one line naming the file and the key, and listing
        the eviction policies found.
        """
        base = CONFIG.replace("  quantum_secs: 12\n", "")
        options = self.parse(
            "-c", writeConfig(self, base + "eviction: cheapest_wake\n")
        )
        self.assertEqual(options.eviction.name, "cheapest_wake")
        self.assertEqual(self.parse("-c", writeConfig(self, base)).eviction.name, "lru")
        path = writeConfig(self, base + "eviction: nope\n")
        self.assertEqual(
            self.fails("-c", path),
            f"llmux: error: {path}: eviction: unknown eviction policy 'nope'"
            " (found: cheapest_wake, lru)\n",
        )

    def test_badOptions(self) -> None:
        """
        Unknown options, bad ports and bad endpoints are one line each.
        """
        path = writeConfig(self)
        self.assertEqual(
            self.fails("--bogus"),
            "llmux: error: option --bogus not recognized (see llmux --help)\n",
        )
        self.assertIn("is not a port", self.fails("-c", path, "-p", "0"))
        message = self.fails(
            "-c", path, "--listen", "tcp:notaport", "--policy", "round_robin"
        )
        self.assertTrue(
            message.startswith("llmux: error: invalid listen endpoint 'tcp:notaport'")
        )
        self.assertEqual(self.fails("-p", "x").count("\n"), 1)

    def test_serviceTunesProcess(self) -> None:
        """
        The service twistd runs tunes its process when it starts (frozen
        start-up heap, GC thresholds, Twisted's cycles broken); test
        processes building services themselves do not.
        """
        from llmux.service import LlmuxService
        from llmux.tap import makeService

        options = self.parse("-c", writeConfig(self), "--policy", "round_robin")
        service = makeService(options)
        assert isinstance(service, LlmuxService)
        self.assertTrue(service.tune)

    def test_synopsis(self) -> None:
        """
        The help's first line names the command the user ran: C{llmux}, or
        twistd's form under C{twistd llmux}.
        """
        self.patch(sys, "argv", ["/usr/local/bin/llmux", "--help"])
        self.assertEqual(Options().getSynopsis(), "Usage: llmux [options]")
        self.patch(sys, "argv", ["/usr/local/bin/twistd", "llmux", "--help"])
        self.assertNotIn("Usage: llmux", Options().getSynopsis())

    def test_version(self) -> None:
        """
        --version prints llmux's version.
        """
        stdout = io.StringIO()
        self.patch(sys, "stdout", stdout)
        with self.assertRaises(SystemExit) as caught:
            self.parse("--version")
        self.assertEqual(caught.exception.code, 0)
        self.assertEqual(stdout.getvalue(), f"llmux {__version__.public()}\n")

    def test_listPolicies(self) -> None:
        """
        --list-policies prints each policy found with its description.
        """
        stdout = io.StringIO()
        self.patch(sys, "stdout", stdout)
        with self.assertRaises(SystemExit):
            self.parse("--list-policies")
        lines = stdout.getvalue().splitlines()
        self.assertEqual(
            [line.split()[0] for line in lines if line],
            [
                "Switch",
                "cost_aware",
                "fifo",
                "round_robin",
                "Eviction",
                "cheapest_wake",
                "lru",
            ],
        )
        self.assertEqual(lines[0], "Switch policies (--policy NAME):")
        self.assertIn("Switch as soon as a request arrives", lines[2])
        self.assertEqual(lines[4], "")
        self.assertEqual(lines[5], "Eviction policies (eviction: NAME in the config):")


class PluginTests(SynchronousTestCase):
    """
    twistd finds the llmux service maker.
    """

    def test_serviceMaker(self) -> None:
        """
        The plugin system finds an IServiceMaker named llmux using
        llmux.tap's Options.
        """
        [maker] = [m for m in getPlugins(IServiceMaker) if m.tapname == "llmux"]
        self.assertIs(maker.options, Options)


class CommandLineTests(TestCase):
    """
    The real console entry points, in subprocesses.
    """

    timeout = 60

    async def runPython(self, code: str, *args: str) -> tuple[bytes, bytes, int]:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([ROOT.child("src").path, *sys.path]),
        }
        result: tuple[bytes, bytes, int] = await getProcessOutputAndValue(
            sys.executable, ["-c", code, *args], env=env, reactor=reactor
        )
        return result

    async def test_consoleScriptBadConfig(self) -> None:
        """
        `llmux -c missing.yaml` exits 1 with one line on stderr, no traceback.
        """
        out, err, code = await self.runPython(
            "import sys; from llmux._cli import main; main(sys.argv[1:])",
            "-c",
            "missing.yaml",
        )
        self.assertEqual(code, 1)
        self.assertEqual(
            err, b"llmux: error: missing.yaml: cannot read: No such file or directory\n"
        )

    async def test_twistdUnknownPolicy(self) -> None:
        """
        `twistd -n llmux --policy nope` exits 1 with one line naming the
        policies found.
        """
        path = writeConfig(self)
        out, err, code = await self.runPython(
            "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()",
            "-n",
            "--pidfile=",
            "llmux",
            "-c",
            path,
            "--policy",
            "nope",
        )
        self.assertEqual(code, 1)
        self.assertEqual(
            err,
            b"llmux: error: unknown policy 'nope' (found: cost_aware, fifo, round_robin)\n",
        )
