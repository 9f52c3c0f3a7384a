"""The Data tab: open a dataset, page through it, hear a row, see its statistics, validate
it, scrub PHI, and split + save it as a workspace dataset the Train tab can pick.

Everything here turns widget values into calls to ``engine.data`` and results into
widgets; reading, checking, scrubbing and splitting live in the engine.
"""

from __future__ import annotations

import math

import gradio as gr
import pandas as pd

from engine.data import ner, phi
from engine.data.datasets import list_datasets, load_source, save_upload, split_and_save
from engine.data.plots import audio_figure, stats_figure
from engine.data.presets import preset_names
from engine.data.schema import SPEECH, LoadResult, example_text
from engine.data.shipped import SHIPPED
from engine.data.split import parse_ratios
from engine.data.stats import compute_stats, summary_markdown
from engine.data.validate import load_tokenizer, validate
from engine.models.loader import model_path
from engine.models.registry import model_ref
from ui.components import banner, gradio_progress, status_errors
from ui.context import AppContext

PAGE_SIZE = 20
SOURCES = ("Shipped or saved", "Upload", "Workspace path", "Hugging Face hub")
ALL = "all"


def _clip(s: str, n: int = 140) -> str:
    s = " ".join(str(s).split())
    return s if len(s) <= n else s[: n - 1] + "…"


def _dataset_choices(ctx: AppContext) -> list[tuple[str, str]]:
    out = []
    for d in list_datasets(ctx.workspace):
        tag = "shipped" if d["shipped"] else "saved"
        out.append((f"{d['name']} ({d['kind']}, {tag})", d["name"]))
    return out


def _matches(ex: dict, query: str, split: str, label: str) -> bool:
    meta = ex.get("meta", {})
    if split != ALL and meta.get("split", ALL) != split:
        return False
    if label != ALL and str(meta.get("label")) != label:
        return False
    return not query or query.lower() in (example_text(ex) + " " + str(ex.get("id", ""))).lower()


def _table(state: dict, query: str, split: str, label: str, page: float) -> tuple[pd.DataFrame, str, int]:
    """The rows of one page, a 'page x of n' line, and the page number actually shown."""
    exs = state.get("examples", [])
    idx = [i for i, ex in enumerate(exs) if _matches(ex, query or "", split or ALL, label or ALL)]
    pages = max(1, math.ceil(len(idx) / PAGE_SIZE))
    page = int(min(max(1, page or 1), pages))
    rows = []
    for i in idx[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]:
        ex, meta = exs[i], exs[i].get("meta", {})
        if state.get("kind") == SPEECH:
            rows.append([i, meta.get("split", ""), ex.get("id", ""), _clip(ex.get("text", "")),
                         round(float(ex.get("duration", 0)), 2), meta.get("voice", "")])
        else:
            rows.append([i, meta.get("split", ""), ex.get("id", ""), _clip(ex.get("prompt", "")),
                         _clip(ex.get("response", "")), str(meta.get("label", ""))])
    cols = (["row", "split", "id", "text", "seconds", "voice"] if state.get("kind") == SPEECH
            else ["row", "split", "id", "prompt", "response", "label"])
    info = f"{len(idx)} of {len(exs)} rows match · page {page} of {pages}"
    return pd.DataFrame(rows, columns=cols), info, page


def build(ctx: AppContext) -> None:
    # The loaded rows live in ctx.sessions (bounded, freed when the page closes); this state
    # holds only which source the session loaded, so a released session can say so.
    state = gr.State({})

    def held(marker: dict | None, request: gr.Request) -> dict:
        """The session's loaded data; gr.Error when none was loaded or it has been released."""
        st = ctx.sessions.get(request.session_hash) if request else None
        if st is not None:
            return st
        if (marker or {}).get("ref"):
            raise gr.Error(f"The data loaded from {marker['ref']} was released (idle, or the app's memory cap "
                           "for loaded data was reached): press Load again.")
        raise gr.Error("Load a dataset first.")

    def keep(st: dict, request: gr.Request) -> dict:
        """Hold ``st`` for this session; the marker that goes into the page's state."""
        ctx.sessions.put(request.session_hash, st, rows=len(st["examples"]))
        return {"ref": st["ref"], "rows": len(st["examples"])}
    gr.Markdown("Look at data before training on it: read it, hear it, check it, scrub it, split it. "
                "The shipped sets are synthetic (written for this project, no real patients) and are "
                "not medical advice.")
    status = gr.HTML(banner("Pick a dataset and press Load.", "info"), elem_id="data-status")

    with gr.Row():
        source = gr.Radio(list(SOURCES), value=SOURCES[0], label="Source", elem_id="data-source", scale=2)
        preset = gr.Dropdown(["auto", *preset_names()], value="auto", label="Column preset", scale=1,
                             elem_id="data-preset")
    with gr.Row():
        dataset = gr.Dropdown(_dataset_choices(ctx), value="med-dictation", label="Dataset",
                              elem_id="data-dataset", scale=3)
        upload = gr.File(label="Upload (JSONL, JSON, CSV, TSV, Parquet, NeMo manifest)", visible=False,
                         file_types=[".jsonl", ".json", ".csv", ".tsv", ".parquet"], elem_id="data-upload", scale=3)
        path = gr.Textbox(label="Path inside the workspace (file, dataset folder, or audio folder)",
                          visible=False, elem_id="data-path", scale=3)
        hub = gr.Textbox(label="Hub id (owner/name)", placeholder="qiaojin/PubMedQA", visible=False,
                         elem_id="data-hub", scale=2)
        hub_split = gr.Textbox("train", label="Hub split", visible=False, scale=1, elem_id="data-hub-split")
        load = gr.Button("Load", variant="primary", elem_id="data-load", scale=1)

    summary = gr.Markdown(elem_id="data-summary")
    with gr.Row():
        query = gr.Textbox(label="Search", placeholder="text, id…", elem_id="data-search", scale=3)
        split_f = gr.Dropdown([ALL], value=ALL, label="Split", scale=1, elem_id="data-split-filter")
        label_f = gr.Dropdown([ALL], value=ALL, label="Label", scale=1, elem_id="data-label-filter")
        page = gr.Number(1, label="Page", precision=0, minimum=1, scale=1, elem_id="data-page")
        prev_b = gr.Button("◀ Prev", scale=0)
        next_b = gr.Button("Next ▶", scale=0)
    page_info = gr.Markdown(elem_id="data-page-info")
    table = gr.Dataframe(interactive=False, wrap=True, max_height=520, elem_id="data-table")

    with gr.Row():
        with gr.Column(scale=2):
            with gr.Row():
                row_no = gr.Number(0, label="Row", precision=0, minimum=0, elem_id="data-row")
                show_b = gr.Button("Show row", elem_id="data-show-row")
            row_view = gr.JSON(label="Row", elem_id="data-row-json")
        with gr.Column(scale=3):
            row_audio = gr.Audio(label="Audio", type="filepath", interactive=False, elem_id="data-audio",
                                 buttons=["download"])  # no "share": nothing leaves this machine
            row_plot = gr.Plot(label="Waveform and spectrogram", elem_id="data-wave")

    with gr.Accordion("Statistics", open=True):
        stats_plot = gr.Plot(label="Statistics", elem_id="data-stats-plot")

    with gr.Accordion("Validation report", open=False):
        with gr.Row():
            tokenizer = gr.Textbox(label="Tokenizer to check against (optional: model name or folder)", scale=3,
                                   elem_id="data-tokenizer")
            no_audio = gr.Checkbox(False, label="Skip decoding audio", scale=1)
            validate_b = gr.Button("Validate", elem_id="data-validate", scale=1)
        report_md = gr.Markdown(elem_id="data-report")

    with gr.Accordion("PHI scrub", open=False):
        gr.Markdown("Finds names, dates, phone/fax numbers, e-mail, MRNs, SSNs, street addresses, ages over 89, "
                    "URLs and IPs. Rules, plus a named-entity model for names when the [deid] extra is installed; "
                    "review the preview (each span says which detector found it): it is not a certified "
                    "de-identification.")
        ner_on, ner_line = ner.ner_status()
        gr.Markdown(ner_line, elem_id="data-phi-ner-status")
        with gr.Row():
            use_ner = gr.Checkbox(ner_on, label="Find names with NER too (Presidio over spaCy)", interactive=ner_on,
                                  elem_id="data-phi-ner")
            preview_b = gr.Button("Preview", elem_id="data-phi-preview")
            apply_b = gr.Button("Apply to the loaded data", elem_id="data-phi-apply")
        phi_counts = gr.Markdown(elem_id="data-phi-counts")
        phi_table = gr.Dataframe(interactive=False, wrap=True, max_height=400, elem_id="data-phi-table")

    with gr.Accordion("Split and save", open=False):
        with gr.Row():
            save_name = gr.Textbox(label="Save as (workspace/datasets/NAME)", elem_id="data-save-name", scale=2)
            ratios = gr.Textbox("0.8,0.1,0.1", label="train,validation,test", scale=1, elem_id="data-ratios")
            seed = gr.Number(1234, label="Seed", precision=0, scale=1)
            stratify = gr.Dropdown(["auto", "none", "meta.label"], value="auto", label="Stratify by", scale=1)
            overwrite = gr.Checkbox(False, label="Overwrite", scale=1)
            save_b = gr.Button("Split and save", variant="primary", elem_id="data-save", scale=1)
        split_md = gr.Markdown(elem_id="data-split-summary")

    # ---- handlers -------------------------------------------------------------------------

    def on_source(kind: str):
        return (gr.update(visible=kind == SOURCES[0]), gr.update(visible=kind == SOURCES[1]),
                gr.update(visible=kind == SOURCES[2]), gr.update(visible=kind == SOURCES[3]),
                gr.update(visible=kind == SOURCES[3]))

    source.change(on_source, source, [dataset, upload, path, hub, hub_split])

    view_outputs = [status, state, summary, stats_plot, table, page_info, page, split_f, label_f, report_md, phi_counts]

    def _refresh(st: dict, message: str, request: gr.Request):
        stats = compute_stats(st["examples"], st["kind"], st.get("terms"))
        df, info, pg = _table(st, "", ALL, ALL, 1)
        splits = sorted({str(e["meta"].get("split")) for e in st["examples"] if e["meta"].get("split")})
        labels = sorted({str(e["meta"].get("label")) for e in st["examples"] if e["meta"].get("label") is not None})
        return (banner(message, "ok"), keep(st, request), summary_markdown(stats), stats_figure(stats), df, info, pg,
                gr.update(choices=[ALL, *splits], value=ALL), gr.update(choices=[ALL, *labels], value=ALL), "", "")

    @status_errors(len(view_outputs))
    def on_load(kind, name, up, path_v, hub_v, hub_split_v, preset_v, request: gr.Request,
                progress=gr.Progress()):
        prog = gradio_progress(progress)
        pre = None if preset_v in (None, "", "auto") else preset_v
        if kind == SOURCES[1]:
            if not up:
                raise gr.Error("Choose a file to upload first.")
            ref = "uploads/" + save_upload(ctx.workspace, up).name
        elif kind == SOURCES[2]:
            ref = path_v
        elif kind == SOURCES[3]:
            ref = "hub:" + (hub_v or "").strip()
        else:
            ref = name
        if prog and name in SHIPPED and kind == SOURCES[0]:
            prog(0.0, f"Preparing {name} (the first time, speech audio is synthesized)…")
        res, terms = load_source(ref, ctx.workspace, preset=pre, hub_split=hub_split_v or "train", progress=prog)
        st = {"ref": ref, "kind": res.kind, "examples": res.examples, "issues": res.issues, "terms": terms,
              "source": res.source, "rows": res.rows_read}
        note = f"Loaded {len(res.examples)} examples ({res.kind}) from {ref}."
        if res.issues:
            note += f" {len(res.issues)} row(s) had problems: see the validation report."
        return _refresh(st, note, request)

    load.click(on_load, [source, dataset, upload, path, hub, hub_split, preset], view_outputs)

    def on_page(marker, q, sp, lb, pg, request: gr.Request):
        st = ctx.sessions.get(request.session_hash) or {}
        df, info, pg = _table(st, q, sp, lb, pg)
        if not st and (marker or {}).get("ref"):
            info = "The loaded data was released (idle, or the memory cap for loaded data): press Load again."
        return df, info, pg

    for ev in (query.submit, split_f.change, label_f.change, page.submit):
        ev(on_page, [state, query, split_f, label_f, page], [table, page_info, page])
    def first_page(marker, q, sp, lb, request: gr.Request):
        return on_page(marker, q, sp, lb, 1, request)

    def prev_page(marker, q, sp, lb, pg, request: gr.Request):
        return on_page(marker, q, sp, lb, (pg or 1) - 1, request)

    def next_page(marker, q, sp, lb, pg, request: gr.Request):
        return on_page(marker, q, sp, lb, (pg or 1) + 1, request)

    query.change(first_page, [state, query, split_f, label_f], [table, page_info, page])
    prev_b.click(prev_page, [state, query, split_f, label_f, page], [table, page_info, page])
    next_b.click(next_page, [state, query, split_f, label_f, page], [table, page_info, page])

    @status_errors(5)
    def on_row(marker, n, request: gr.Request):
        exs = held(marker, request)["examples"]
        if not exs:
            raise gr.Error("Load a dataset first.")
        n = int(n or 0)
        if not 0 <= n < len(exs):
            raise gr.Error(f"Row {n} does not exist (rows 0-{len(exs) - 1}).")
        ex = exs[n]
        if "audio" in ex:
            return (banner(f"Row {n}: {ex.get('id')}", "ok"), ex, gr.update(value=ex["audio"], visible=True),
                    audio_figure(ex["audio"]), n)
        return banner(f"Row {n}: {ex.get('id')}", "ok"), ex, gr.update(value=None), None, n

    show_b.click(on_row, [state, row_no], [status, row_view, row_audio, row_plot, row_no])
    row_no.submit(on_row, [state, row_no], [status, row_view, row_audio, row_plot, row_no])

    def on_select(st, df, evt: gr.SelectData):
        try:
            return int(df.iloc[evt.index[0]]["row"])
        except (IndexError, KeyError, TypeError, ValueError):
            return gr.update()

    table.select(on_select, [state, table], row_no).then(
        on_row, [state, row_no], [status, row_view, row_audio, row_plot, row_no])

    @status_errors(2)
    def on_validate(marker, tok_name, skip_audio, request: gr.Request, progress=gr.Progress()):
        st = held(marker, request)
        if not st.get("examples") and not st.get("issues"):
            raise gr.Error("Load a dataset first.")
        tok = None
        if tok_name and tok_name.strip():
            # the CLI's loader; a folder must be in the workspace, an embedded name is its cached folder
            tok = load_tokenizer(model_path(model_ref(tok_name, ctx.workspace)))
        res = LoadResult(st["kind"], st["examples"], list(st["issues"]), st["source"], [], st["rows"])
        rep = validate(res, tokenizer=tok, check_audio=not skip_audio, progress=gradio_progress(progress))
        kind = "ok" if rep.ok else "error"
        return banner(rep.summary().splitlines()[0], kind), rep.to_markdown()

    validate_b.click(on_validate, [state, tokenizer, no_audio], [status, report_md])

    def _detectors(with_ner: bool) -> tuple[str, ...]:
        return ("rules", "ner") if with_ner and ner.ner_available() else ("rules",)

    @status_errors(3)
    def on_preview(marker, with_ner, request: gr.Request):
        exs = held(marker, request)["examples"]
        if not exs:
            raise gr.Error("Load a dataset first.")
        # The counts over every row come from the rules (thousands of notes/s); the NER model runs on
        # the previewed rows only (~100 notes/s on a CPU), so Preview stays quick on a large set.
        _, counts = phi.scrub_examples(exs)
        detectors = _detectors(with_ner)
        rows = phi.preview(exs, limit=50, detectors=detectors)
        df = pd.DataFrame([[r["id"], r["field"], r["before"], r["after"], r["found"]] for r in rows],
                          columns=["id", "field", "before", "after", "found (detector)"])
        text = ("Found by the rules in all rows: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
                if counts else "The rules found no PHI.")
        if "ner" in detectors:
            n_ner = sum(r["found"].count("ner)") for r in rows)  # (ner), (rules+ner), (names+ner)
            text += f" NER found {n_ner} name(s) in the {len(rows)} previewed row(s); Apply runs both on every row."
        return banner(text, "ok"), text, df

    preview_b.click(on_preview, [state, use_ner], [status, phi_counts, phi_table])

    @status_errors(len(view_outputs))
    def on_apply(marker, with_ner, request: gr.Request):
        st = held(marker, request)
        exs = st["examples"]
        if not exs:
            raise gr.Error("Load a dataset first.")
        scrubbed, counts = phi.scrub_examples(exs, detectors=_detectors(with_ner))
        st = {**st, "examples": scrubbed, "scrubbed": True}
        n = sum(counts.values())
        out = list(_refresh(st, f"Replaced {n} identifier(s) in the loaded data; Split and save to keep it.", request))
        out[-1] = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "No PHI found."
        return tuple(out)

    apply_b.click(on_apply, [state, use_ner], view_outputs)

    @status_errors(3)
    def on_save(marker, name, ratios_v, seed_v, strat, over, request: gr.Request):
        st = held(marker, request)
        if not st.get("examples"):
            raise gr.Error("Load a dataset first.")
        r = parse_ratios(ratios_v)  # the CLI's parser: three finite ratios summing to 1
        res = LoadResult(st["kind"], st["examples"], [], st["source"], [], st["rows"])
        strat_key = {"auto": None, "none": ""}.get(strat, strat)
        d, summ = split_and_save(res, ctx.workspace, (name or "").strip(), ratios=r, seed=int(seed_v or 0),
                                 stratify=strat_key, terms=st.get("terms") or None, overwrite=bool(over))
        lines = [f"Saved **{d.name}** at `{d.path}` (seed {d.info.get('seed')}); pick it in the Train tab."]
        for s, v in summ.items():
            lines.append(f"- {s}: {v['examples']}" + (f" {v['labels']}" if v.get("labels") else ""))
        return (banner(f"Saved dataset {d.name}.", "ok"), "\n".join(lines),
                gr.update(choices=_dataset_choices(ctx)))

    save_b.click(on_save, [state, save_name, ratios, seed, stratify, overwrite], [status, split_md, dataset])
