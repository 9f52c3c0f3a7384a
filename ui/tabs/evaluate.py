"""The Evaluate tab: batch evaluation results, per-sample drill-down and blind review.

Reads only what the evaluation job wrote (run/eval/metrics.json, predictions.jsonl) and
what reviewers saved (run/eval/reviews.jsonl); the maths lives in engine.eval. Runs side by
side whose scores are not defined alike (another normaliser, library or version, or no
recorded definitions: engine.eval.definitions) are marked, in the banner and on each row.
"""

from __future__ import annotations

import html

import gradio as gr

from engine.errors import DataError, MedtuneError
from engine.eval.definitions import differences
from engine.eval.job import load_metrics, load_predictions
from engine.eval.metrics import WER_NORMALISER, word_diff
from engine.eval.report import groups_figure, metric_rows, metrics_figure, write_report
from engine.eval.review import blind_item, next_item, record, summary_markdown
from engine.jobs import submit as submit_job
from engine.preflight import resolve_ref
from engine.runs import get_run, list_runs
from engine.text import NORMALISERS
from ui.components import banner, status_errors
from ui.context import AppContext
from ui.eval_views import LEGEND, speech_side, text_side

SORTS = ("largest improvement", "largest regression", "id")
SAMPLE_HEADERS = ["id", "improvement", "base", "tuned", "reference"]
METRIC_HEADERS = ["run", "metric", "base", "tuned", "delta"]
#: Put before a metric's name on the rows of runs whose definitions of it differ.
NOT_COMPARABLE = "⚠ not comparable: "
#: Speech predictions written before the normaliser was recorded per item were scored with
#: the project's own (the only one there was), so their diffs are redrawn with it.
OLD_ITEM_NORMALISER = "medtune"


def eval_runs(ctx: AppContext) -> list[str]:
    return [r.id for r in list_runs(ctx.workspace)]


def _run(ctx, run_id):
    if not run_id:
        raise DataError("Pick a run first.", field="run")
    return get_run(ctx.workspace, run_id)


def checked_ref(kind: str, value: str, workspace=None) -> str:
    """``value`` through the RunConfig resolver of ``kind`` (dataset, split), as a DataError
    naming the box."""
    try:
        return resolve_ref(kind, value, workspace)
    except MedtuneError as e:
        raise DataError(e.message, field=kind, hint=e.hint) from None


def _first(run_ids) -> str | None:
    if isinstance(run_ids, str):
        return run_ids or None
    return run_ids[0] if run_ids else None


def _rounded(v) -> float | None:
    return None if v is None else round(float(v), 4)


def compare_table(metrics_by_run: dict[str, dict | None]) -> tuple[list[list], str | None]:
    """Rows of the metrics table for runs side by side (run id -> its metrics.json, None if
    not evaluated), and a warning when some of their scores are not defined alike; those
    rows carry :data:`NOT_COMPARABLE` before the metric's name."""
    differ, problems = differences(metrics_by_run)
    rows = []
    for rid, m in metrics_by_run.items():
        if not m:
            rows.append([rid, "(not evaluated yet)", None, None, None])
            continue
        for r in metric_rows(m):
            name = (NOT_COMPARABLE if r["key"] in differ else "") + r["metric"]
            rows.append([rid, name, _rounded(r["base"]), _rounded(r["tuned"]), _rounded(r["delta"])])
    warning = ("Not comparable across these runs (different metric definitions): " + "\n".join(problems)
               if problems else None)
    return rows, warning


def metrics_table(ctx: AppContext, run_ids) -> tuple[list[list], str | None]:
    """:func:`compare_table` of the selected runs."""
    ids = [run_ids] if isinstance(run_ids, str) else run_ids or []
    return compare_table({rid: load_metrics(_run(ctx, rid).eval_dir) for rid in ids})


def _score(p: dict, side: str):
    m = p.get("metrics", {}).get(side, {})
    v = m.get("wer", m.get("correct", m.get("rouge_l")))
    return None if v is None else round(float(v), 4)


def sample_rows(preds: list[dict], sort: str, term: str) -> list[list]:
    """Per-sample rows, filtered by a term (in the reference or either output) and sorted."""
    t = (term or "").strip().lower()
    if t:
        preds = [p for p in preds if t in " ".join(str(p.get(k) or "") for k in ("reference", "base", "tuned")).lower()]
    if sort == SORTS[0]:
        preds = sorted(preds, key=lambda p: -(p.get("improvement") or 0))
    elif sort == SORTS[1]:
        preds = sorted(preds, key=lambda p: (p.get("improvement") or 0))
    return [[p["id"], None if p.get("improvement") is None else round(p["improvement"], 4),
             _score(p, "base"), _score(p, "tuned"), (p.get("reference") or "")[:120]] for p in preds]


def detail_views(p: dict) -> tuple[str | None, str, str]:
    """(audio path, base HTML, tuned HTML) for one prediction record."""
    if p.get("kind") == "speech":
        out = []
        for side, title in (("base", "Base"), ("tuned", "Tuned")):
            if side not in p:
                out.append("")
                continue
            m, norm = p["metrics"][side], p.get("normaliser", OLD_ITEM_NORMALISER)
            out.append(speech_side(title, {"text": p[side], "wer": m["wer"], "hits": m["hits"], "misses": m["misses"],
                                           "normaliser": norm,
                                           "diff": word_diff(p["reference"], p[side], normaliser=norm)}))
        return p.get("input"), out[0], out[1]
    intro = f"Q: {p.get('input', '')}\nReference: {p.get('reference', '')}"
    return None, text_side("Base", p.get("base"), intro), text_side("Tuned", p.get("tuned")) if "tuned" in p else ""


def review_summary_md(eval_dir, preds) -> str:
    return summary_markdown(eval_dir, preds, escape=html.escape)


def build(ctx: AppContext) -> None:
    preds_state = gr.State([])
    item_state = gr.State(None)   # id of the item under review (never which side is which)
    with gr.Row():
        runs = gr.Dropdown(eval_runs(ctx), multiselect=True, label="Runs (several side by side)",
                           elem_id="ev-runs", scale=4)
        refresh = gr.Button("↻ Runs", scale=0, elem_id="ev-refresh")
        show = gr.Button("Show", variant="primary", scale=0, elem_id="ev-show")
    status = gr.HTML(banner("Pick runs and press Show. Evaluate a run below if it has no results yet."),
                     elem_id="ev-status")
    with gr.Accordion("Run an evaluation (background job)", open=False):
        with gr.Row():
            ds = gr.Textbox(label="Dataset (empty = the run's)", elem_id="ev-dataset")
            split = gr.Textbox(value="test", label="Split", elem_id="ev-split")
            limit = gr.Number(value=0, precision=0, minimum=0, label="Limit (0 = all)")
            normaliser = gr.Dropdown([(f"{label} ({name})", name) for name, (label, _) in NORMALISERS.items()],
                                     value=WER_NORMALISER, label="Speech WER/CER normaliser", elem_id="ev-normaliser")
            start = gr.Button("Evaluate first selected run", elem_id="ev-start")
        job_status = gr.Markdown(elem_id="ev-job")
    table = gr.Dataframe(headers=METRIC_HEADERS, value=[], interactive=False, label="Metrics: base vs tuned",
                         elem_id="ev-metrics")
    with gr.Row():
        chart = gr.Plot(label="Base vs tuned", elem_id="ev-chart")
        groups = gr.Plot(label="Per voice", elem_id="ev-groups")
    report = gr.DownloadButton("Download report (HTML)", value=None, elem_id="ev-report")
    with gr.Row():
        sort = gr.Dropdown(list(SORTS), value=SORTS[1], label="Sort samples by", elem_id="ev-sort")
        term = gr.Textbox(label="Filter by term", elem_id="ev-term")
    samples = gr.Dataframe(headers=SAMPLE_HEADERS, value=[], interactive=False, elem_id="ev-samples",
                           label="Per sample (score = WER for speech, with the normaliser named in the metrics table; "
                                 "correct/ROUGE-L F1 for text); click a row")
    detail_audio = gr.Audio(label="Clip", interactive=False, elem_id="ev-detail-audio")
    gr.HTML(LEGEND)
    with gr.Row(equal_height=False):
        detail_base = gr.HTML(elem_id="ev-detail-base")
        detail_tuned = gr.HTML(elem_id="ev-detail-tuned")

    with gr.Accordion("Blind review (A/B order hidden)", open=True):
        gr.Markdown("Two outputs for the same input, in an order only the server knows. "
                    "Pick the better one, flag anything unsafe. Verdicts are saved in the run at once.")
        with gr.Row():
            reviewer = gr.Textbox(label="Reviewer name", elem_id="rv-reviewer")
            nxt = gr.Button("Next item", elem_id="rv-next")
        rv_item = gr.HTML(elem_id="rv-item")
        rv_audio = gr.Audio(label="Clip", interactive=False, elem_id="rv-audio")
        with gr.Row(equal_height=False):
            rv_a = gr.HTML(elem_id="rv-a")
            rv_b = gr.HTML(elem_id="rv-b")
        with gr.Row():
            verdict = gr.Radio([("A is better", "A"), ("B is better", "B"), ("Tie", "tie"),
                                ("Both wrong", "both_wrong")], label="Verdict", elem_id="rv-verdict")
            unsafe = gr.CheckboxGroup(["A", "B"], label="Unsafe", elem_id="rv-unsafe")
        comment = gr.Textbox(label="Comment", elem_id="rv-comment")
        submit = gr.Button("Save verdict", variant="primary", elem_id="rv-submit")
        rv_summary = gr.Markdown(elem_id="rv-summary")

    refresh.click(lambda: gr.update(choices=eval_runs(ctx)), outputs=runs)

    @status_errors(8)
    def _show(run_ids, sort_by, term_text):
        rid = _first(run_ids)
        r = _run(ctx, rid)
        m = load_metrics(r.eval_dir)
        preds = load_predictions(r.eval_dir)
        rows, warning = metrics_table(ctx, run_ids)
        if not m:
            return (banner(f"Run {rid} has no evaluation yet: start one above."), rows, None, None,
                    None, [], preds, review_summary_md(r.eval_dir, preds))
        path = write_report(r.eval_dir, r.eval_dir / "report.html", title=f"Evaluation of {rid}")
        msg = f"{rid}: {m.get('dataset')}/{m.get('split')}, {m.get('n')} examples."
        # red, not green: numbers under one name that mean different things must not look comparable
        status_html = banner(f"{warning}\n{msg}", "error") if warning else banner(msg, "ok")
        return (status_html, rows, metrics_figure(m), groups_figure(m), str(path),
                sample_rows(preds, sort_by, term_text), preds, review_summary_md(r.eval_dir, preds))

    show.click(_show, [runs, sort, term],
               [status, table, chart, groups, report, samples, preds_state, rv_summary])

    def _resort(preds, sort_by, term_text):
        return sample_rows(preds, sort_by, term_text)

    sort.change(_resort, [preds_state, sort, term], samples)
    term.submit(_resort, [preds_state, sort, term], samples)

    def _select(preds, sort_by, term_text, evt: gr.SelectData):
        rows = sample_rows(preds, sort_by, term_text)
        i = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        if i is None or i >= len(rows):
            return gr.update(), gr.update(), gr.update()
        p = next(x for x in preds if x["id"] == rows[i][0])
        return detail_views(p)

    samples.select(_select, [preds_state, sort, term], [detail_audio, detail_base, detail_tuned])

    @status_errors(1)
    def _start(run_ids, dataset, split_name, lim, norm):
        r = _run(ctx, _first(run_ids))
        dataset, split_name = (dataset or "").strip(), (split_name or "test").strip()
        # the boxes go through the resolvers of data.dataset / data.test_split at once, so a path
        # outside the workspace is refused here rather than by the job
        if dataset:
            checked_ref("dataset", dataset, ctx.workspace)
        checked_ref("split", split_name)
        submit_job(r, "evaluate", {"dataset": dataset or None, "split": split_name, "limit": int(lim) or None,
                                   "normaliser": norm or WER_NORMALISER})
        return banner(f"Evaluation of {r.id} queued; press Show when it completes.", "ok")

    start.click(_start, [runs, ds, split, limit, normaliser], status)

    timer = gr.Timer(3.0)

    def _poll(run_ids):
        rid = _first(run_ids)
        if not rid:
            return gr.update()
        try:
            st = _run(ctx, rid).status("evaluate")
        except Exception:  # noqa: BLE001 - a vanished run just shows nothing
            return gr.update()
        if not st:
            return ""
        pct = f" {st['progress']:.0%}" if isinstance(st.get("progress"), (int, float)) else ""
        return f"Evaluation job: **{st.get('label')}**{pct} {html.escape(st.get('message', '') or '')}" + (
            f"  \n{html.escape(st['error'])}" if st.get("error") else "")

    timer.tick(_poll, runs, job_status)

    @status_errors(6)
    def _next(run_ids, name, preds):
        r = _run(ctx, _first(run_ids))
        preds = preds or load_predictions(r.eval_dir)
        p = next_item(r.eval_dir, name, preds)
        if p is None:
            return banner("No items left for this reviewer (or no predictions yet).", "ok"), None, "", None, "", ""
        b = blind_item(r.eval_dir, name, p)
        head = (f"<b>Item {html.escape(b['id'])}</b><div class='mt-answer'>"
                f"{html.escape(str(b['input'] or '')) if b['kind'] != 'speech' else ''}</div>"
                f"<div><i>Reference:</i> {html.escape(str(b['reference'] or ''))}</div>")
        audio_path = b["input"] if b["kind"] == "speech" else None
        return (banner(f"Reviewing {b['id']} as {name}.", "ok"), b["id"], head, audio_path,
                text_side("A", b["A"]), text_side("B", b["B"]))

    nxt.click(_next, [runs, reviewer, preds_state], [status, item_state, rv_item, rv_audio, rv_a, rv_b])

    @status_errors(5)
    def _submit(run_ids, name, item_id, v, flags, note, preds):
        r = _run(ctx, _first(run_ids))
        if not item_id:
            raise DataError("Press 'Next item' first.")
        if not v:
            raise DataError("Pick a verdict (A, B, tie or both wrong).", field="verdict")
        preds = preds or load_predictions(r.eval_dir)
        p = next((x for x in preds if x["id"] == item_id), None)
        if p is None:
            raise DataError(f"item {item_id} is no longer in the predictions (re-evaluated?)")
        record(r.eval_dir, name, p, v, unsafe=tuple(flags or ()), comment=note or "")
        return (banner(f"Saved your verdict on {item_id}. Press 'Next item' to continue.", "ok"),
                review_summary_md(r.eval_dir, preds), None, [], "")

    submit.click(_submit, [runs, reviewer, item_state, verdict, unsafe, comment, preds_state],
                 [status, rv_summary, verdict, unsafe, comment])
