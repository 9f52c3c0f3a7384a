"""Playground helpers without a browser: model names and typed paths are checked (and paths
confined to the workspace) before any weights are touched."""

from __future__ import annotations

import json

import pytest

from engine.errors import ModelError, PathError
from ui.context import AppContext
from ui.tabs.playground import describe, model_choices, resolve_user_model


@pytest.fixture
def ctx(workspace):
    return AppContext(workspace=workspace)


def test_choices_list_embedded_models_first():
    values = [v for _, v in model_choices()]
    assert values[:2] == ["smollm2-135m-instruct", "whisper-tiny.en"]
    assert "offline" in model_choices()[0][0]


def test_registry_names_and_hub_ids_pass(ctx):
    name, spec = resolve_user_model(ctx, "whisper-tiny.en")
    assert (name, spec.kind) == ("whisper-tiny.en", "speech")
    name, spec = resolve_user_model(ctx, "someone/some-model")
    assert name == "someone/some-model" and spec.kind == "text"
    assert "speech model" in describe(spec.__class__("x", "speech", "x"))


def test_local_model_folder_must_be_inside_workspace(ctx, tmp_path):
    inside = ctx.workspace.root / "models" / "my-whisper"
    inside.mkdir(parents=True)
    (inside / "config.json").write_text(json.dumps({"model_type": "whisper"}))
    name, spec = resolve_user_model(ctx, "models/my-whisper")
    assert name == str(inside) and spec.kind == "speech"
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "config.json").write_text("{}")
    with pytest.raises(PathError, match="outside the workspace"):
        resolve_user_model(ctx, str(outside))
    with pytest.raises(PathError, match="outside the workspace"):
        resolve_user_model(ctx, "../../etc")
    with pytest.raises(PathError, match="does not exist"):
        resolve_user_model(ctx, "./models/missing")


@pytest.mark.parametrize("bad", ["", "   ", "no-such-model", "a b c"])
def test_unknown_names_are_model_errors_naming_choices(ctx, bad):
    with pytest.raises(ModelError) as e:
        resolve_user_model(ctx, bad)
    assert "smollm2-135m-instruct" in str(e.value) or "Pick a model" in str(e.value)


def test_stop_event_ends_generation_early():
    """Stop sets the event; the stopping criterion then ends the real generate loop, so no
    background thread keeps generating to max_new_tokens."""
    import threading

    from engine.infer import stream_answer
    from engine.models.loader import get_cached
    from ui.tabs.playground import _stop_when

    lm = get_cached("smollm2-135m-instruct")
    question = "Write a long essay about the history of medicine."
    running = threading.Event()
    free = list(stream_answer(lm, question, max_new_tokens=24, stopping_criteria=_stop_when(running)))
    stopped = threading.Event()
    stopped.set()
    cut = list(stream_answer(lm, question, max_new_tokens=24, stopping_criteria=_stop_when(stopped)))
    n_free = len(lm.tokenizer(free[-1])["input_ids"])
    n_cut = len(lm.tokenizer(cut[-1])["input_ids"]) if cut and cut[-1] else 0
    assert n_free >= 15 and n_cut <= 2, (free[-1], cut)
