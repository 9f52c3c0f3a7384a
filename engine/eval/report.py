"""Evaluation reports and the charts shared by the report and the Evaluate tab.

The HTML report is one self-contained file (plotly.js inlined, no CDN: the report must open
on an offline hospital machine); the Markdown report carries the same tables without charts.
"""

from __future__ import annotations

import html
from pathlib import Path

import plotly.graph_objects as go

from engine import atomic
from engine.eval.definitions import METRICS, describe, label
from engine.eval.job import load_metrics, load_predictions
from engine.eval.review import summary_markdown

#: Metrics not on a 0-1 scale, left out of the base-vs-tuned bar chart (BLEU is sacrebleu's 0-100).
_OFF_CHART = ("length", "unparsed", "bleu")


def metric_rows(m: dict) -> list[dict]:
    """One row per metric: key, name (as its recorded definition labels it: "WER,
    Whisper-normalised"; BLEU with its signature), base, tuned, delta, and whether the delta
    is an improvement."""
    rows = []
    base, tuned = m.get("base", {}), m.get("tuned", {})
    defs = m.get("definitions")
    for key, (_, lower_better) in METRICS.items():
        if key not in base:
            continue
        b, t = base.get(key), tuned.get(key) if tuned else None
        d = (t - b) if isinstance(b, (int, float)) and isinstance(t, (int, float)) else None
        better = None if d is None or lower_better is None or d == 0 else ((d < 0) == lower_better)
        rows.append({"key": key, "metric": label(key, defs), "base": b, "tuned": t, "delta": d, "better": better})
    return rows


def definitions_markdown(m: dict) -> str:
    """The recorded definitions of the scores in ``m`` (library, version, normaliser, BLEU's
    signature) as a Markdown list, for the report and the model card."""
    keys = [r["key"] for r in metric_rows(m)]
    return "\n".join(f"- {line}" for line in describe(m.get("definitions"), keys))


def metrics_figure(m: dict):
    """Grouped bars: base vs tuned for each 0-1 metric."""
    rows = [r for r in metric_rows(m) if r["key"] not in _OFF_CHART]
    fig = go.Figure()
    for side, colour in (("base", "#9aa5b1"), ("tuned", "#2a7de1")):
        if any(r[side] is not None for r in rows):
            fig.add_bar(name=side, x=[r["metric"] for r in rows], y=[r[side] for r in rows], marker_color=colour)
    fig.update_layout(barmode="group", height=320, margin=dict(l=40, r=10, t=40, b=40),
                      title="Base vs tuned", yaxis_title="score")
    return fig


def groups_figure(m: dict):
    """Speech: WER per voice/speaker for each side (None when there are no groups)."""
    if "by_group" not in m.get("base", {}):
        return None
    fig = go.Figure()
    for side, colour in (("base", "#9aa5b1"), ("tuned", "#2a7de1")):
        g = m.get(side, {}).get("by_group")
        if g:
            fig.add_bar(name=side, x=list(g), y=[v["wer"] for v in g.values()], marker_color=colour)
    name = label("wer", m.get("definitions"))
    fig.update_layout(barmode="group", height=300, margin=dict(l=40, r=10, t=40, b=40),
                      title=f"{name} per voice", yaxis_title=name)
    return fig


def improvement_figure(preds: list[dict]):
    """Histogram of per-item improvement (positive = tuned better)."""
    vals = [p["improvement"] for p in preds if isinstance(p.get("improvement"), (int, float))]
    if not vals:
        return None
    fig = go.Figure(go.Histogram(x=vals, nbinsx=20, marker_color="#2a7de1"))
    fig.update_layout(height=280, margin=dict(l=40, r=10, t=40, b=40), title="Per-item improvement (tuned - base)",
                      xaxis_title="improvement (positive = tuned better)", yaxis_title="items")
    return fig


def _fmt(v) -> str:
    if v is None:
        return "-"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _table_md(m: dict) -> str:
    lines = ["| metric | base | tuned | delta |", "|---|---|---|---|"]
    for r in metric_rows(m):
        d = "-" if r["delta"] is None else f"{r['delta']:+.4f}" + {True: " (better)", False: " (worse)"}.get(r["better"], "")
        lines.append(f"| {r['metric']} | {_fmt(r['base'])} | {_fmt(r['tuned'])} | {d} |")
    return "\n".join(lines)


def _most_missed_md(m: dict) -> str:
    out = []
    for side in ("base", "tuned"):
        mm = m.get(side, {}).get("most_missed")
        if mm:
            out.append(f"**Most-missed terms ({side})**: " + ", ".join(f"{x['term']} ({x['count']})" for x in mm))
    return "\n\n".join(out)


def _examples_md(preds: list[dict], n: int = 5) -> str:
    ranked = sorted((p for p in preds if "improvement" in p), key=lambda p: p["improvement"])
    parts = []
    for title, items in (("Largest regressions", ranked[:n]), ("Largest improvements", ranked[::-1][:n])):
        parts.append(f"### {title}\n")
        for p in items:
            parts.append(f"- **{p['id']}** (improvement {p['improvement']:+.3f})\n  - reference: {p.get('reference', '')!s}"
                         f"\n  - base: {p.get('base', '')!s}\n  - tuned: {p.get('tuned', '')!s}")
    return "\n".join(parts)


def render_markdown(eval_dir: str | Path, title: str = "Evaluation report") -> str:
    eval_dir = Path(eval_dir)
    m = load_metrics(eval_dir) or {}
    preds = load_predictions(eval_dir)
    head = (f"# {title}\n\nDataset **{m.get('dataset', '?')}**, split **{m.get('split', '?')}**, "
            f"{m.get('n', 0)} examples; model {m.get('model', '?')}"
            + (f", run {m['run']}" if m.get("run") else "") + f". Generated {m.get('created', '')}.\n")
    body = [head, "## Metrics\n", _table_md(m), "", "### Metric definitions\n", definitions_markdown(m), "",
            _most_missed_md(m), "", "## Clinician review\n",
            summary_markdown(eval_dir, preds), "", "## Examples\n", _examples_md(preds),
            "\n_Research use only; not medical advice._\n"]
    return "\n".join(body)


def render_html(eval_dir: str | Path, title: str = "Evaluation report") -> str:
    """A self-contained HTML report: the Markdown content plus interactive charts."""
    eval_dir = Path(eval_dir)
    m = load_metrics(eval_dir) or {}
    preds = load_predictions(eval_dir)
    figs = [f for f in (metrics_figure(m), groups_figure(m), improvement_figure(preds)) if f is not None]
    charts = []
    for i, fig in enumerate(figs):
        charts.append(fig.to_html(full_html=False, include_plotlyjs=(i == 0)))
    md = render_markdown(eval_dir, title)
    cells = []
    for r in metric_rows(m):
        cls = {True: "good", False: "bad"}.get(r["better"], "")
        delta = "-" if r["delta"] is None else f"{r['delta']:+.4f}"
        cells.append(f"<tr><td>{html.escape(r['metric'])}</td><td>{_fmt(r['base'])}</td>"
                     f"<td>{_fmt(r['tuned'])}</td><td class='{cls}'>{delta}</td></tr>")
    rows = "".join(cells)
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}
td:first-child{{text-align:left}}.good{{color:#137333}}.bad{{color:#c5221f}}pre{{white-space:pre-wrap}}</style>
</head><body><h1>{html.escape(title)}</h1>
<table><tr><th>metric</th><th>base</th><th>tuned</th><th>delta</th></tr>{rows}</table>
{''.join(charts)}
<pre>{html.escape(md)}</pre></body></html>"""


def write_report(eval_dir: str | Path, out: str | Path, *, fmt: str = "html", title: str = "Evaluation report") -> Path:
    """Write the report (``fmt`` "html" or "md") atomically to ``out``."""
    text = render_html(eval_dir, title) if fmt == "html" else render_markdown(eval_dir, title)
    atomic.write_text(out, text)
    return Path(out)
