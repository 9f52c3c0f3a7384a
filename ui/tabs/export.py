"""The Export tab: pick a finished run and formats, follow the export job, download, push.

The export itself is a background job (``engine.jobs`` kind ``export``); this tab submits it
and polls the run folder (jobs/export.json, export/). The Hub push runs in this process
(``engine.export.hub``) so the token typed here is never handed to a job or written to disk;
the token field is emptied as soon as the push is submitted.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from engine import jobs
from engine.errors import MedtuneError
from engine.export.hub import push_export
from engine.export.results import read_export
from engine.runs import ACTIVE, get_run, list_runs
from ui.components import banner, error_banner, gradio_progress, status_errors
from ui.context import AppContext

FORMAT_CHOICES = (("Merged model (safetensors, no peft needed)", "merged"),
                  ("Adapter zip (PEFT)", "adapter_zip"),
                  ("ONNX (float32, parity-checked)", "onnx"))
DTYPE_CHOICES = ("auto", "float32", "bfloat16", "float16")
POLL_SECONDS = 1.5


def exportable_runs(ctx: AppContext) -> list[tuple[str, str]]:
    """(label, run id) for runs with a saved adapter, newest first."""
    out = []
    for run in list_runs(ctx.workspace):
        if (run.adapter_dir / "adapter_config.json").is_file() and run.has_trained_weights():
            state = run.status("train").get("label", "")
            out.append((f"{run.id} ({state})" if state else run.id, run.id))
    return out


def _run(ctx: AppContext, run_id: str | None):
    if not run_id:
        raise MedtuneError("Pick a run first (only runs with a trained adapter are listed).")
    return get_run(ctx.workspace, run_id)


def job_banner(st: dict[str, Any]) -> str:
    """One status line for the export job of a run."""
    state = st.get("state")
    if not state:
        return banner("No export yet for this run.")
    if state in ACTIVE:
        pct = f" {100 * float(st.get('progress') or 0):.0f}%" if state == "running" else ""
        return banner(f"Export {state}{pct}: {st.get('message', '')}".rstrip(": "))
    if state == "completed":
        return banner("Export completed.", "ok")
    text = f"Export {st.get('label', state)}: {st.get('error', '')}"
    if st.get("hint"):
        text += f"\nHint: {st['hint']}"
    return banner(text, "error")


def build(ctx: AppContext) -> None:
    gr.Markdown(
        "Export a finished run: the merged model (loads with plain transformers), the LoRA adapter "
        "as a zip, ONNX graphs, and a model card. The export runs as a background job; merged and "
        "ONNX outputs are verified against base + adapter before they are kept.")
    with gr.Row():
        run_dd = gr.Dropdown(label="Run", choices=exportable_runs(ctx), value=None, scale=4,
                             elem_id="export-run")
        refresh = gr.Button("Refresh runs", scale=1, elem_id="export-refresh")
    with gr.Row():
        formats = gr.CheckboxGroup(label="Formats", choices=list(FORMAT_CHOICES), value=["merged", "adapter_zip"],
                                   elem_id="export-formats", scale=3)
        dtype = gr.Dropdown(label="Merged weights dtype", choices=list(DTYPE_CHOICES), value="auto", scale=1,
                            info="auto: float32 on CPU; bfloat16/float16 on a GPU. 4-/8-bit runs merge "
                                 "into a de-quantized base.", elem_id="export-dtype")
    start = gr.Button("Export", variant="primary", elem_id="export-start")
    status = gr.HTML(banner("Pick a run."), elem_id="export-status")
    with gr.Accordion("Verification", open=True):
        verification = gr.Markdown(elem_id="export-verification")
    files = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="export-files")
    with gr.Accordion("Model card preview (README.md)", open=False):
        card = gr.Markdown(elem_id="export-card")
    with gr.Accordion("Push to the Hugging Face Hub", open=False):
        with gr.Row():
            repo = gr.Textbox(label="Repo id", placeholder="owner/name", elem_id="export-repo")
            what = gr.Radio(label="Push", choices=["auto", "merged", "adapter"], value="auto",
                            info="auto: the merged model when exported, else the adapter")
            private = gr.Checkbox(label="Private repo", value=True, elem_id="export-private")
        token = gr.Textbox(label="Hugging Face token", type="password", elem_id="export-token",
                           placeholder="hf_... (empty: use HF_TOKEN from the server's environment)",
                           info="Used for this push only; never saved, logged, or shown again.")
        push = gr.Button("Push", elem_id="export-push")
        push_status = gr.HTML(elem_id="export-push-status")
    shown = gr.State("")  # signature of the export shown, so polls only resend what changed
    timer = gr.Timer(POLL_SECONDS)

    def refresh_runs(current):
        choices = exportable_runs(ctx)
        ids = [v for _, v in choices]
        return gr.update(choices=choices, value=current if current in ids else None)

    refresh.click(refresh_runs, inputs=[run_dd], outputs=[run_dd])

    @status_errors(1)
    def on_start(run_id, chosen, dt):
        from engine.export.job import ExportOptions  # noqa: PLC0415 - imports torch (merge, ONNX checks)

        run = _run(ctx, run_id)
        chosen = list(chosen or [])
        opts = ExportOptions(merged="merged" in chosen, adapter_zip="adapter_zip" in chosen,
                             onnx="onnx" in chosen, dtype=dt or "auto", zip_folders=True)
        ExportOptions.from_params(opts.to_params())  # same validation as the job ("nothing to export")
        jobs.submit(run, "export", opts.to_params())
        return job_banner(run.status("export"))

    start.click(on_start, inputs=[run_dd, formats, dtype], outputs=[status])

    def poll(run_id, last):
        if not run_id:
            return banner("Pick a run."), gr.skip(), gr.skip(), gr.skip(), last
        try:
            run = _run(ctx, run_id)
            st = run.status("export")
            if st.get("state") == "queued":
                jobs.schedule(ctx.workspace)  # drive the queue: a job may wait for a finished one
            view = read_export(run.path)
        except MedtuneError as e:
            return banner(str(e), "error"), gr.skip(), gr.skip(), gr.skip(), last
        sig = f"{run_id}|{view.manifest.get('created', '')}|{len(view.downloads)}"
        if sig == last:
            return job_banner(st), gr.skip(), gr.skip(), gr.skip(), last
        if not view.exists:
            return job_banner(st), "", "", None, sig
        return (job_banner(st), view.verification_markdown(), view.card,
                [str(p) for p in view.downloads] or None, sig)

    outputs = [status, verification, card, files, shown]
    timer.tick(poll, inputs=[run_dd, shown], outputs=outputs, show_progress="hidden")
    run_dd.change(poll, inputs=[run_dd, gr.State("")], outputs=outputs, show_progress="hidden")

    def on_push(run_id, repo_id, is_private, what_value, tok, progress=gr.Progress()):
        # The token is dropped from the page first thing: whatever happens below, it is not shown again.
        try:
            run = _run(ctx, run_id)
            rec = push_export(run.export_dir, repo_id, token=tok or None, private=bool(is_private),
                              what=what_value, progress=gradio_progress(progress))
            msg = banner(f"Pushed the {rec['what']} export ({len(rec['files'])} files) to {rec['url']} "
                         f"({'private' if rec['private'] else 'public'}), commit {rec['commit']}.", "ok")
        except Exception as e:  # noqa: BLE001 - reported in the page; push_export scrubs the token
            msg = error_banner(e)
        return msg, ""

    push.click(on_push, inputs=[run_dd, repo, private, what, token], outputs=[push_status, token])
