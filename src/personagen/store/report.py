"""A self-contained HTML report of one run: inputs, plots, Q/A pairs, rejections, advice.

`report.html` loads nothing: the CSS is inline, the plots are SVG drawn here in Python, and a
Content-Security-Policy forbids every fetch, so the file opens offline and leaks nothing.
Every piece of user or model text goes through `html.escape`.

Plots carry stable ids for tests and styling: `#plot-scores` (one `svg.plot-score` per metric,
`polyline.series` plus `line.baseline`), `#plot-tokens` and `#plot-time` (`rect.bar`).
"""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from personagen.state.items import QAPair

REPORT_NAME = "report.html"
# No fetch of any kind: inline styles and inline SVG only.
_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
    "form-action 'none'"
)

_CSS = """
:root { --fg:#1d2330; --muted:#5b6578; --line:#d8dde6; --accent:#2f6fdf; --ok:#1b8a4b;
  --bad:#c0392b; --warn:#b7791f; --bg:#ffffff; --soft:#f5f7fa; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--fg); background: var(--bg); }
header { padding: 1.2rem 2rem; background: var(--soft); border-bottom: 1px solid var(--line); }
header h1 { margin: 0 0 .4rem; font-size: 1.4rem; }
nav { padding: .5rem 2rem; border-bottom: 1px solid var(--line); font-size: .9rem; }
nav a { margin-right: 1rem; color: var(--accent); text-decoration: none; }
main { padding: 0 2rem 3rem; max-width: 1100px; }
section { margin-top: 2rem; }
h2 { font-size: 1.15rem; border-bottom: 2px solid var(--line); padding-bottom: .2rem; }
h3 { font-size: 1rem; margin: .2rem 0; }
table { border-collapse: collapse; margin: .4rem 0; font-size: .9rem; }
th, td { border: 1px solid var(--line); padding: .25rem .5rem; text-align: left;
  vertical-align: top; }
th { background: var(--soft); font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; margin: 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; }
.badge { display: inline-block; padding: 0 .45rem; border-radius: .6rem; font-size: .8rem;
  background: var(--soft); border: 1px solid var(--line); }
.badge.accepted, .pass { color: var(--ok); }
.badge.rejected, .fail { color: var(--bad); }
.badge.unanswerable { color: var(--warn); }
article.pair { border: 1px solid var(--line); border-radius: 6px; padding: .7rem 1rem;
  margin: .8rem 0; }
article.pair .question { font-weight: 600; }
article.pair .answer { white-space: pre-wrap; margin: .3rem 0 .5rem; }
.context { background: var(--soft); border-left: 3px solid var(--line); padding: .4rem .6rem;
  margin: .3rem 0; white-space: pre-wrap; font-size: .85rem; }
.context .source, .span-source { color: var(--muted); font-size: .8rem; display: block; }
mark.span { background: #fff1a8; padding: 0 .1rem; }
details summary { cursor: pointer; color: var(--muted); }
ul.reasons li, ul.evidence li { font-size: .9rem; }
ul.spans { padding-left: 1.2rem; }
ul.spans li { margin: .2rem 0; }
h4 { font-size: .9rem; margin: .6rem 0 .2rem; }
.plots { display: flex; flex-wrap: wrap; gap: 1rem; }
figure { margin: 0; }
figcaption { font-size: .85rem; color: var(--muted); }
svg.plot { background: #fff; border: 1px solid var(--line); border-radius: 4px; }
svg .axis { stroke: #9aa3b2; stroke-width: 1; }
svg .grid { stroke: #eef0f4; stroke-width: 1; }
svg text { font: 11px system-ui, sans-serif; fill: #5b6578; }
svg .series { fill: none; stroke: var(--accent); stroke-width: 2; }
svg .point { fill: var(--accent); }
svg .baseline { stroke: var(--bad); stroke-width: 1.5; stroke-dasharray: 6 4; }
svg .bar.input, svg .bar.seconds { fill: var(--accent); }
svg .bar.output { fill: #f0a030; }
svg .bar.overlap { fill: #b9cdf3; }
.warning { color: var(--warn); }
.error { color: var(--bad); }
.empty { color: var(--muted); font-style: italic; }
.muted { color: var(--muted); font-weight: normal; font-size: .85rem; }
pre.prompt { white-space: pre-wrap; background: var(--soft); padding: .5rem; font-size: .8rem; }
p.headline { font-size: 1rem; margin: .3rem 0; }
section.config summary h2 { display: inline; border: none; }
section.config summary { margin-top: 1rem; }
.filterable > input { position: absolute; opacity: 0; pointer-events: none; }
.filterable .controls { display: flex; flex-wrap: wrap; gap: .3rem; margin: .4rem 0; }
.filterable .controls label { border: 1px solid var(--line); border-radius: 1rem;
  padding: 0 .6rem; font-size: .8rem; cursor: pointer; }
.filterable .controls label.status { color: var(--warn); }
.filterable .controls label.min { color: var(--ok); }
.filterable .items { display: flex; flex-direction: column; }
@media print { nav, .filterable .controls { display: none; }
  article.pair { break-inside: avoid; } }
"""

_SECTIONS = (
    ("summary", "Summary"),
    ("pairs", "Q/A pairs"),
    ("rejected", "Rejected"),
    ("judges", "Judges' self-test"),
    ("recommendations", "Recommendations"),
    ("plots", "Plots"),
    ("warnings", "Warnings"),
    ("persona", "Persona"),
    ("goal", "Goal"),
    ("constraints", "Constraints"),
    ("data", "Data"),
)
"""The results first; the configuration (collapsed) below them."""
_COLLAPSED = frozenset({"persona", "goal", "constraints", "data"})


def esc(value: Any) -> str:
    """Escape any value for HTML text and attribute values."""
    return html.escape("" if value is None else str(value), quote=True)


def _slug(value: str) -> str:
    """A safe id fragment."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", value).strip("-") or "x"


def _num(value: Any, digits: int = 2) -> str:
    if isinstance(value, bool) or value is None:
        return esc(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return esc(value)


def _facts(rows: Iterable[tuple[str, Any]]) -> str:
    body = "".join(
        f"<dt>{esc(k)}</dt><dd>{v if isinstance(v, _Raw) else esc(v)}</dd>"
        for k, v in rows
        if v not in (None, "", [], {})
    )
    return f'<dl class="facts">{body}</dl>'


class _Raw(str):
    """Already-escaped HTML."""


def _list(items: Iterable[Any], css: str = "") -> _Raw:
    items = list(items)
    if not items:
        return _Raw('<span class="empty">none</span>')
    cls = f' class="{css}"' if css else ""
    return _Raw(f"<ul{cls}>" + "".join(f"<li>{esc(i)}</li>" for i in items) + "</ul>")


def _table(
    headers: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[int] = ()
) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for index, cell in enumerate(row):
            raw = (
                cell if isinstance(cell, _Raw) else (_num(cell) if index in numeric else esc(cell))
            )
            css = ' class="num"' if index in numeric else ""
            cells.append(f"<td{css}>{raw}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    if not body:
        return '<p class="empty">none</p>'
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


# --------------------------------------------------------------------------------------------
# SVG plots


def _svg_open(svg_id: str, css: str, width: int, height: int, title: str) -> str:
    return (
        f'<svg id="{esc(svg_id)}" class="plot {esc(css)}" role="img" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'aria-label="{esc(title)}"><title>{esc(title)}</title>'
    )


def score_plot(metric: str, points: Sequence[tuple[int, float]], baseline: float | None) -> str:
    """A line chart of one metric's mean score per iteration, with its baseline dashed."""
    width, height = 300, 180
    left, right, top, bottom = 36, 12, 22, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    iterations = [i for i, _ in points] or [1]
    lo, hi = min(iterations), max(iterations)
    span = max(1, hi - lo)

    def x(iteration: float) -> float:
        if hi == lo:
            return left + plot_w / 2
        return left + (iteration - lo) / span * plot_w

    def y(value: float) -> float:
        return top + (1.0 - max(0.0, min(1.0, value))) * plot_h

    parts = [_svg_open(f"plot-score-{_slug(metric)}", "plot-score", width, height, metric)]
    parts.append(f'<text x="{left}" y="14" class="plot-title">{esc(metric)}</text>')
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        ty = y(tick)
        parts.append(
            f'<line class="grid" x1="{left}" x2="{width - right}" y1="{ty:.1f}" y2="{ty:.1f}"/>'
            f'<text x="{left - 4}" y="{ty + 4:.1f}" text-anchor="end">{tick:.2f}</text>'
        )
    parts.append(
        f'<line class="axis" x1="{left}" x2="{left}" y1="{top}" y2="{top + plot_h}"/>'
        f'<line class="axis" x1="{left}" x2="{width - right}" y1="{top + plot_h}" '
        f'y2="{top + plot_h}"/>'
    )
    for iteration in sorted(set(iterations)):
        parts.append(
            f'<text x="{x(iteration):.1f}" y="{height - 10}" text-anchor="middle">'
            f"{iteration}</text>"
        )
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 1}" text-anchor="middle">iteration</text>'
    )
    if baseline is not None:
        by = y(baseline)
        parts.append(
            f'<line class="baseline" x1="{left}" x2="{width - right}" y1="{by:.1f}" '
            f'y2="{by:.1f}" stroke-dasharray="6 4"><title>baseline {baseline:.2f}</title></line>'
        )
    coords = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in points)
    parts.append(f'<polyline class="series" points="{coords}"/>')
    for i, v in points:
        parts.append(
            f'<circle class="point" cx="{x(i):.1f}" cy="{y(v):.1f}" r="3">'
            f"<title>iteration {i}: {v:.3f}</title></circle>"
        )
    parts.append("</svg>")
    return "".join(parts)


def bar_plot(
    svg_id: str,
    title: str,
    rows: Sequence[tuple[str, Sequence[tuple[str, float]]]],
    unit: str,
    totals: Mapping[str, str] | None = None,
) -> str:
    """Horizontal bars, one per label, each stacked from (series, value) segments.

    `totals` replaces the figure printed after a label's bar (default: the segments' sum).
    """
    label_w, right, bar_h, gap, top = 130, 70, 16, 6, 24
    width = 560
    plot_w = width - label_w - right
    height = top + max(1, len(rows)) * (bar_h + gap) + 8
    peak = max((sum(v for _, v in segments) for _, segments in rows), default=0.0) or 1.0
    parts = [_svg_open(svg_id, "plot-bars", width, height, title)]
    parts.append(f'<text x="0" y="14" class="plot-title">{esc(title)}</text>')
    parts.append(
        f'<line class="axis" x1="{label_w}" x2="{label_w}" y1="{top - 4}" y2="{height - 4}"/>'
    )
    for index, (label, segments) in enumerate(rows):
        ry = top + index * (bar_h + gap)
        parts.append(
            f'<text x="{label_w - 6}" y="{ry + bar_h - 4}" text-anchor="end">{esc(label)}</text>'
        )
        cursor = float(label_w)
        for series, value in segments:
            w = max(0.0, value) / peak * plot_w
            parts.append(
                f'<rect class="bar {esc(series)}" x="{cursor:.1f}" y="{ry}" width="{w:.1f}" '
                f'height="{bar_h}"><title>{esc(label)} {esc(series)}: '
                f"{_fmt_value(value, unit)}</title></rect>"
            )
            cursor += w
        total = sum(v for _, v in segments)
        figure = (totals or {}).get(label) or _fmt_value(total, unit)
        parts.append(f'<text x="{cursor + 4:.1f}" y="{ry + bar_h - 4}">{esc(figure)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _fmt_value(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value:.2f} s"
    return f"{int(round(value)):,}"


def _per_node(metadata: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    per_node = metadata.get("usage", {}).get("per_node")
    if per_node:
        return {str(k): dict(v) for k, v in per_node.items()}
    table: dict[str, dict[str, float]] = {}
    for stage in metadata.get("stages", []):
        row = table.setdefault(
            stage["node"], {"seconds": 0.0, "input_tokens": 0, "output_tokens": 0}
        )
        row["seconds"] += float(stage.get("seconds", 0.0))
        row["input_tokens"] += int(stage.get("input_tokens", 0))
        row["output_tokens"] += int(stage.get("output_tokens", 0))
    return table


def _wall_seconds(metadata: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
    """Per node: (wall seconds, summed task seconds).

    Wall time is the union of the node's task intervals, so concurrent tasks (one per
    question in the fan-outs) count once: the time the run really spent in that stage.
    """
    spans: dict[str, list[tuple[float, float]]] = {}
    for stage in metadata.get("stages", []):
        start = float(stage.get("started", 0.0) or 0.0)
        spans.setdefault(str(stage["node"]), []).append(
            (start, start + float(stage.get("seconds", 0.0)))
        )
    result = {}
    for node, intervals in spans.items():
        wall, end = 0.0, float("-inf")
        for start, stop in sorted(intervals):
            if stop <= end:
                continue
            wall += stop - max(start, end)
            end = stop
        result[node] = (wall, sum(stop - start for start, stop in intervals))
    return result


def _plots(metadata: Mapping[str, Any], baseline: Mapping[str, float]) -> str:
    reports = metadata.get("scores_per_iteration", [])
    metrics: dict[str, list[tuple[int, float]]] = {}
    for report in reports:
        for metric, value in report.get("scores", {}).items():
            metrics.setdefault(metric, []).append((int(report["iteration"]), float(value)))
    if metrics:
        charts = "".join(
            f"<figure>{score_plot(m, pts, baseline.get(m))}</figure>" for m, pts in metrics.items()
        )
    else:
        charts = '<p class="empty">no scores were recorded</p>'
    per_node = _per_node(metadata)
    tokens = [
        (
            node,
            [
                ("input", float(r.get("input_tokens", 0))),
                ("output", float(r.get("output_tokens", 0))),
            ],
        )
        for node, r in per_node.items()
    ]
    walls = _wall_seconds(metadata)
    if walls:
        seconds = [
            (node, [("seconds", wall), ("overlap", max(0.0, summed - wall))])
            for node, (wall, summed) in walls.items()
        ]
        figures = {
            node: f"{wall:.2f} s" + (f" (tasks {summed:.2f} s)" if summed > wall + 0.005 else "")
            for node, (wall, summed) in walls.items()
        }
    else:  # older metadata: per-node sums only
        seconds = [
            (node, [("seconds", float(r.get("seconds", 0.0)))]) for node, r in per_node.items()
        ]
        figures = {}
    return (
        "<h3>Mean score per iteration</h3>"
        '<p class="legend">solid: mean over judged pairs; dashed: the baseline</p>'
        f'<div id="plot-scores" class="plots">{charts}</div>'
        '<h3>Tokens and time by stage</h3><div class="plots">'
        f"<figure>{bar_plot('plot-tokens', 'tokens by stage (input + output)', tokens, 'tokens')}"
        "<figcaption>blue: input tokens, orange: output tokens</figcaption></figure>"
        f"<figure>{bar_plot('plot-time', 'seconds by stage', seconds, 's', figures)}"
        "<figcaption>blue: wall-clock seconds the stage was running (concurrent tasks count "
        "once); light: the tasks' summed time beyond that</figcaption></figure>"
        "</div>"
    )


# --------------------------------------------------------------------------------------------
# Q/A pairs


def _highlight(text: str, ranges: Sequence[tuple[int, int]]) -> str:
    """Escape `text`, wrapping the (merged) character ranges in <mark class="span">."""
    merged: list[list[int]] = []
    for start, end in sorted((max(0, s), min(len(text), e)) for s, e in ranges):
        if end <= start:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    out, cursor = [], 0
    for start, end in merged:
        out.append(esc(text[cursor:start]))
        out.append(f'<mark class="span">{esc(text[start:end])}</mark>')
        cursor = end
    out.append(esc(text[cursor:]))
    return "".join(out)


def _sources_html(pair: QAPair, sources: Mapping[str, str]) -> str:
    """The spans the answer rests on, then the retrieved contexts with those spans marked."""
    quotes = [
        f'<li><mark class="span">{esc(span.text)}</mark>'
        f'<span class="span-source">{esc(sources.get(span.doc_id, span.doc_id[:12]))} '
        f"[{span.start}:{span.end}]</span></li>"
        for span in pair.spans
    ]
    spans_html = (
        f'<ul class="spans">{"".join(quotes)}</ul>'
        if quotes
        else '<p class="empty">no source span</p>'
    )
    blocks = []
    for context in pair.contexts:
        ranges = [
            (span.start - context.start, span.end - context.start)
            for span in pair.spans
            if span.doc_id == context.doc_id
            and span.start >= context.start
            and span.end <= context.end
        ]
        source = sources.get(context.doc_id, context.doc_id[:12])
        blocks.append(
            f'<div class="context"><span class="source">{esc(source)} '
            f"[{context.start}:{context.end}] score {context.score:.3f}</span>"
            f"{_highlight(context.text, ranges)}</div>"
        )
    contexts_html = (
        f"<details><summary>retrieved passages ({len(blocks)})</summary>{''.join(blocks)}</details>"
        if blocks
        else ""
    )
    return f"<h4>Rests on</h4>{spans_html}{contexts_html}"


def _scores_html(pair: QAPair, baseline: Mapping[str, float]) -> str:
    if not pair.scores:
        return '<p class="empty">not scored</p>'
    rows = []
    for metric, value in pair.scores.items():
        floor = baseline.get(metric)
        verdict = "" if floor is None else ("pass" if value >= floor else "fail")
        rows.append(
            _Raw(
                f'<tr><td>{esc(metric)}</td><td class="num {verdict}">{value:.2f}</td>'
                f'<td class="num">{"" if floor is None else f"{floor:.2f}"}</td>'
                f"<td>{esc(pair.reasons.get(metric, ''))}</td></tr>"
            )
        )
    return (
        '<table class="scores"><thead><tr><th>metric</th><th>score</th><th>baseline</th>'
        f"<th>judge's reason</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _pair_html(
    pair: QAPair,
    sources: Mapping[str, str],
    baseline: Mapping[str, float],
    classes: Sequence[str] = (),
    style: str = "",
) -> str:
    reasons = ""
    if pair.feedback:
        reasons = "<h4>Reasons</h4>" + _list(pair.feedback, "reasons")
    violations = ""
    if pair.violations:
        violations = "<h4>Constraint violations</h4>" + _list(
            (str(v) for v in pair.violations), "reasons"
        )
    meta = f"{pair.origin}, iteration {pair.iteration}, {pair.answer_attempts} answer attempt(s)"
    answer = esc(pair.answer) if pair.answer else '<span class="empty">no answer</span>'
    return (
        f'<article class="pair {esc(pair.status)} {esc(" ".join(classes))}" '
        f'id="pair-{_slug(pair.id)}"' + (f' style="{esc(style)}"' if style else "") + ">"
        f'<h3><span class="badge {esc(pair.status)}">{esc(pair.status)}</span> '
        f'<code>{esc(pair.id)}</code> <span class="muted">{esc(meta)}</span></h3>'
        f'<p class="question">{esc(pair.question)}</p>'
        f'<p class="answer">{answer}</p>'
        f"{_sources_html(pair, sources)}{_scores_html(pair, baseline)}{reasons}{violations}"
        "</article>"
    )


def _weakest(pair: QAPair) -> float | None:
    scores = [float(v) for v in pair.scores.values()]
    return min(scores) if scores else None


_SCORE_FLOORS = (0.5, 0.7, 0.9)


def _item_list(
    prefix: str, pairs: Sequence[QAPair], sources: Mapping[str, str], baseline: Mapping[str, float]
) -> str:
    """Pairs with filters (status, weakest score, document) and sort orders, in CSS only.

    The report runs no script (its CSP forbids it): radio buttons before the list switch
    CSS rules that hide articles by class and reorder them with `order` from per-article
    custom properties. Every article is in the page in its written order.
    """
    if not pairs:
        return ""
    docs: dict[str, str] = {}
    for pair in pairs:
        for doc in dict.fromkeys([*(s.doc_id for s in pair.spans), pair.seed_doc_id or ""]):
            if doc and doc not in docs:
                docs[doc] = f"d{len(docs)}"
    statuses = sorted({p.status for p in pairs})

    def rank(key: Any) -> dict[str, int]:
        ordered = sorted(range(len(pairs)), key=key)
        return {pairs[i].id: position for position, i in enumerate(ordered)}

    weakest = [_weakest(p) for p in pairs]
    by_low = rank(lambda i: (weakest[i] is None, weakest[i] or 0.0, i))
    by_high = rank(lambda i: (weakest[i] is None, -(weakest[i] or 0.0), i))
    first_doc = [
        next((docs[s.doc_id] for s in p.spans if s.doc_id in docs), docs.get(p.seed_doc_id or ""))
        for p in pairs
    ]
    by_doc = rank(lambda i: (first_doc[i] is None, int((first_doc[i] or "d0")[1:]), i))
    by_iter = rank(lambda i: (pairs[i].iteration, i))

    inputs, labels, rules = [], [], []

    def control(group: str, value: str, text: str, checked: bool = False) -> None:
        ident = f"{prefix}-{group}-{value}"
        inputs.append(
            f'<input type="radio" name="{prefix}-{group}" id="{ident}"'
            + (" checked" if checked else "")
            + ">"
        )
        labels.append(f'<label for="{ident}" class="{group}">{esc(text)}</label>')
        rules.append(
            f"#{ident}:checked ~ .controls label[for={ident}]{{background:var(--soft);"
            "border-color:var(--accent);}"
        )

    for value, text in (
        ("written", "as written"),
        ("low", "weakest score, low first"),
        ("high", "weakest score, high first"),
        ("doc", "document"),
        ("iter", "iteration"),
    ):
        control("sort", value, text, value == "written")
        if value != "written":
            rules.append(
                f"#{prefix}-sort-{value}:checked ~ .items article{{order:var(--{value});}}"
            )
    if len(statuses) > 1:
        control("status", "all", "every status", True)
        for status in statuses:
            control("status", _slug(status), status)
            rules.append(
                f"#{prefix}-status-{_slug(status)}:checked ~ .items "
                f"article:not(.{_slug(status)}){{display:none;}}"
            )
    control("min", "0", "any score", True)
    for floor in _SCORE_FLOORS:
        tag = f"{int(floor * 100)}"
        control("min", tag, f"weakest ≥ {floor:.1f}")
        rules.append(
            f"#{prefix}-min-{tag}:checked ~ .items article:not(.min-{tag}){{display:none;}}"
        )
    if len(docs) > 1:
        control("doc", "all", "every document", True)
        for doc, tag in docs.items():
            control("doc", tag, sources.get(doc, doc[:12]).rsplit("/", 1)[-1])
            rules.append(
                f"#{prefix}-doc-{tag}:checked ~ .items article:not(.doc-{tag}){{display:none;}}"
            )
    articles = []
    for index, pair in enumerate(pairs):
        low = weakest[index]
        classes = [f"min-{int(f * 100)}" for f in _SCORE_FLOORS if low is not None and low >= f]
        classes += [
            f"doc-{docs[d]}"
            for d in dict.fromkeys([*(s.doc_id for s in pair.spans), pair.seed_doc_id or ""])
            if d in docs
        ]
        style = (
            f"--low:{by_low[pair.id]};--high:{by_high[pair.id]};--doc:{by_doc[pair.id]};"
            f"--iter:{by_iter[pair.id]}"
        )
        articles.append(_pair_html(pair, sources, baseline, classes, style))
    return (
        f'<div class="filterable" id="{prefix}-list"><style>{"".join(rules)}</style>'
        + "".join(inputs)
        + f'<div class="controls">{"".join(labels)}</div>'
        + f'<div class="items">{"".join(articles)}</div></div>'
    )


# --------------------------------------------------------------------------------------------
# Sections


def _persona_html(persona: Mapping[str, Any]) -> str:
    return _facts(
        [
            ("name", persona.get("name")),
            ("description", persona.get("description")),
            ("role", persona.get("role")),
            ("expertise", persona.get("expertise")),
            ("language", persona.get("language")),
            ("goals", _list(persona.get("goals") or [])),
            ("pain points", _list(persona.get("pain_points") or [])),
            ("interests", _list(persona.get("interests") or [])),
            ("style", persona.get("style")),
            ("custom questions", _list(persona.get("custom_questions") or [])),
            ("supplemental", persona.get("supplemental")),
            ("composed by", persona.get("composed_by")),
        ]
    )


def _goal_html(goal: Mapping[str, Any]) -> str:
    prompts = goal.get("prompts") or {}
    prompt_html = "".join(
        f"<details><summary>prompt: {esc(name)}</summary>"
        f'<pre class="prompt">{esc(json.dumps(body, indent=2, ensure_ascii=False))}</pre></details>'
        for name, body in prompts.items()
    )
    baseline = goal.get("baseline") or {}
    params = goal.get("params") or {}
    return (
        _facts(
            [
                ("name", goal.get("name")),
                ("description", goal.get("description")),
                ("loop", goal.get("loop")),
                ("source", goal.get("source")),
                ("metrics", ", ".join(map(str, goal.get("metrics") or []))),
                ("your prompts", _list(goal.get("user_prompts") or [])),
            ]
        )
        + "<h3>Baseline</h3>"
        + _table(["metric", "minimum"], sorted(baseline.items()), numeric=[1])
        + "<h3>Parameters</h3>"
        + _table(["parameter", "value"], ((k, json.dumps(v)) for k, v in params.items()))
        + prompt_html
    )


_RULE_KINDS = ("regex", "keyword", "pii", "max_words", "min_words", "language", "topic")


def _constraints_html(constraints: Mapping[str, Any]) -> str:
    rows = []
    for list_name in ("filter_out", "check_for"):
        for rule in constraints.get(list_name) or []:
            kind = next((k for k in _RULE_KINDS if rule.get(k) not in (None, False)), "?")
            value = rule.get(kind)
            if isinstance(value, list):
                value = ", ".join(map(str, value))
            rows.append(
                (
                    list_name,
                    rule.get("name") or f"{kind}:{value}",
                    kind,
                    value,
                    rule.get("applies_to"),
                )
            )
    return _table(["list", "rule", "kind", "value", "applies to"], rows)


def _data_html(data_refs: Sequence[Mapping[str, Any]]) -> str:
    return _table(
        ["source", "title", "format", "characters", "chunks", "sha256"],
        (
            (
                r.get("source"),
                r.get("title") or "",
                r.get("format"),
                r.get("chars"),
                r.get("chunks"),
                str(r.get("sha256") or r.get("id") or "")[:16],
            )
            for r in data_refs
        ),
        numeric=[3, 4],
    )


def _summary_html(metadata: Mapping[str, Any], n_pairs: int, n_rejected: int) -> str:
    totals = metadata.get("usage", {}).get("totals", {})
    counts = metadata.get("counts", {})
    started = metadata.get("started_at")
    met = metadata.get("baseline_met")
    final = metadata.get("final_scores") or {}
    headline = " · ".join(
        part
        for part in (
            esc(metadata.get("status")),
            f"{_num(counts.get('accepted', n_pairs))} accepted",
            f"{_num(counts.get('rejected', n_rejected))} rejected",
            f'<span class="{"pass" if met else "fail"}">baseline '
            f"{'met' if met else 'not met'}</span>",
            f"{int(totals.get('total_tokens', 0)):,} tokens",
            f"{float(metadata.get('runtime_seconds') or 0):.1f} s",
            esc(metadata.get("model")) if metadata.get("model") else "",
        )
        if part
    )
    return (
        f'<p class="headline">{headline}</p><details><summary>run details</summary>'
        + _facts(
            [
                ("status", metadata.get("status")),
                ("model", metadata.get("model")),
                (
                    "started",
                    time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(started)))
                    if started
                    else None,
                ),
                ("runtime", f"{float(metadata.get('runtime_seconds') or 0):.1f} s"),
                ("iterations", metadata.get("iterations")),
                (
                    "baseline met",
                    _Raw(
                        f'<span class="{"pass" if met else "fail"}">{"yes" if met else "no"}</span>'
                    ),
                ),
                ("accepted", counts.get("accepted", n_pairs)),
                ("rejected", counts.get("rejected", n_rejected)),
                ("unanswerable", counts.get("unanswerable")),
                ("duplicates removed", counts.get("duplicates_removed")),
                (
                    "tokens",
                    f"{int(totals.get('total_tokens', 0)):,} in "
                    f"{int(totals.get('llm_calls', 0)):,} call(s) "
                    f"({int(totals.get('input_tokens', 0)):,} in, "
                    f"{int(totals.get('output_tokens', 0)):,} out, "
                    f"{int(totals.get('cache_hits', 0)):,} cached)",
                ),
                ("cost", totals.get("cost")),  # set by llm.pricing.add_costs
                ("final scores", ", ".join(f"{k} {float(v):.2f}" for k, v in final.items())),
                ("personagen", metadata.get("personagen_version")),
            ]
        )
        + "</details>"
    )


def _selftest_html(selftest: Mapping[str, Any] | None) -> str:
    """Each judge metric's discrimination on the run's probes, and what that cost."""
    if not selftest:
        return '<p class="empty">not run (goal param selftest: false)</p>'

    def scores(values: Sequence[Any]) -> str:
        return ", ".join("-" if v is None else f"{float(v):.2f}" for v in values)

    rows = (
        (
            name,
            "-" if m.get("auc") is None else f"{m['auc']:.2f}",
            "-" if m.get("accuracy") is None else f"{m['accuracy']:.2f}",
            scores(m.get("good") or []),
            scores(m.get("bad") or []),
            _Raw(
                '<span class="pass">decides</span>'
                if m.get("passed")
                else '<span class="warning">failed: does not decide</span>'
            ),
        )
        for name, m in (selftest.get("metrics") or {}).items()
    )
    intro = (
        f"<p>{int(selftest.get('probes', 0))} probe question(s) from the run's "
        f"{esc(selftest.get('source'))}, each judged with its right answer and a wrong one; "
        f"a judge passes at AUC and balanced accuracy &ge; {float(selftest.get('min_auc', 0)):.2f}."
        f" Cost: {int(selftest.get('tokens', 0)):,} tokens.</p>"
    )
    return intro + _table(
        ["metric", "AUC", "accuracy at baseline", "right answers", "wrong answers", "verdict"],
        rows,
    )


def _recommendations_html(recommendations: Sequence[Mapping[str, Any]]) -> str:
    if not recommendations:
        return '<p class="empty">none: nothing in this run calls for a change</p>'
    items = []
    for rec in recommendations:
        evidence = rec.get("evidence") or []
        items.append(
            f'<li class="recommendation"><span class="badge">{esc(rec.get("kind"))}</span> '
            f"{esc(rec.get('message'))}"
            + (
                f"<details><summary>evidence ({len(evidence)})</summary>"
                f"{_list(evidence, 'evidence')}</details>"
                if evidence
                else ""
            )
            + "</li>"
        )
    return "<ul>" + "".join(items) + "</ul>"


def _events_html(metadata: Mapping[str, Any]) -> str:
    events = [("warning", e) for e in metadata.get("warnings", [])] + [
        ("error", e) for e in metadata.get("errors", [])
    ]
    return _table(
        ["level", "stage", "item", "message"],
        (
            (
                _Raw(f'<span class="{level}">{esc(level)}</span>'),
                e.get("stage"),
                _Raw(
                    f'<a href="#pair-{_slug(str(e["item"]))}">{esc(e["item"])}</a>'
                    if e.get("item")
                    else ""
                ),
                e.get("message"),
            )
            for level, e in events
        ),
    )


def render_report(
    metadata: Mapping[str, Any],
    pairs: Sequence[QAPair],
    rejected: Sequence[QAPair],
    persona: Mapping[str, Any],
    goal: Mapping[str, Any],
    constraints: Mapping[str, Any],
    data_refs: Sequence[Mapping[str, Any]],
) -> str:
    """The report as one HTML string."""
    sources = {str(r.get("id")): str(r.get("source")) for r in data_refs}
    baseline = {
        str(k): float(v)
        for k, v in (metadata.get("baseline") or goal.get("baseline") or {}).items()
    }
    run_id = metadata.get("run_id", "")
    pairs_html = _item_list("p", pairs, sources, baseline) or (
        '<p class="empty">no pairs were kept</p>'
    )
    rejected_html = _item_list("r", rejected, sources, baseline) or (
        '<p class="empty">nothing was rejected</p>'
    )
    body = {
        "summary": _summary_html(metadata, len(pairs), len(rejected)),
        "persona": _persona_html(persona),
        "goal": _goal_html(goal),
        "constraints": _constraints_html(constraints),
        "data": _data_html(data_refs),
        "plots": _plots(metadata, baseline),
        "pairs": pairs_html,
        "rejected": rejected_html,
        "recommendations": _recommendations_html(metadata.get("recommendations") or []),
        "judges": _selftest_html(metadata.get("judge_selftest")),
        "warnings": _events_html(metadata),
    }
    counts = {"pairs": len(pairs), "rejected": len(rejected)}

    def section(sid: str, title: str) -> str:
        heading = f"<h2>{esc(title)}" + (f" ({counts[sid]})" if sid in counts else "") + "</h2>"
        if sid in _COLLAPSED:  # configuration: one click away, below the results
            return (
                f'<section id="{sid}" class="config"><details><summary>{heading}</summary>'
                f"{body[sid]}</details></section>"
            )
        return f'<section id="{sid}">{heading}{body[sid]}</section>'

    sections = "".join(section(sid, title) for sid, title in _SECTIONS)
    nav = "".join(f'<a href="#{sid}">{esc(title)}</a>' for sid, title in _SECTIONS)
    language = _slug(str(persona.get("language") or "en"))
    return (
        f'<!DOCTYPE html><html lang="{language}"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>PersonaGen run {esc(run_id)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>PersonaGen run <code>{esc(run_id)}</code></h1>"
        f"<div>{esc(persona.get('name'))} &middot; goal {esc(goal.get('name'))} &middot; "
        f"{esc(metadata.get('status'))}</div></header>"
        f"<nav>{nav}</nav><main>{sections}</main></body></html>\n"
    )


def write_report(
    bundle_dir: Path,
    metadata: Mapping[str, Any],
    pairs: Sequence[QAPair],
    rejected: Sequence[QAPair],
    persona: Mapping[str, Any],
    goal: Mapping[str, Any],
    constraints: Mapping[str, Any],
    data_refs: Sequence[Mapping[str, Any]],
) -> Path:
    """Write `<bundle_dir>/report.html` (atomically) and return its path."""
    bundle_dir = Path(bundle_dir)
    bundle_dir.mkdir(parents=True, exist_ok=True)
    path = bundle_dir / REPORT_NAME
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(
        render_report(metadata, pairs, rejected, persona, goal, constraints, data_refs),
        encoding="utf-8",
    )
    tmp.replace(path)
    return path


def pair_from_row(row: Mapping[str, Any]) -> QAPair:
    """A `QAPair` from a qa.jsonl / rejected.jsonl line (whose key names differ)."""
    data = dict(row)
    data["feedback"] = data.pop("reasons", [])
    data["reasons"] = data.pop("judge_reasons", {})
    return QAPair.model_validate(data)


def write_report_from_bundle(bundle_dir: Path) -> Path:
    """(Re)write `report.html` from the files of a finished bundle."""
    bundle_dir = Path(bundle_dir)

    def read_json(name: str) -> Any:
        return json.loads((bundle_dir / name).read_text(encoding="utf-8"))

    def read_pairs(name: str) -> list[QAPair]:
        path = bundle_dir / name
        if not path.is_file():
            return []
        return [
            pair_from_row(json.loads(line))
            for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]

    return write_report(
        bundle_dir,
        metadata=read_json("metadata.json"),
        pairs=read_pairs("qa.jsonl"),
        rejected=read_pairs("rejected.jsonl"),
        persona=read_json("persona.json"),
        goal=read_json("goal.json"),
        constraints=read_json("constraints.json"),
        data_refs=read_json("data_refs.json"),
    )
