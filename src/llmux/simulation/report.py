# -*- test-case-name: tests.test_simulation_report -*-
"""
The simulator's report: one text table for people, one JSON document for
machines, from the L{Summary} of each policy run on the same scenario.

The JSON document has the same figures as the table, unrounded, with the
scenario's description under C{"scenario"} and one object per policy under
C{"policies"}, in the order they were run. Each policy object holds its
C{settings} (as the policy describes them), the counts (C{requests},
C{served}, C{timed_out}, C{refused}, C{failed}, C{unfinished}, C{switches}),
C{mean_switch_secs}, C{utilization}, C{throughput_per_sec}, C{time_secs}
(C{wall}, C{serving}, C{switching}, C{blocked}, C{idle}), C{wait_secs}
(C{mean}, C{p50}, C{p95}, C{p99}, C{max}; C{null} if nothing started), the
same per model under C{models} (with C{slot_wait_secs}: the wait for the
model alone, without queueing inside the backend) and C{policy_errors}.

With a declared capacity, each policy object also holds C{residency}:
C{admissions} (wakes that put nothing to sleep first), C{evictions} (models
put to sleep to make room), C{idle_sleeps} (after C{idle_ttl_secs}),
C{wakes} by model, C{mean_awake} and C{max_awake} (models awake at once);
and the table gets a residency table with the same figures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .stats import ResidencySummary, Summary, WaitStats

__all__ = ["formatTable", "reportJSON"]


def _table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1
) -> list[str]:
    """
    Lay out C{rows} under C{headers}, two spaces apart: the first C{left}
    columns left-aligned, the others right-aligned.
    """
    widths = [
        max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)
    ]

    def line(cells: Sequence[str]) -> str:
        laid = [
            cell.ljust(width) if i < left else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(laid).rstrip()

    return [line(headers), *(line(row) for row in rows)]


def _infoValue(value: object) -> str:
    """
    A scenario value as the table's header shows it: lists joined, mappings
    as C{key=value} pairs, numbers in their shortest form.
    """
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_infoValue(v) for v in value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_infoValue(v)}" for k, v in value.items())
    return "-" if value is None else str(value)


def _secs(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if value < 1000 else f"{value:.0f}"


def _share(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole > 0 else "-"


def formatTable(info: Mapping[str, object], summaries: Sequence[Summary]) -> str:
    """
    The report as text: a header describing the scenario, a table of the
    policies side by side, and a table of each model's waits per policy.

    @param info: what describes the scenario, printed as C{key: value}
        lines in order.
    """
    lines = [f"{key}: {_infoValue(value)}" for key, value in info.items()]
    lines.append("")
    headers = [
        "policy",
        "served",
        "timed out",
        "refused",
        "switches",
        "utilization",
        "req/s",
        "serving",
        "switching",
        "blocked",
        "idle",
    ]
    rows = []
    for s in summaries:
        wall = s.time.wall
        rows.append(
            [
                s.policy,
                f"{s.served}/{s.requests}",
                str(s.timedOut),
                str(s.refused),
                str(s.switches),
                f"{100 * s.utilization:.1f}%",
                f"{s.throughput:.3f}",
                _share(s.time.serving, wall),
                _share(s.time.switching, wall),
                _share(s.time.blocked, wall),
                _share(s.time.idle, wall),
            ]
        )
    lines += _table(headers, rows)
    lines.append("")
    waitHeaders = [
        "wait (s)",
        "model",
        "served",
        "timed out",
        "refused",
        "mean",
        "p50",
        "p95",
        "p99",
        "max",
    ]
    waitRows = []
    for s in summaries:
        for index, m in enumerate(s.models):
            w = m.wait
            waitRows.append(
                [
                    s.policy if index == 0 else "",
                    m.model,
                    f"{m.served}/{m.requests}",
                    str(m.timedOut),
                    str(m.refused),
                    *_waitCells(w),
                ]
            )
    lines += _table(waitHeaders, waitRows, left=2)
    lines += _residencyTable(summaries)
    notes = []
    for s in summaries:
        if s.unfinished:
            notes.append(
                f"{s.policy}: {s.unfinished} requests were still waiting when"
                " the run was cut off"
            )
        if s.failed:
            notes.append(f"{s.policy}: {s.failed} requests failed")
        if s.policyErrors:
            notes.append(
                f"{s.policy}: the switcher logged {len(s.policyErrors)} policy"
                f" errors; first: {s.policyErrors[0]}"
            )
    if notes:
        lines += ["", *notes]
    lines += [
        "",
        "utilization: serving / (serving + switching + blocked); blocked: not"
        " serving or switching while requests wait.",
        "wait: from arrival until the backend starts on the request;"
        " refused: turned away (503), the model's queue full (max_queue) or"
        " only pinned models in its way.",
    ]
    if any(s.residency is not None for s in summaries):
        lines.append(
            "residency: wakes: wake hooks run; admitted: woken without putting"
            " another model to sleep; evicted: put to sleep to make room; idle"
            " sleeps: after idle_ttl_secs; awake: models up at once."
        )
    return "\n".join(lines) + "\n"


def _residencyTable(summaries: Sequence[Summary]) -> list[str]:
    """
    The residency table, after an empty line: one row per policy run with
    a declared capacity (none without).
    """
    headers = [
        "residency",
        "wakes",
        "admitted",
        "evicted",
        "idle sleeps",
        "awake (mean)",
        "awake (max)",
    ]
    rows = [
        [
            s.policy,
            str(s.switches),
            str(r.admissions),
            str(r.evictions),
            str(r.idleSleeps),
            f"{r.meanAwake:.2f}",
            str(r.maxAwake),
        ]
        for s in summaries
        if (r := s.residency) is not None
    ]
    if not rows:
        return []
    return ["", *_table(headers, rows)]


def _residencyJSON(r: ResidencySummary) -> dict[str, object]:
    return {
        "admissions": r.admissions,
        "evictions": r.evictions,
        "idle_sleeps": r.idleSleeps,
        "wakes": dict(r.wakes),
        "mean_awake": r.meanAwake,
        "max_awake": r.maxAwake,
    }


def _waitCells(wait: WaitStats | None) -> list[str]:
    if wait is None:
        return ["-"] * 5
    return [_secs(v) for v in (wait.mean, wait.p50, wait.p95, wait.p99, wait.max)]


def _waitJSON(wait: WaitStats | None) -> dict[str, float] | None:
    if wait is None:
        return None
    return {
        "mean": wait.mean,
        "p50": wait.p50,
        "p95": wait.p95,
        "p99": wait.p99,
        "max": wait.max,
    }


def _summaryJSON(s: Summary) -> dict[str, object]:
    document = _countsJSON(s)
    if s.residency is not None:
        document["residency"] = _residencyJSON(s.residency)
    return document


def _countsJSON(s: Summary) -> dict[str, object]:
    return {
        "policy": s.policy,
        "settings": dict(s.settings),
        "requests": s.requests,
        "served": s.served,
        "timed_out": s.timedOut,
        "refused": s.refused,
        "failed": s.failed,
        "unfinished": s.unfinished,
        "switches": s.switches,
        "mean_switch_secs": s.switchSecs,
        "utilization": s.utilization,
        "throughput_per_sec": s.throughput,
        "time_secs": {
            "wall": s.time.wall,
            "serving": s.time.serving,
            "switching": s.time.switching,
            "blocked": s.time.blocked,
            "idle": s.time.idle,
        },
        "wait_secs": _waitJSON(s.wait),
        "models": {
            m.model: {
                "requests": m.requests,
                "served": m.served,
                "timed_out": m.timedOut,
                "refused": m.refused,
                "failed": m.failed,
                "unfinished": m.unfinished,
                "wait_secs": _waitJSON(m.wait),
                "slot_wait_secs": _waitJSON(m.slotWait),
            }
            for m in s.models
        },
        "policy_errors": list(s.policyErrors),
    }


def reportJSON(
    info: Mapping[str, object], summaries: Sequence[Summary]
) -> dict[str, object]:
    """
    The report as a JSON-ready dict; see the module docstring.
    """
    return {
        "scenario": dict(info),
        "policies": [_summaryJSON(s) for s in summaries],
    }
