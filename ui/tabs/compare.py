"""The Compare tab: base and tuned side by side on one input.

Pick a run (its adapter) or a base model alone; type a question, pull a dataset row, upload
a clip or record one. Text answers stream; transcripts are shown against the reference as
a coloured word diff with WER and medical terms hit/missed. One copy of the base weights:
the engine toggles the adapter (engine.eval.compare), under the app's model lock.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from engine.data.datasets import list_datasets, open_dataset
from engine.data.readers import read_terms
from engine.data.shipped import SHIPPED_DIR
from engine.errors import DataError
from engine.eval.compare import open_pair as open_model_pair
from engine.eval.compare import open_run_pair, sides, stream_both, transcribe_both
from engine.models.registry import model_ref
from engine.runs import config_head, get_run, list_runs
from ui.components import banner, gradio_progress, status_errors
from ui.context import AppContext
from ui.eval_views import LEGEND, speech_side, text_side

BASE_ONLY = "(base model only)"
MAX_NEW_TOKENS = (128, 8, 1024)


def run_choices(ctx: AppContext) -> list[tuple[str, str]]:
    """(label, run id) of runs that have a trained adapter or model, newest first."""
    out = [(BASE_ONLY, BASE_ONLY)]
    for r in list_runs(ctx.workspace):
        if r.has_trained_weights():
            # the head of config.yaml only, as the run tables read it: a huge config costs nothing
            model = config_head(r.config_path, (("model", "name"),)).get(("model", "name"), "?")
            out.append((f"{r.id} ({model})", r.id))
    return out


def dataset_choices(ctx: AppContext) -> list[str]:
    return [d["name"] for d in list_datasets(ctx.workspace)]


def default_terms() -> list[str]:
    """The shipped dictation term list: used to mark terms when no dataset row is loaded."""
    path = SHIPPED_DIR / "med-dictation" / "terms.txt"
    return read_terms(path) if path.is_file() else []


def open_pair(ctx: AppContext, run_id: str, base_model: str, progress=None):
    """The comparison pair for the picked run (adapter attached) or base model, cached."""
    if run_id and run_id != BASE_ONLY:
        return open_run_pair(get_run(ctx.workspace, run_id), cached=True, progress=progress)
    return open_model_pair(model_ref(base_model, ctx.workspace), cached=True, progress=progress)


def build(ctx: AppContext) -> None:
    gr.Markdown("Base and tuned side by side on the same input, with the same generation settings. "
                "The tuned side is the base model with the run's LoRA adapter switched on.")
    terms_state = gr.State([])
    with gr.Row():
        run = gr.Dropdown(run_choices(ctx), value=BASE_ONLY, label="Run (its adapter = tuned side)",
                          elem_id="cmp-run", scale=3)
        base_model = gr.Dropdown(["smollm2-135m-instruct", "whisper-tiny.en"], value="whisper-tiny.en",
                                 allow_custom_value=True, label="Base model (when no run is picked)",
                                 elem_id="cmp-base-model", scale=2)
        refresh = gr.Button("↻ Runs", scale=0, elem_id="cmp-refresh")
        load = gr.Button("Load", variant="secondary", scale=0, elem_id="cmp-load")
    status = gr.HTML(banner("Pick a run (or a base model) and press Load, or just Compare."), elem_id="cmp-status")
    with gr.Accordion("Input from a dataset row", open=True):
        with gr.Row():
            dataset = gr.Dropdown(dataset_choices(ctx), value="med-dictation", allow_custom_value=True,
                                  label="Dataset", elem_id="cmp-dataset")
            split = gr.Dropdown(["test", "validation", "train"], value="test", label="Split", elem_id="cmp-split")
            row = gr.Number(value=0, precision=0, minimum=0, label="Row", elem_id="cmp-row")
            load_row = gr.Button("Use this row", elem_id="cmp-load-row")
    with gr.Row():
        with gr.Column():
            question = gr.Textbox(label="Question (text models)", lines=3, elem_id="cmp-question")
        with gr.Column():
            audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Audio (speech models)",
                             elem_id="cmp-audio")
    reference = gr.Textbox(label="Reference (optional: what was said / the expected answer)", lines=2,
                           elem_id="cmp-reference")
    with gr.Row():
        max_new = gr.Slider(MAX_NEW_TOKENS[1], MAX_NEW_TOKENS[2], value=MAX_NEW_TOKENS[0], step=8,
                            label="Max new tokens", elem_id="cmp-max-new")
        temperature = gr.Slider(0.0, 1.5, value=0.0, step=0.05, label="Temperature (0 = greedy)")
        top_p = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="Top-p (sampling only)")
    go = gr.Button("Compare", variant="primary", elem_id="cmp-go")
    gr.HTML(LEGEND)
    with gr.Row(equal_height=False):
        base_out = gr.HTML(elem_id="cmp-base-out")
        tuned_out = gr.HTML(elem_id="cmp-tuned-out")

    refresh.click(lambda: gr.update(choices=run_choices(ctx)), outputs=run)

    @status_errors(1)
    def _load(run_id, model, progress=gr.Progress()):
        with ctx.model_lock:
            pair = open_pair(ctx, run_id, model, gradio_progress(progress))
        sides = "base and tuned (adapter toggled)" if pair.has_tuned else "base only"
        return banner(f"Loaded {pair.base.spec.name} ({pair.kind}): {sides}.", "ok")

    load.click(_load, [run, base_model], status)

    @status_errors(5)
    def _use_row(ds_ref, split_name, idx, progress=gr.Progress()):
        ds = open_dataset(ds_ref, ctx.workspace, gradio_progress(progress))
        rows = ds.load_split(split_name)
        i = int(idx or 0)
        if not 0 <= i < len(rows):
            raise DataError(f"row {i} is out of range: split '{split_name}' has {len(rows)} rows", field="row")
        ex = rows[i]
        msg = banner(f"Row {i} of {ds.name}/{split_name} ({ex['id']}).", "ok")
        if ds.kind == "speech":
            return msg, "", ex["audio"], ex.get("text", ""), ds.terms()
        return msg, ex.get("prompt", ""), None, ex.get("response", ""), ds.terms()

    load_row.click(_use_row, [dataset, split, row], [status, question, audio, reference, terms_state])

    @status_errors(3)
    def _compare(run_id, model, q, clip, ref, terms, mnt, temp, tp, progress=gr.Progress()):
        with ctx.model_lock:  # the adapter toggle is model-wide: one comparison at a time
            pair = open_pair(ctx, run_id, model, gradio_progress(progress))
            names = sides(pair)
            titles = {"base": "Base", "tuned": "Tuned (adapter on)"}
            if pair.kind == "speech":
                if not clip:
                    raise DataError("Upload or record a clip (or use a dataset row) to compare transcripts.")
                # the slider bounds transcripts too: a badly tuned decoder can babble to 448 tokens
                res = transcribe_both(pair, clip, reference=(ref or "").strip() or None,
                                      terms=terms or default_terms(), max_new_tokens=min(int(mnt), 440))
                outs = [speech_side(titles[s], res.get(s)) if s in names else "" for s in ("base", "tuned")]
                yield banner("Transcribed" + (" and scored against the reference." if ref else "."), "ok"), *outs
                return
            if not (q or "").strip():
                raise DataError("Type a question (or use a dataset row) to compare answers.")
            gen: dict[str, Any] = dict(max_new_tokens=int(mnt), temperature=float(temp), top_p=float(tp))
            for cur in stream_both(pair, q, **gen):
                outs = [text_side(titles[s], cur.get(s)) if s in names else "" for s in ("base", "tuned")]
                yield banner("Generating…"), *outs
            yield banner("Done.", "ok"), *outs

    go.click(_compare, [run, base_model, question, audio, reference, terms_state, max_new, temperature, top_p],
             [status, base_out, tuned_out])


__all__ = ["build", "run_choices", "open_pair"]
