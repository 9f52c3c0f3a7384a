"""Workspace confinement of every path-like input: RunConfig's path fields and every free-text
box of every tab go through one resolver, which refuses ``../`` escapes, absolute paths
outside, ``assets/../..`` forms and symlinks out, in words that do not tell whether the
outside target exists, is a file or a folder. Real workspaces in tmp_path, real tabs."""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import gradio as gr
import pytest

from engine.config import RunConfig, iter_fields
from engine.errors import ConfigError, MedtuneError, PathError
from engine.models.registry import model_ref, resolve_model
from engine.preflight import check, confined
from engine.workspace import Workspace
from ui.app import TABS
from ui.context import AppContext
from ui.path_inputs import PATH_INPUTS, TEXT_INPUTS
from ui.tabs.train import config_from_form

#: str fields of RunConfig that are free text, not paths (each has a max_len instead).
FREE_TEXT_FIELDS = {"data.system_prompt", "lora.target_modules"}


@pytest.fixture
def world(tmp_path):
    """A workspace, and outside it a model folder and a secret file; plus a
    symlink in the workspace that points out."""
    ws = Workspace.open(tmp_path / "ws")
    out = tmp_path / "outside"
    (out / "model").mkdir(parents=True)
    (out / "model" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (out / "model" / "dataset.json").write_text(json.dumps({"name": "x", "kind": "text"}))
    (out / "s.txt").write_text("secret\n")
    (ws.root / "link").symlink_to(out)
    return ws, out


def escapes(ws: Workspace, out: Path) -> dict[str, str]:
    """Every way out the issue names, aimed at an existing outside folder."""
    ups = "../" * (len(ws.root.parts) + 1)  # more than enough to reach "/" from the workspace
    return {
        "dotdot": os.path.relpath(out / "model", ws.root),
        "absolute": str(out / "model"),
        "assets-dotdot": "assets/" + ups + str(out / "model").lstrip("/"),
        "symlink": "link/model",
        "symlink-bare": "link",
        "home": "~",
    }


def probes(out: Path) -> list[str]:
    """An outside folder, an outside file and an outside path that does not exist (names of one
    length, so a length in a message cannot tell them apart either)."""
    return [str(out / "model"), str(out / "s.txt"), str(out / "nonex")]


def outcome(fn, value: str, ws: Workspace) -> str:
    """'refused: <message, the value blanked out>', or 'inside' when ``fn`` turned the value into
    a place inside the workspace (a slugged run name) or a plain name used inside one (a split)."""
    try:
        got = fn(value)
    except MedtuneError as e:
        assert "Traceback" not in str(e)
        return "refused: " + str(e).replace(value, "<PATH>")
    got = getattr(got, "path", got)
    plain_name = isinstance(got, str) and "/" not in got and not got.startswith((".", "~"))
    assert plain_name or (Path(got).is_absolute() and ws.contains(got, allow_assets=False)), (value, got)
    return "inside"


def assert_same_words(fn, out: Path, ws: Workspace) -> None:
    """Refused (or kept inside), in words that do not reveal whether the outside target is a
    folder, a file or missing."""
    outcomes = {outcome(fn, p, ws) for p in probes(out)}
    assert len(outcomes) == 1, outcomes


# ---- RunConfig ---------------------------------------------------------------------------------
def path_fields() -> dict[str, str]:
    return {f"{s}.{n}": meta["path"] for s, n, _, _, meta in iter_fields() if meta.get("path")}


def test_every_str_field_is_a_marked_path_a_choice_or_known_free_text():
    """iter_fields walks dataclasses.fields of every section: a new str field fails here until it
    is marked path=<kind> (and so resolved and confined) or declared free text."""
    for section, name, typ, _, meta in iter_fields():
        # a field held to a pattern (Slurm names, times, #SBATCH lines) names nothing on disk either
        if typ is str and not {"choices", "path", "pattern", "lines"} & set(meta):
            assert f"{section}.{name}" in FREE_TEXT_FIELDS, \
                f"{section}.{name}: mark it path=... (it names something on disk) or add it to FREE_TEXT_FIELDS"
    assert path_fields() == {"model.name": "model", "data.dataset": "dataset", "data.train_split": "split",
                             "data.eval_split": "split", "data.test_split": "split"}


@pytest.mark.parametrize("key", sorted(path_fields()))
def test_config_path_fields_refuse_every_escape(world, key):
    ws, out = world
    for how, value in escapes(ws, out).items():
        if path_fields()[key] == "split" and how == "symlink-bare":
            continue  # "link" is a well-formed split name: a file name inside the dataset folder
        cfg, problems = confined(RunConfig().with_overrides({key: value}), ws)
        assert any(p.startswith(f"{key}: ") for p in problems), (how, value, problems)
        assert "Traceback" not in "\n".join(problems)
        # the Train tab's form ends there too
        values = [value if f"{s}.{n}" == key else v for s, n, _, v, _ in iter_fields()]
        with pytest.raises(ConfigError) as e:
            config_from_form(AppContext(workspace=ws), values)
        assert any(p.startswith(f"{key}: ") for p in e.value.problems), (how, value, e.value.problems)

    def through_config(value):
        cfg, problems = confined(RunConfig().with_overrides({key: value}), ws)
        raise ConfigError(problems)
    assert_same_words(through_config, out, ws)


def test_train_tab_refuses_an_assets_dotdot_model_the_job_would_read_from_the_repository(world):
    """Issue item 3(a): 'assets/../../../../<dir>' passed config_from_form (it only confined names
    starting with / ~ . or existing under the workspace), and the job, whose working directory is
    the repository, then trained from a folder outside the workspace."""
    ws, out = world
    name = "assets/" + "../" * 12 + str(out / "model").lstrip("/")
    assert (Path.cwd() / name).resolve() == (out / "model").resolve()  # what a job would have read
    values = [name if (s, n) == ("model", "name") else v for s, n, _, v, _ in iter_fields()]
    with pytest.raises(ConfigError) as e:
        config_from_form(AppContext(workspace=ws), values)
    assert [p for p in e.value.problems if p.startswith("model.name: ")] == [
        f"model.name: '{name}' is outside the workspace ({ws.root})."]


def test_a_model_folder_in_the_workspace_is_stored_as_its_resolved_path(world):
    ws, _ = world
    inside = ws.root / "models" / "tiny"
    inside.mkdir(parents=True)
    (inside / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (ws.root / "alias").symlink_to(inside)  # a symlink that stays inside is fine
    for typed in ("models/tiny", "./models/tiny", str(inside), "alias"):
        values = [typed if (s, n) == ("model", "name") else v for s, n, _, v, _ in iter_fields()]
        cfg = config_from_form(AppContext(workspace=ws), values)
        assert cfg.model.name == str(inside.resolve()), typed  # the job never re-reads a relative name
    for hub in ("smollm2-135m-instruct", "someone/some-model"):  # registry names and hub ids pass as typed
        values = [hub if (s, n) == ("model", "name") else v for s, n, _, v, _ in iter_fields()]
        assert config_from_form(AppContext(workspace=ws), values).model.name == hub


def test_dataset_and_splits_are_confined_by_check_too(world):
    """`medtune train` and jobs.launch end in preflight.check: data paths are confined there as
    well (only a model folder may lie outside on the command line, README 'Security')."""
    ws, out = world
    for key in ("data.dataset", "data.train_split", "data.eval_split", "data.test_split"):
        for how, value in escapes(ws, out).items():
            if path_fields()[key] == "split" and how == "symlink-bare":
                continue  # "link" is a well-formed split name; its file is checked when read
            with pytest.raises(ConfigError) as e:
                check(RunConfig().with_overrides({key: value}), ws)
            assert any(p.startswith(f"{key}: ") for p in e.value.problems), (key, how)


# ---- the model resolver --------------------------------------------------------------------------
def test_resolve_model_with_a_workspace_confines_and_does_not_probe(world, monkeypatch, tmp_path):
    ws, out = world
    for _how, value in escapes(ws, out).items():
        with pytest.raises(PathError, match="outside the workspace"):
            resolve_model(value, ws)
    assert_same_words(lambda v: resolve_model(v, ws), out, ws)
    # a name shaped like a hub id that from_pretrained would read as a folder of the working directory
    cwd = tmp_path / "cwd"
    (cwd / "owner" / "name").mkdir(parents=True)
    (cwd / "owner" / "name" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    monkeypatch.chdir(cwd)
    with pytest.raises(PathError, match="outside the workspace"):
        model_ref("owner/name", ws)
    assert model_ref("owner/other", ws) == "owner/other"  # a real hub id
    assert resolve_model("owner/name").local  # the command line, with the user's own rights, may use it


# ---- every tab -----------------------------------------------------------------------------------
def build_tab(tab: str, ctx: AppContext) -> gr.Blocks:
    with gr.Blocks() as demo:
        importlib.import_module(f"ui.tabs.{tab}").build(ctx)
    return demo


def read_boxes(tab: str, demo: gr.Blocks) -> dict[str, gr.components.Component]:
    """Textboxes and custom-value dropdowns of ``tab`` that some handler reads, by elem_id."""
    read = {id(c) for fn in demo.fns.values() for c in fn.inputs}
    boxes = {}
    for c in demo.blocks.values():
        free = isinstance(c, gr.Textbox) or (isinstance(c, gr.Dropdown) and c.allow_custom_value)
        if free and id(c) in read:
            assert c.elem_id, f"{tab}: a free-text box without elem_id ({c.label!r}) cannot be checked"
            boxes[c.elem_id] = c
    return boxes


def test_every_free_text_box_of_every_tab_is_sorted(world):
    ws, _ = world
    ctx = AppContext(workspace=ws)
    assert {m for _, m in TABS} == set(PATH_INPUTS) == set(TEXT_INPUTS)
    for _, tab in TABS:
        boxes = set(read_boxes(tab, build_tab(tab, ctx)))
        paths, texts = set(PATH_INPUTS[tab]), TEXT_INPUTS[tab]
        assert not paths & texts, (tab, paths & texts)
        assert boxes - paths - texts == set(), f"{tab}: add these boxes to ui/path_inputs.py"
        assert (paths | texts) - boxes == set(), f"{tab}: ui/path_inputs.py names boxes the tab no longer has"


PATH_BOXES = [(tab, box) for tab, boxes in PATH_INPUTS.items() for box in boxes]


@pytest.mark.parametrize("tab,box", PATH_BOXES, ids=[f"{t}:{b}" for t, b in PATH_BOXES])
def test_every_path_box_refuses_every_escape_in_the_same_words(world, tab, box):
    ws, out = world
    ctx = AppContext(workspace=ws)
    fn = PATH_INPUTS[tab][box]
    for _how, value in escapes(ws, out).items():
        outcome(lambda v: fn(ctx, v), value, ws)  # refused, or kept inside the workspace
    assert_same_words(lambda v: fn(ctx, v), out, ws)


def test_data_tab_tokenizer_box_does_not_probe_outside(world):
    """Issue item 3(b), through the Data tab's own Validate handler: the tokenizer box loaded any
    folder or Hub id, and its messages said whether an outside path was a file, a folder or
    missing."""
    ws, out = world
    ctx = AppContext(workspace=ws)
    demo = build_tab("data", ctx)
    tok_box = read_boxes("data", demo)["data-tokenizer"]
    (validate,) = [fn for fn in demo.fns.values() if any(c is tok_box for c in fn.inputs)]
    state = {"ref": "x", "kind": "text", "examples": [{"id": "a", "prompt": "q", "response": "r", "meta": {}}],
             "issues": [], "source": "x", "rows": 1}
    request = gr.Request(session_hash="probe")  # the loaded rows are held per session by the app
    ctx.sessions.put(request.session_hash, state, rows=1)

    def shown(path):
        banner_html, _ = validate.fn({"ref": "x"}, path, True, request)
        return banner_html.replace(path, "<PATH>")

    messages = {shown(p) for p in probes(out)}
    assert len(messages) == 1, messages
    assert "outside the workspace" in messages.pop()
