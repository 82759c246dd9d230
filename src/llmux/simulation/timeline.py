# -*- test-case-name: tests.test_simulation_report -*-
"""
A picture of simulation runs: an SVG timeline per policy, written by hand
(no plotting library), one panel per run sharing one time axis.

Each panel has two parts:

  - the GPU lane: the colour of the model being served; a lighter tint of
    the awake model while it has nothing to do; dark grey while a switch
    runs (C{sleep} and C{wake} hooks); red stripes while requests wait and
    the GPU neither serves nor switches (blocked). With a declared capacity,
    several models are awake at once, so there is one such lane per model
    instead: its colour while it serves, its tint while it is awake and
    idle, dark grey while its own C{wake} or C{sleep} runs, red stripes
    while its requests wait and it neither serves nor switches (for room,
    or for the policy), empty while it is asleep;
  - the queues: requests waiting for each model over time, one line per
    model in its colour. Each pixel column shows the deepest queue within
    it, so a long run stays a small file.

Both are drawn at the picture's resolution (the state that took most of
each half pixel, the deepest queue of each pixel), so a run of hours is as
small a file as a run of minutes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from xml.sax.saxutils import escape, quoteattr

from ..interfaces import ModelState
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
#: Space between the lanes of a panel with one lane per model.
LANE_GAP = 4
QUEUE = 70
#: The height of a panel with one state lane.
PANEL = 40 + LANE + 12 + QUEUE + 28
TOP = 50
LEGEND = 30
COLUMNS_PER_PIXEL = 2
#: The mean width of a character of the title at 14 px, bold.
TITLE_CHAR_WIDTH = 8.6
#: The longest model name a lane's label shows in full.
LABEL_CHARS = 10
#: States in which a model's own C{wake}, C{sleep} or C{unload} hook runs.
HOOK_STATES = frozenset({ModelState.WAKING, ModelState.SLEEPING, ModelState.UNLOADING})

#: What a state lane shows at an instant: a state and, for serving and
#: awake-idle, the model.
_State = tuple[str, str | None]
_StateOf = Callable[[Sample], _State]


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


def _stateOf(models: Sequence[str], sample: Sample) -> _State:
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
    return "idle", sample.awake[0] if sample.awake else None


def _modelStateOf(models: Sequence[str], index: int, sample: Sample) -> _State:
    """
    What the lane of the model at C{index} shows for C{sample}.
    """
    model = models[index]
    if sample.executing[index]:
        return "serving", model
    if sample.states and sample.states[index] in HOOK_STATES:
        return "switching", None
    if sample.queued[index]:
        return "blocked", None
    return "idle", model if model in sample.awake else None


def _lanes(run: Run) -> list[tuple[str, _StateOf]]:
    """
    The state lanes of a run's panel, with their labels: the GPU's, or
    with a declared capacity one per model.
    """
    if run.capacity is None:
        return [("GPU", partial(_stateOf, run.models))]
    return [
        (_label(model), partial(_modelStateOf, run.models, index))
        for index, model in enumerate(run.models)
    ]


def _label(model: str) -> str:
    if len(model) <= LABEL_CHARS:
        return model
    return model[: LABEL_CHARS - 1] + "\u2026"


def _panelHeight(run: Run) -> int:
    return PANEL + (len(_lanes(run)) - 1) * (LANE + LANE_GAP)


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


def _dominantStates(run: Run, scale: _Scale, stateOf: _StateOf) -> list[_State | None]:
    """
    For each column of a state lane, the state that took most of its time
    (C{None} for columns after the end of the run).
    """
    columns = max(1, int(scale.span * COLUMNS_PER_PIXEL))
    width = scale.until / columns
    shares: list[dict[_State, float]] = [{} for _ in range(columns)]
    for here, end in run.stretches():
        start, stop = here.t, min(end, scale.until)
        if start >= scale.until:
            break
        state = stateOf(here)
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


def _stateLane(run: Run, scale: _Scale, y: float, stateOf: _StateOf) -> list[str]:
    """
    A state lane, drawn in columns of half a pixel: each shows the state
    that took most of its time, and a run of equal columns is one rectangle.
    That keeps every switch and busy stretch of a long run visible while the
    file stays small.
    """
    parts = []
    columns = _dominantStates(run, scale, stateOf)
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


def _heading(summary: Summary) -> str:
    wait = summary.wait
    maxWait = "-" if wait is None else f"{wait.max:.1f} s"
    residency = summary.residency
    if residency is None:
        switches = f"{summary.switches} switches"
    else:
        switches = f"{summary.switches} wakes, {residency.evictions} evictions"
    return (
        f"{summary.policy}: {switches},"
        f" utilization {100 * summary.utilization:.1f}%,"
        f" served {summary.served}/{summary.requests}, max wait {maxWait}"
    )


def _panel(run: Run, summary: Summary, scale: _Scale, y: int) -> list[str]:
    lanes = _lanes(run)
    tops = [y + 24 + index * (LANE + LANE_GAP) for index in range(len(lanes))]
    queues = tops[-1] + LANE + 12
    parts = [
        f'<text x="{LEFT}" y="{y + 16}" font-weight="bold">'
        f"{escape(_heading(summary))}</text>",
    ]
    parts += [
        f'<text x="{LEFT - 6}" y="{top + LANE / 2 + 4}" text-anchor="end">'
        f"{escape(label)}</text>"
        for (label, _), top in zip(lanes, tops, strict=True)
    ]
    parts.append(
        f'<text x="{LEFT - 6}" y="{queues + QUEUE / 2 + 4}"'
        ' text-anchor="end">queued</text>'
    )
    parts += [
        f'<rect x="{LEFT}" y="{top}" width="{scale.span}" height="{LANE}"'
        f' fill="{IDLE}"/>'
        for top in tops
    ]
    for (_, stateOf), top in zip(lanes, tops, strict=True):
        parts += _stateLane(run, scale, top, stateOf)
    parts += _queueLane(run, scale, queues)
    parts += _axis(scale, queues + QUEUE + 2)
    return parts


def _legend(models: Sequence[str], y: float, perModel: bool) -> list[str]:
    items: list[tuple[str, str, str]] = [
        (_color(models, model), "1", f"{model} serving") for model in models
    ]
    if perModel:
        items += [
            (_color(models, models[0]), "0.25", "awake, idle"),
            (SWITCHING, "1", "waking or sleeping"),
            ("url(#blocked)", "1", "its requests wait"),
        ]
    else:
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


def _titleSize(title: str) -> str:
    """
    The title's font size: 14, or smaller for a title too long to fit in
    that size (many models, a capacity).
    """
    fits = (WIDTH - LEFT - RIGHT) / TITLE_CHAR_WIDTH
    if len(title) <= fits:
        return "14"
    return f"{max(9.0, 14 * fits / len(title)):.1f}"


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
    tops = [TOP]
    for run, _ in runs:
        tops.append(tops[-1] + _panelHeight(run))
    height = tops[-1] + LEGEND
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
        f'<text x="{LEFT}" y="24" font-size="{_titleSize(title)}"'
        f' font-weight="bold">{escape(title)}</text>',
    ]
    for (run, summary), top in zip(runs, tops, strict=False):
        group = f"<g id={quoteattr('policy-' + run.policy)}>"
        parts.append(group)
        parts += _panel(run, summary, scale, top)
        parts.append("</g>")
    perModel = any(run.capacity is not None for run, _ in runs)
    parts += _legend(models, tops[-1] + 6, perModel)
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
