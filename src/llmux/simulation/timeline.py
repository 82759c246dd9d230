# -*- test-case-name: tests.test_simulation_report -*-
"""
A picture of simulation runs: an SVG timeline per policy, written by hand
(no plotting library), one panel per run sharing one time axis.

Each panel has two lanes:

  - the GPU: the colour of the model being served; a lighter tint of the
    awake model while it has nothing to do; dark grey while a switch runs
    (C{sleep} and C{wake} hooks); red stripes while requests wait and the
    GPU neither serves nor switches (blocked);
  - the queues: requests waiting for each model over time, one line per
    model in its colour. Each pixel column shows the deepest queue within
    it, so a long run stays a small file.

Both lanes are drawn at the picture's resolution (the state that took most
of each half pixel, the deepest queue of each pixel), so a run of hours is
as small a file as a run of minutes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from xml.sax.saxutils import escape, quoteattr

from .records import Run, Sample
from .stats import Summary

__all__ = ["renderTimeline"]

#: Okabe-Ito colours, distinguishable with the common colour blindnesses.
PALETTE = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#56B4E9",
    "#D55E00",
    "#F0E442",
    "#000000",
)
SWITCHING = "#555555"
IDLE = "#f2f2f2"

WIDTH = 960
LEFT = 70
RIGHT = 20
LANE = 22
QUEUE = 70
PANEL = 40 + LANE + 12 + QUEUE + 28
TOP = 50
LEGEND = 30
COLUMNS_PER_PIXEL = 2


def _color(models: Sequence[str], model: str) -> str:
    return PALETTE[models.index(model) % len(PALETTE)]


def _niceStep(span: float, target: int) -> float:
    """
    A round step (1, 2 or 5 times a power of ten) giving about C{target}
    ticks over C{span}.
    """
    raw = max(span / target, 1e-9)
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * power:
            return factor * power
    return 10 * power


def _timeLabel(secs: float, inMinutes: bool) -> str:
    value = secs / 60 if inMinutes else secs
    text = f"{value:.1f}".rstrip("0").rstrip(".")
    return f"{text} min" if inMinutes else f"{text} s"


def _stateOf(models: Sequence[str], sample: Sample) -> tuple[str, str | None]:
    """
    What the GPU lane shows for C{sample}: a state and, for serving and
    awake-idle, the model.
    """
    for model, count in zip(models, sample.executing, strict=True):
        if count:
            return "serving", model
    if sample.switching:
        return "switching", None
    if any(sample.queued):
        return "blocked", None
    return "idle", sample.awake


class _Scale:
    def __init__(self, until: float) -> None:
        self.until = until
        self.span = WIDTH - LEFT - RIGHT

    def x(self, t: float) -> float:
        return LEFT + self.span * min(max(t, 0.0), self.until) / self.until


def _fill(models: Sequence[str], state: str, model: str | None) -> str:
    """
    The fill attributes of a stretch of the GPU lane.
    """
    if state == "serving" and model is not None:
        return f'fill="{_color(models, model)}"'
    if state == "idle" and model is not None:
        return f'fill="{_color(models, model)}" fill-opacity="0.25"'
    if state == "switching":
        return f'fill="{SWITCHING}"'
    if state == "blocked":
        return 'fill="url(#blocked)"'
    return f'fill="{IDLE}"'


_State = tuple[str, str | None]


def _dominantStates(run: Run, scale: _Scale) -> list[_State | None]:
    """
    For each column of the GPU lane, the state that took most of its time
    (C{None} for columns after the end of the run).
    """
    columns = max(1, int(scale.span * COLUMNS_PER_PIXEL))
    width = scale.until / columns
    shares: list[dict[_State, float]] = [{} for _ in range(columns)]
    for here, end in run.stretches():
        start, stop = here.t, min(end, scale.until)
        if start >= scale.until:
            break
        state = _stateOf(run.models, here)
        column = int(start / width)
        while column < columns and column * width < stop:
            overlap = min(stop, (column + 1) * width) - max(start, column * width)
            if overlap > 0:
                shares[column][state] = shares[column].get(state, 0.0) + overlap
            column += 1
    return [
        max(share.items(), key=lambda item: item[1])[0] if share else None
        for share in shares
    ]


def _stateLane(run: Run, scale: _Scale, y: float) -> list[str]:
    """
    The GPU lane, drawn in columns of half a pixel: each shows the state
    that took most of its time, and a run of equal columns is one rectangle.
    That keeps every switch and busy stretch of a long run visible while the
    file stays small.
    """
    parts = []
    columns = _dominantStates(run, scale)
    start = 0
    for column in range(1, len(columns) + 1):
        if column < len(columns) and columns[column] == columns[start]:
            continue
        state = columns[start]
        if state is not None:
            x0 = LEFT + start / COLUMNS_PER_PIXEL
            x1 = LEFT + column / COLUMNS_PER_PIXEL
            parts.append(
                f'<rect x="{x0:.1f}" y="{y}" width="{x1 - x0:.1f}" height="{LANE}"'
                f" {_fill(run.models, *state)}/>"
            )
        start = column
    return parts


def _queueLane(run: Run, scale: _Scale, y: float) -> list[str]:
    """
    One step line per model: the deepest queue in each pixel column.
    """
    columns = int(scale.span)
    deepest = [[0] * columns for _ in run.models]
    for here, until in run.stretches():
        if here.t >= scale.until:
            break
        end = min(until, scale.until)
        first = int(scale.x(here.t) - LEFT)
        last = max(first, math.ceil(scale.x(end) - LEFT) - 1)
        for m, depth in enumerate(here.queued):
            if not depth:
                continue
            row = deepest[m]
            for column in range(first, min(last, columns - 1) + 1):
                if depth > row[column]:
                    row[column] = depth
    top = max((max(row) for row in deepest), default=0)
    scaleMax = max(1, top)
    parts = [
        f'<text x="{LEFT - 6}" y="{y + 10}" text-anchor="end">{top}</text>',
        f'<text x="{LEFT - 6}" y="{y + QUEUE}" text-anchor="end">0</text>',
        f'<line x1="{LEFT}" y1="{y + QUEUE}" x2="{WIDTH - RIGHT}"'
        f' y2="{y + QUEUE}" stroke="#bbbbbb"/>',
    ]
    for m, model in enumerate(run.models):
        row = deepest[m]
        if not any(row):
            continue
        steps = [f"M{LEFT},{_level(y, row[0], scaleMax):.1f}"]
        for column in range(1, columns):
            if row[column] != row[column - 1]:
                level = _level(y, row[column], scaleMax)
                steps.append(f"H{LEFT + column}V{level:.1f}")
        steps.append(f"H{LEFT + columns}")
        parts.append(
            f'<path d="{"".join(steps)}" fill="none"'
            f' stroke="{_color(run.models, model)}" stroke-width="1.2"/>'
        )
    return parts


def _level(y: float, depth: int, scaleMax: int) -> float:
    """
    The height of a queue C{depth} in the queue lane at C{y}.
    """
    return y + QUEUE - QUEUE * depth / scaleMax


def _axis(scale: _Scale, y: float) -> list[str]:
    inMinutes = scale.until >= 600
    step = _niceStep(scale.until / 60 if inMinutes else scale.until, 8)
    step = step * 60 if inMinutes else step
    parts = [
        f'<line x1="{LEFT}" y1="{y}" x2="{WIDTH - RIGHT}" y2="{y}" stroke="#888888"/>'
    ]
    tick = 0.0
    while tick <= scale.until + 1e-9:
        x = scale.x(tick)
        parts.append(
            f'<line x1="{x:.1f}" y1="{y}" x2="{x:.1f}" y2="{y + 4}" stroke="#888888"/>'
        )
        parts.append(
            f'<text x="{x:.1f}" y="{y + 15}" text-anchor="middle">'
            f"{_timeLabel(tick, inMinutes)}</text>"
        )
        tick += step
    return parts


def _panel(run: Run, summary: Summary, scale: _Scale, y: float) -> list[str]:
    wait = summary.wait
    maxWait = "-" if wait is None else f"{wait.max:.1f} s"
    heading = (
        f"{summary.policy}: {summary.switches} switches,"
        f" utilization {100 * summary.utilization:.1f}%,"
        f" served {summary.served}/{summary.requests}, max wait {maxWait}"
    )
    gpu = y + 24
    queues = gpu + LANE + 12
    parts = [
        f'<text x="{LEFT}" y="{y + 16}" font-weight="bold">{escape(heading)}</text>',
        f'<text x="{LEFT - 6}" y="{gpu + LANE / 2 + 4}" text-anchor="end">GPU</text>',
        f'<text x="{LEFT - 6}" y="{queues + QUEUE / 2 + 4}"'
        ' text-anchor="end">queued</text>',
        f'<rect x="{LEFT}" y="{gpu}" width="{scale.span}" height="{LANE}"'
        f' fill="{IDLE}"/>',
    ]
    parts += _stateLane(run, scale, gpu)
    parts += _queueLane(run, scale, queues)
    parts += _axis(scale, queues + QUEUE + 2)
    return parts


def _legend(models: Sequence[str], y: float) -> list[str]:
    items: list[tuple[str, str, str]] = [
        (_color(models, model), "1", f"{model} serving") for model in models
    ]
    items += [
        (_color(models, models[0]), "0.25", "awake, idle"),
        (SWITCHING, "1", "switching"),
        ("url(#blocked)", "1", "blocked (idle while requests wait)"),
    ]
    parts = []
    x = float(LEFT)
    for fill, opacity, label in items:
        parts.append(
            f'<rect x="{x:.0f}" y="{y}" width="14" height="10" fill="{fill}"'
            f' fill-opacity="{opacity}"/>'
        )
        parts.append(f'<text x="{x + 18:.0f}" y="{y + 9}">{escape(label)}</text>')
        x += 18 + 6.5 * len(label) + 16
    return parts


def renderTimeline(
    title: str,
    runs: Sequence[tuple[Run, Summary]],
    until: float | None = None,
) -> str:
    """
    An SVG document with one timeline panel per run, in order.

    @param title: the heading of the picture.
    @param until: the end of the time axis in seconds; by default the end of
        the longest run. The headings' figures are always those of the whole
        runs.
    """
    if not runs:
        raise ValueError("nothing to draw")
    longest = max(run.end for run, _ in runs)
    end = longest if until is None else until
    if end < longest:
        inMinutes = end >= 600
        title = f"{title} (first {_timeLabel(end, inMinutes)} shown)"
    scale = _Scale(max(end, 1e-6))
    models = runs[0][0].models
    height = TOP + PANEL * len(runs) + LEGEND
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}"'
        f' height="{height}" viewBox="0 0 {WIDTH} {height}"'
        ' font-family="sans-serif" font-size="11">',
        f"<title>{escape(title)}</title>",
        "<defs>",
        '<pattern id="blocked" width="6" height="6"'
        ' patternUnits="userSpaceOnUse" patternTransform="rotate(45)">',
        '<rect width="6" height="6" fill="#fbe3e1"/>',
        '<line x1="0" y1="0" x2="0" y2="6" stroke="#d62728" stroke-width="3"/>',
        "</pattern>",
        "</defs>",
        f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>',
        f'<text x="{LEFT}" y="24" font-size="14" font-weight="bold">'
        f"{escape(title)}</text>",
    ]
    for index, (run, summary) in enumerate(runs):
        group = f"<g id={quoteattr('policy-' + run.policy)}>"
        parts.append(group)
        parts += _panel(run, summary, scale, TOP + PANEL * index)
        parts.append("</g>")
    parts += _legend(models, TOP + PANEL * len(runs) + 6)
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
