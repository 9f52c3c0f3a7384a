"""The Playground tab: pick a model, load it, ask a question or transcribe audio.

Everything heavy is the engine's (``engine.models.loader`` / ``engine.infer``); this module
only turns widget values into calls and errors into messages. Those engine modules (and
torch) are imported on first use, so the page comes up without waiting for them.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import gradio as gr

from engine.audio import audio_info, check_duration, load_audio
from engine.errors import DataError, ModelError
from engine.infer import stream_answer, transcribe
from engine.models.loader import DTYPE_CHOICES, QUANT_CHOICES, get_cached
from engine.models.registry import ModelSpec, list_models, model_ref, resolve_model
from ui.components import banner, error_banner, error_text, gradio_progress, status_errors
from ui.context import AppContext

DEFAULT_TEXT_MODEL = "smollm2-135m-instruct"
#: Generation settings: (default, min, max). One place, shown as sliders.
MAX_NEW_TOKENS = (256, 8, 1024)
TEMPERATURE = (0.0, 0.0, 1.5)
TOP_P = (1.0, 0.05, 1.0)


def model_choices() -> list[tuple[str, str]]:
    """(label, registry name) for the dropdown; embedded models first, as the registry orders."""
    out = []
    for s in list_models():
        tags = [s.kind]
        if s.embedded:
            tags.append("embedded, offline")
        if s.needs_gpu:
            tags.append("GPU")
        out.append((f"{s.name} ({', '.join(tags)})", s.name))
    return out


def resolve_user_model(ctx: AppContext, name: str) -> tuple[str, ModelSpec]:
    """The name to hand the loader, and its spec. A typed local path must lie inside the
    workspace (``Workspace.resolve``); registry names and hub ids pass as they are."""
    raw = (name or "").strip()
    if not raw:
        raise ModelError("Pick a model first.")
    ref = model_ref(raw, ctx.workspace)  # the one resolver: a local folder must be in the workspace
    return ref, resolve_model(ref)


def describe(spec: ModelSpec) -> str:
    bits = [f"**{spec.name}**: {spec.kind} model"]
    if spec.family:
        bits.append(f"family {spec.family}")
    if spec.license:
        bits.append(f"license {spec.license}")
    text = ", ".join(bits) + "."
    if spec.description:
        text += f"  \n{spec.description}"
    if spec.needs_gpu:
        text += "  \n⚠ Needs a CUDA GPU."
    return text


def _load(ctx: AppContext, name: str, quant: str, dtype: str, progress: Any):
    """The cached loaded model for these settings (loads, with progress, when not cached)."""
    return get_cached(name, quant=quant, dtype=dtype, progress=gradio_progress(progress))


def _stop_when(event: threading.Event) -> list:
    """A ``stopping_criteria`` for ``generate`` that ends generation once ``event`` is set.

    Stop (or a closed tab) abandons the streaming handler; without this the background
    generate thread would keep the CPU busy until max_new_tokens.
    """
    import torch  # noqa: PLC0415 - seconds to import, and only a text answer needs them
    from transformers import StoppingCriteria  # noqa: PLC0415 - seconds to import, and only a text answer needs them

    class _Cancelled(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.full((input_ids.shape[0],), event.is_set(), dtype=torch.bool, device=input_ids.device)

    return [_Cancelled()]


def _renamed(err: DataError, source: Path, shown: str) -> DataError:
    """The same error, naming the file as the user knows it rather than by the hashed
    upload path Gradio stored it under."""
    text = err.message.replace(f"'{source}'", f"'{source.name}'").replace(str(source), shown)
    return DataError(text, hint=err.hint)


def _loaded_line(lm: Any, seconds: float | None = None) -> str:
    took = f" in {seconds:.1f} s" if seconds is not None else ""
    return (f"Loaded {lm.spec.name} ({lm.spec.kind}) on {lm.device}, "
            f"{str(lm.dtype).replace('torch.', '')}, quantization {lm.quant}{took}.")


def build(ctx: AppContext) -> None:
    """Lay out the tab and wire its events."""
    gr.Markdown("Try a model before tuning it: load a text model and ask a question, or a "
                "speech model and transcribe a clip. Models load once and stay cached.")
    with gr.Row():
        with gr.Column(scale=3):
            model = gr.Dropdown(model_choices(), value=DEFAULT_TEXT_MODEL, label="Model",
                                allow_custom_value=True, elem_id="pg-model",
                                info="A registry name, a Hugging Face hub id (owner/name), or a model folder in the workspace.")
        with gr.Column(scale=1, min_width=140):
            quant = gr.Dropdown(list(QUANT_CHOICES), value="none", label="Quantization", elem_id="pg-quant")
        with gr.Column(scale=1, min_width=140):
            dtype = gr.Dropdown(list(DTYPE_CHOICES), value="auto", label="Precision", elem_id="pg-dtype")
        with gr.Column(scale=1, min_width=120):
            load_btn = gr.Button("Load model", variant="primary", elem_id="pg-load")
    info = gr.Markdown(describe(resolve_model(DEFAULT_TEXT_MODEL)), elem_id="pg-info")
    status = gr.HTML(banner("No model loaded yet.", "info"), elem_id="pg-status")

    with gr.Group(visible=True, elem_id="pg-text") as text_group:
        system = gr.Textbox(label="System prompt (optional)", lines=1, elem_id="pg-system",
                            placeholder="You are a careful medical assistant.")
        question = gr.Textbox(label="Question", lines=3, elem_id="pg-question",
                              placeholder="What is hypertension?")
        with gr.Row():
            ask_btn = gr.Button("Ask", variant="primary", elem_id="pg-ask")
            stop_btn = gr.Button("Stop", variant="stop", scale=0, min_width=120, elem_id="pg-stop")
        answer = gr.Textbox(label="Answer", lines=8, interactive=False, elem_id="pg-answer")
    with gr.Group(visible=False, elem_id="pg-speech") as speech_group:
        audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Audio (upload or record)",
                         elem_id="pg-audio")
        clip_info = gr.HTML("", elem_id="pg-clip")
        audio_path = gr.Textbox(label="…or a file path inside the workspace", elem_id="pg-audio-path",
                                placeholder="uploads/clip.wav")
        transcribe_btn = gr.Button("Transcribe", variant="primary", elem_id="pg-transcribe")
        transcript = gr.Textbox(label="Transcript", lines=4, interactive=False, elem_id="pg-transcript")
    with gr.Accordion("Generation settings", open=False, elem_id="pg-settings"):
        max_new_tokens = gr.Slider(MAX_NEW_TOKENS[1], MAX_NEW_TOKENS[2], value=MAX_NEW_TOKENS[0], step=1,
                                   label="Max new tokens", elem_id="pg-max-new-tokens")
        temperature = gr.Slider(TEMPERATURE[1], TEMPERATURE[2], value=TEMPERATURE[0], step=0.05,
                                label="Temperature (0 = greedy, reproducible)", elem_id="pg-temperature")
        top_p = gr.Slider(TOP_P[1], TOP_P[2], value=TOP_P[0], step=0.05, label="Top-p", elem_id="pg-top-p")

    def on_pick(name: str):
        """Describe the picked model and show the matching panel; no weights are touched."""
        try:
            _, spec = resolve_user_model(ctx, name)
        except Exception as err:  # noqa: BLE001 - shown in the page, the app keeps serving
            return (banner(error_text(err), "error"), gr.update(), gr.update(), gr.update())
        speech = spec.kind == "speech"
        return (banner("Not loaded yet: press Load model (or just ask / transcribe).", "info"),
                describe(spec), gr.update(visible=not speech), gr.update(visible=speech))

    @status_errors(1)
    def on_load(name: str, quant_v: str, dtype_v: str, progress=gr.Progress()):
        name, _ = resolve_user_model(ctx, name)
        t0 = time.monotonic()
        with ctx.model_lock:
            lm = _load(ctx, name, quant_v, dtype_v, progress)
        return banner(_loaded_line(lm, time.monotonic() - t0), "ok")

    @status_errors(2)
    def on_ask(name, quant_v, dtype_v, system_v, question_v, max_tokens, temp, top_p_v, progress=gr.Progress()):
        name, spec = resolve_user_model(ctx, name)
        if spec.kind != "text":
            raise ModelError(f"{spec.name} is a speech model: it transcribes audio, it does not answer questions.",
                             hint="Pick a text model such as smollm2-135m-instruct.")
        if not (question_v or "").strip():
            raise ModelError("Type a question first.")
        cancelled = threading.Event()
        with ctx.model_lock:
            lm = _load(ctx, name, quant_v, dtype_v, progress)
            yield banner(_loaded_line(lm), "ok"), ""
            text = ""
            try:
                for text in stream_answer(lm, question_v.strip(), system=(system_v or "").strip() or None,
                                          max_new_tokens=int(max_tokens), temperature=float(temp),
                                          top_p=float(top_p_v), stopping_criteria=_stop_when(cancelled)):
                    yield gr.update(), text
            finally:  # also runs when Gradio closes the generator on Stop
                cancelled.set()
        yield banner(_loaded_line(lm) + f" Answer: {len(text)} characters.", "ok"), text

    @status_errors(2)
    def on_transcribe(name, quant_v, dtype_v, audio_v, path_v, progress=gr.Progress()):
        name, spec = resolve_user_model(ctx, name)
        if spec.kind != "speech":
            raise ModelError(f"{spec.name} is a text model: it cannot transcribe audio.",
                             hint="Pick a speech model such as whisper-tiny.en.")
        if audio_v:
            # Uploads and recordings land in <workspace>/uploads (GRADIO_TEMP_DIR, see launch.py).
            source = ctx.workspace.resolve(audio_v, must_exist=True)
            shown = f"uploaded file '{source.name}'"
        elif (path_v or "").strip():
            source = ctx.workspace.resolve(path_v, must_exist=True)
            shown = path_v.strip()
        else:
            raise ModelError("Upload or record a clip, or type a file path in the workspace, first.")
        # Decode before loading the model: a corrupt or empty clip is reported at once,
        # naming the file, instead of after a model load.
        try:
            samples = load_audio(source)
        except DataError as err:
            raise _renamed(err, source, shown) from err
        if samples.size == 0:
            raise DataError("the clip holds no samples", file=shown)
        t0 = time.monotonic()
        with ctx.model_lock:
            lm = _load(ctx, name, quant_v, dtype_v, progress)
            text = transcribe(lm, samples)
        return banner(f"{_loaded_line(lm)} Transcribed {source.name} in {time.monotonic() - t0:.1f} s.", "ok"), text

    def on_audio(audio_v):
        """Check a clip as soon as it arrives (upload or recording) and say what it is."""
        if not audio_v:
            return ""
        try:
            source = ctx.workspace.resolve(audio_v, must_exist=True)
            shown = f"uploaded file '{source.name}'"
            try:
                info = audio_info(source)
                check_duration(info["duration"], shown)
            except DataError as err:
                raise _renamed(err, source, shown) from err
            if info["frames"] == 0:
                raise DataError("the clip holds no samples (0.0 s)", file=shown)
        except Exception as err:  # noqa: BLE001 - shown in the page
            return error_banner(err)
        return banner(f"Clip ready: {source.name}, {info['duration']:.1f} s, {info['sample_rate']} Hz, "
                      f"{info['channels']} channel(s).", "info")

    audio.change(on_audio, [audio], [clip_info])
    model.change(on_pick, [model], [status, info, text_group, speech_group])
    load_btn.click(on_load, [model, quant, dtype], [status])
    ask_ev = gr.on([ask_btn.click, question.submit], on_ask,
                   [model, quant, dtype, system, question, max_new_tokens, temperature, top_p], [status, answer])
    stop_btn.click(None, cancels=[ask_ev])
    transcribe_btn.click(on_transcribe, [model, quant, dtype, audio, audio_path], [status, transcript])
