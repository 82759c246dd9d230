# -*- test-case-name: tests.test_simulation_engine -*-
"""
The policy lab: play a workload through the real switcher and real policy
plugins on simulated time, and report what each policy did to it.

    llmux simulate --workload interleaved --switch-secs 10 \\
        --policies fifo,round_robin,cost_aware --svg timelines/

L{Simulation} runs one policy on one L{Scenario}; L{summarize} turns the
L{Run} into the report's figures. A scenario with a capacity, and each
model's L{Residency}, keeps several models awake at once, as llmux would.
"""

from .engine import Scenario, Simulation, simulate
from .hooks import SimulatedHookRunner, SwitchCosts
from .records import Outcome, Run, Sample
from .residency import Residency
from .stats import Summary, summarize
from .workloads import Request, ServiceTimes

__all__ = [
    "Outcome",
    "Request",
    "Residency",
    "Run",
    "Sample",
    "Scenario",
    "ServiceTimes",
    "Simulation",
    "SimulatedHookRunner",
    "Summary",
    "SwitchCosts",
    "simulate",
    "summarize",
]
