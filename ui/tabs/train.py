"""The Train tab: a form built from RunConfig, launch, and live curves read from run folders.

Nothing here trains or parses metrics files: the form's fields, defaults, ranges and help
come from ``engine.config``; launching/stopping/resuming is ``engine.jobs``; everything shown
about a run is read from its folder (``engine.runs``) on each ``gr.Timer`` tick, so a
reloaded page (or a second browser tab) re-attaches to running jobs by itself.
"""

from __future__ import annotations

import html
import shlex
from typing import Any

import gradio as gr
import plotly.graph_objects as go
from plotly.colors import qualitative

from engine import jobs
from engine.config import RunConfig, diff_configs, iter_fields
from engine.data.datasets import list_datasets
from engine.errors import ConfigError
from engine.eval.definitions import wer_name
from engine.models.registry import list_models
from engine.preflight import confined, load_config
from engine.runs import Run, get_run, list_runs
from engine.train.rehearsal_spec import rehearsal_config
from engine.workspace import ASSETS
from ui.components import banner, error_banner, ui_errors
from ui.context import AppContext
from ui.plan_view import plan_html

POLL_SECONDS = 2.0
#: Depth of a rehearsal started from the form: full width and vocabulary, 2 transformer layers
#: (a CPU runs that in about a minute; `medtune rehearse --layers 0` rehearses the full depth).
REHEARSAL_LAYERS = 2
RECIPES_DIR = ASSETS / "recipes"
DEFAULTS = "(defaults)"
SECTION_TITLES = {"model": "Model", "data": "Data", "lora": "LoRA", "train": "Training", "eval": "Evaluation",
                  "launch": "Where to run"}
TABLE_COLS = ["run", "state", "where", "progress", "model", "data", "best_eval_loss", "best_wer"]


def recipe_choices() -> list[str]:
    return [DEFAULTS] + sorted(p.name for p in RECIPES_DIR.glob("*.yaml"))


def _model_choices() -> list[str]:
    return [s.name for s in list_models()]


def _dataset_choices(ctx: AppContext) -> list[str]:
    try:
        return [d["name"] for d in list_datasets(ctx.workspace)]
    except Exception:  # noqa: BLE001 - a broken dataset folder must not break the form
        return []


def _component(ctx: AppContext, section: str, name: str, typ: type, value: Any, meta: Any):
    label, info, key = name, meta.get("help", ""), f"train-{section}-{name}"
    if section == "model" and name == "name":
        return gr.Dropdown(_model_choices(), value=value, label=label, info=info, allow_custom_value=True,
                           elem_id=key)
    if section == "data" and name == "dataset":
        return gr.Dropdown(_dataset_choices(ctx), value=value, label=label, info=info, allow_custom_value=True,
                           elem_id=key)
    if typ is bool:
        return gr.Checkbox(value=value, label=label, info=info, elem_id=key)
    if "choices" in meta:
        return gr.Dropdown(list(meta["choices"]), value=value, label=label, info=info, elem_id=key)
    if typ in (int, float):
        return gr.Number(value=value, label=label, info=info, precision=0 if typ is int else None,
                         minimum=meta.get("min"), maximum=meta.get("max"), elem_id=key)
    if "lines" in meta:  # one entry per line (launch.sbatch_extra)
        return gr.Textbox(value=value, label=label, info=info, lines=2, max_lines=12, elem_id=key)
    return gr.Textbox(value=value, label=label, info=info, elem_id=key)


def _form_values(cfg: RunConfig) -> list[Any]:
    return [v for _, _, _, v, _ in iter_fields(cfg)]


def config_from_form(ctx: AppContext, values: list[Any]) -> RunConfig:
    """RunConfig from the widget values; ConfigError lists every bad field."""
    raw: dict[str, dict[str, Any]] = {}
    for (section, name, typ, _, _), v in zip(iter_fields(), values):
        if v is None and typ in (int, float):
            continue  # an emptied number box: keep the default rather than invent one
        raw.setdefault(section, {})[name] = v
    cfg, problems = RunConfig.parse(raw)
    cfg, more = confined(cfg, ctx.workspace)  # every path field inside the workspace, the model's too
    problems += more
    if problems:
        raise ConfigError(problems)
    return cfg


def cli_command(cfg: RunConfig, name: str, recipe: str) -> str:
    """The `medtune` command that launches the same run: the recipe (or the previewed YAML
    saved as run.yaml) plus --set for every field the form changed."""
    from_recipe = recipe and recipe != DEFAULTS
    base = load_config(RECIPES_DIR / recipe) if from_recipe else None
    head = f"medtune train assets/recipes/{recipe}" if from_recipe else "medtune train run.yaml"
    sets = []
    if base is not None:
        sets = [f"--set {s}.{n}={shlex.quote(str(v))}" for (s, n, _, v, _), (_, _, _, d, _)
                in zip(iter_fields(cfg), iter_fields(base)) if v != d]
    parts = [head] + ([f"--name {shlex.quote(name)}"] if name else []) + sets
    note = "" if from_recipe else "# run.yaml = the config shown on the left\n"
    return note + " \\\n    ".join(parts)


# ---- run views ----------------------------------------------------------------------------------
def runs_table(ctx: AppContext) -> list[list[Any]]:
    rows = []
    for run in list_runs(ctx.workspace):
        s = run.summary()
        s["progress"] = f"{100 * s['progress']:.0f}%"
        rows.append([s[c] for c in TABLE_COLS])
    return rows


def loss_figure(runs: list[Run]):
    """Train loss, eval loss and (speech) WER against step; one colour per run. The WER is
    named with the normaliser the training evaluation uses (engine.train.speech)."""
    fig = go.Figure()
    any_wer = False
    for i, run in enumerate(runs):
        color = qualitative.Plotly[i % len(qualitative.Plotly)]
        rows = run.metrics()
        tag = f"{run.id} " if len(runs) > 1 else ""
        tr = [r for r in rows if r.get("loss") is not None]
        ev = [r for r in rows if r.get("eval_loss") is not None]
        wr = [r for r in rows if r.get("wer") is not None]
        fig.add_trace(go.Scatter(x=[r["step"] for r in tr], y=[r["loss"] for r in tr], mode="lines",
                                 name=f"{tag}train loss", line={"color": color}))
        fig.add_trace(go.Scatter(x=[r["step"] for r in ev], y=[r["eval_loss"] for r in ev], mode="lines+markers",
                                 name=f"{tag}eval loss", line={"color": color, "dash": "dash"}))
        if wr:
            any_wer = True
            fig.add_trace(go.Scatter(x=[r["step"] for r in wr], y=[r["wer"] for r in wr], mode="lines+markers",
                                     name=f"{tag}{wer_name()}", yaxis="y2", line={"color": color, "dash": "dot"}))
    layout: dict[str, Any] = {"xaxis": {"title": {"text": "step"}}, "yaxis": {"title": {"text": "loss"}},
                              "margin": {"l": 50, "r": 50, "t": 30, "b": 40}, "height": 360,
                              "legend": {"orientation": "h"}}
    if any_wer:
        layout["yaxis2"] = {"title": {"text": wer_name()}, "overlaying": "y", "side": "right", "rangemode": "tozero"}
    fig.update_layout(**layout)
    return fig


def _fmt_s(s: Any) -> str:
    if s is None:
        return "?"
    s = int(float(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def progress_html(run: Run) -> str:
    st = run.status()
    rows = run.metrics()
    train = [r for r in rows if r.get("loss") is not None]
    frac = float(st.get("progress") or 0.0)
    eta = train[-1].get("eta_s") if train and st.get("state") == "running" else None
    state = html.escape(st.get("label", "?"))
    msg = html.escape(st.get("message", ""))
    parts = [f"<b>{html.escape(run.id)}</b>: {state}", msg,
             f"train loss points: <span class='train-points'>{len(train)}</span>",
             f"last step {train[-1]['step'] if train else 0}",
             f"elapsed {_fmt_s(train[-1].get('elapsed_s')) if train else '0m00s'}",
             f"ETA {_fmt_s(eta)}" if eta is not None else ""]
    text = " · ".join(p for p in parts if p)
    bar = (f"<div style='background:#ddd;height:10px;border-radius:5px'><div style='background:#2a7;"
           f"height:10px;border-radius:5px;width:{100 * frac:.1f}%'></div></div>")
    err = rehearsal_html(run.rehearsal().get("result"))
    if st.get("error"):
        err = f"<div class='medtune-banner-error'>{html.escape(st['error'])}"
        err += f"<br>Hint: {html.escape(st['hint'])}</div>" if st.get("hint") else "</div>"
    return f"<div id='train-progress-inner' data-state='{html.escape(st.get('state', ''))}'>{bar}{text}{err}</div>"


def rehearsal_html(result: dict[str, Any] | None) -> str:
    """A finished rehearsal's figures: peak memory split as the planner splits it, and speed."""
    if not result:
        return ""
    mem, gib = result["memory"], 2 ** 30
    parts = [("weights", mem["weights"], "#4a7"), ("LoRA + optimizer", mem["lora_and_optimizer"], "#e93"),
             ("activations", mem["activations"], "#58c")]
    total = max(1, mem["peak"])
    bar = "".join(f"<div title='{name}' style='background:{color};height:12px;width:{100 * n / total:.1f}%'></div>"
                  for name, n, color in parts)
    legend = " + ".join(f"{name} {n / gib:.2f}" for name, n, _ in parts)
    speed = f"{mem['s_per_step']:.1f} s/step on {html.escape(str(result['device']))}" if mem.get("s_per_step") else ""
    return (f"<div class='train-rehearsal'><b>Rehearsal</b>: peak {mem['peak'] / gib:.2f} GiB = {legend} GiB "
            f"({html.escape(mem['measured_by'])}); trainable params {result['trainable_params']:,}; {speed}"
            f"<div style='display:flex;margin-top:4px'>{bar}</div></div>")


def diff_rows(ctx: AppContext, ids: list[str]) -> list[list[Any]]:
    if len(ids) < 2:
        return []
    cfgs = {}
    for rid in ids:
        try:
            cfgs[rid] = get_run(ctx.workspace, rid).config()
        except Exception:  # noqa: BLE001 - a run being deleted
            continue
    return [[r["field"]] + [r.get(k) for k in cfgs] for r in diff_configs(cfgs)]


# ---- layout ---------------------------------------------------------------------------------------
def run_to_watch(runs: list[Run]) -> Run:
    """The run a fresh Train tab shows first: the newest running one, else the newest queued
    one (it starts next), else the newest of all (``runs`` come newest first)."""
    states = [r.status().get("state") for r in runs]
    for wanted in ("running", "queued"):
        if wanted in states:
            return runs[states.index(wanted)]
    return runs[0]


def build(ctx: AppContext) -> None:
    gr.Markdown("Fill the form (or load a recipe), preview the YAML and the equivalent command, then "
                "launch. Runs continue in the background: reload the page any time.")
    with gr.Row():
        recipe = gr.Dropdown(recipe_choices(), value=DEFAULTS, label="Recipe", elem_id="train-recipe",
                             info="Ready-made configs from assets/recipes/ (each holds its CLI command).")
        run_name = gr.Textbox(label="Run name", placeholder="optional, e.g. smollm2-qa-r16", elem_id="train-name")
    fields = list(iter_fields())
    comps: list[Any] = []
    for section, title in SECTION_TITLES.items():
        with gr.Accordion(title, open=section in ("model", "data", "lora", "train")):
            with gr.Row(equal_height=False):
                cols = [gr.Column(min_width=240) for _ in range(3)]
            sec_fields = [f for f in fields if f[0] == section]
            for i, (s, n, t, v, m) in enumerate(sec_fields):
                with cols[i % 3]:
                    comps.append(_component(ctx, s, n, t, v, m))
    with gr.Row():
        preview_btn = gr.Button("Preview", elem_id="train-preview")
        launch_btn = gr.Button("Launch", variant="primary", elem_id="train-launch")
        rehearse_btn = gr.Button("Rehearse at real size", elem_id="train-rehearse")
    plan_box = gr.HTML(elem_id="train-plan")
    status = gr.HTML(elem_id="train-status")
    with gr.Row():
        yaml_box = gr.Code(label="config.yaml", language="yaml", elem_id="train-yaml")
        cmd_box = gr.Code(label="Equivalent command", language="shell", elem_id="train-cmd")

    gr.Markdown("### Runs")
    table = gr.Dataframe(headers=TABLE_COLS, value=lambda: runs_table(ctx), interactive=False, elem_id="train-runs",
                         wrap=True)
    # allow_custom_value: the timer refreshes the choices, and a tick computed just before a
    # launch can leave the launched run selected but not yet among the client's choices; strict
    # validation would then fail every later tick. Unknown ids are filtered in refresh() and
    # refused by get_run() in act() instead.
    selected = gr.Dropdown([], value=[], multiselect=True, allow_custom_value=True, label="Runs to watch / compare",
                           elem_id="train-selected", info="Pick one to watch it, several to overlay their curves.")
    progress = gr.HTML(elem_id="train-progress")
    chart = gr.Plot(label="Loss (and WER for speech)", elem_id="train-chart")
    with gr.Row():
        stop_btn = gr.Button("Stop (checkpoint, then stop)", elem_id="train-stop")
        kill_btn = gr.Button("Force stop", variant="stop", elem_id="train-kill")
        resume_btn = gr.Button("Resume", elem_id="train-resume")
    log = gr.Textbox(label="Log (last 40 lines)", lines=12, max_lines=12, autoscroll=True, elem_id="train-log")
    diff = gr.Dataframe(label="Config differences", interactive=False, elem_id="train-diff")
    timer = gr.Timer(POLL_SECONDS)

    # ---- handlers ----
    @ui_errors
    def load_recipe(name: str):
        cfg = RunConfig() if name == DEFAULTS else load_config(RECIPES_DIR / name)
        return _form_values(cfg) + [plan_html(cfg)]

    recipe.change(load_recipe, recipe, comps + [plan_box])

    def preview(name: str, rec: str, *values):
        try:
            cfg = config_from_form(ctx, list(values))
        except Exception as err:  # noqa: BLE001 - shown in the banner
            return error_banner(err), gr.update(), gr.update(), gr.update()
        return banner("Config is valid.", "ok"), cfg.to_yaml(), cli_command(cfg, name, rec), plan_html(cfg)

    preview_btn.click(preview, [run_name, recipe] + comps, [status, yaml_box, cmd_box, plan_box])

    def launch(name: str, *values):
        try:
            cfg = config_from_form(ctx, list(values))
            run = jobs.launch(ctx.workspace, cfg, name=(name or "").strip() or None)
        except Exception as err:  # noqa: BLE001 - shown in the banner
            return error_banner(err), gr.update(), gr.update()
        st = run.status()
        choices = [r.id for r in list_runs(ctx.workspace)]
        return (banner(f"Run {run.id} {st.get('state')}.", "ok"), gr.update(choices=choices, value=[run.id]),
                runs_table(ctx))

    launch_btn.click(launch, [run_name] + comps, [status, selected, table])

    def rehearse(name: str, *values):
        """The form's recipe at its model's real shapes, random weights, 2 layers, a few steps."""
        try:
            form = config_from_form(ctx, list(values))  # the batch and length as set, so the figures are theirs
            cfg, spec = rehearsal_config(form, layers=REHEARSAL_LAYERS, length=form.train.max_length, steps=2)
            run = jobs.launch(ctx.workspace, cfg, name=(name or "").strip() or None, rehearsal=spec)
        except Exception as err:  # noqa: BLE001 - shown in the banner
            return error_banner(err), gr.update(), gr.update()
        choices = [r.id for r in list_runs(ctx.workspace)]
        return (banner(f"Rehearsal {run.id} {run.status().get('state')}: {REHEARSAL_LAYERS} layers at full width, "
                       "random weights; its memory and speed appear under the chart when it ends.", "ok"),
                gr.update(choices=choices, value=[run.id]), runs_table(ctx))

    rehearse_btn.click(rehearse, [run_name] + comps, [status, selected, table])

    def refresh(ids: list[str]):
        jobs.schedule(ctx.workspace)  # reclaims dead jobs' slots and starts queued ones
        all_runs = list_runs(ctx.workspace)
        all_ids = [r.id for r in all_runs]
        given = list(ids or [])
        ids = [i for i in given if i in all_ids]
        if not ids and all_ids:  # after a reload or restart: the run most worth watching
            ids = [run_to_watch(all_runs).id]
        runs = [get_run(ctx.workspace, i) for i in ids]
        prog = "".join(progress_html(r) for r in runs)
        tail = runs[0].log_tail(40) if len(runs) == 1 else ""
        # Set the selection only when this tick had to change it: a tick runs beside a Launch
        # click, and writing back the ids it was given would undo the launch's new selection.
        sel = gr.update(choices=all_ids) if ids == given else gr.update(choices=all_ids, value=ids)
        return (sel, runs_table(ctx), prog, loss_figure(runs) if runs else None, tail, diff_rows(ctx, ids))

    outs = [selected, table, progress, chart, log, diff]
    timer.tick(refresh, selected, outs, show_progress="hidden")
    selected.input(refresh, selected, outs, show_progress="hidden")

    def act(ids: list[str], what: str):
        if not ids:
            return banner("Select a run first.", "error")
        done = []
        try:
            for rid in ids:
                run = get_run(ctx.workspace, rid)
                if what == "resume":
                    jobs.resume(run)
                else:
                    jobs.stop(run, force=what == "kill")
                done.append(rid)
        except Exception as err:  # noqa: BLE001 - shown in the banner
            return error_banner(err)
        verb = {"stop": "Stop requested for", "kill": "Force-stopped", "resume": "Resuming"}[what]
        return banner(f"{verb} {', '.join(done)}.", "ok")

    stop_btn.click(lambda ids: act(ids, "stop"), selected, status)
    kill_btn.click(lambda ids: act(ids, "kill"), selected, status)
    resume_btn.click(lambda ids: act(ids, "resume"), selected, status)
