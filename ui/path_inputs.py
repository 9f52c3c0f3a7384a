"""Every free-text box of the tabs, sorted: the ones that name a file, folder, model, dataset or
run, with the engine function their handler passes the text through, and the plain-text ones
that are never opened as a path.

tests/test_confinement.py builds each tab, finds every textbox (and custom-value dropdown) a
handler reads, and fails when one is in neither table; it then feeds each path box ``../``
escapes, absolute paths outside, ``assets/../..`` forms and symlinks out through its function
and checks every one is refused (or lands inside the workspace) in the same words whether the
outside target exists or not. So a new box cannot skip the workspace confinement unnoticed.
"""

from __future__ import annotations

from typing import Any, Callable

from engine.config import iter_fields
from engine.data.datasets import check_name, load_source, open_dataset
from engine.models.registry import model_ref
from engine.preflight import resolve_ref
from engine.runs import get_run, new_run_id
from ui.context import AppContext
from ui.tabs.evaluate import checked_ref
from ui.tabs.playground import resolve_user_model

#: A path box's function: (context, the box's text) -> what the handler goes on with.
Resolver = Callable[[AppContext, str], Any]


def _config_field(kind: str) -> Resolver:
    """A Train-tab box for a RunConfig path field: the field's resolver, as config_from_form
    (engine.preflight.confined) runs it."""
    return lambda ctx, text: resolve_ref(kind, text, ctx.workspace)


#: tab module -> {elem_id: the function its handler passes the box's text through}.
PATH_INPUTS: dict[str, dict[str, Resolver]] = {
    "playground": {
        "pg-model": resolve_user_model,
        "pg-audio-path": lambda ctx, text: ctx.workspace.resolve(text, must_exist=True),
    },
    "data": {
        "data-path": lambda ctx, text: load_source(text, ctx.workspace),
        "data-hub": lambda ctx, text: load_source("hub:" + text.strip(), ctx.workspace),
        "data-tokenizer": lambda ctx, text: model_ref(text, ctx.workspace),
        "data-save-name": lambda ctx, text: ctx.workspace.datasets / check_name(text.strip()),
    },
    "train": {
        # the form's RunConfig fields marked ``path`` (model, dataset, splits), from their metadata
        **{f"train-{section}-{name}": _config_field(meta["path"])
           for section, name, _, _, meta in iter_fields() if meta.get("path")},
        "train-name": lambda ctx, text: ctx.workspace.runs / new_run_id(ctx.workspace, text),
        "train-selected": lambda ctx, text: get_run(ctx.workspace, text).path,
    },
    "compare": {
        "cmp-base-model": lambda ctx, text: model_ref(text, ctx.workspace),
        "cmp-dataset": lambda ctx, text: open_dataset(text, ctx.workspace).path,
    },
    "evaluate": {
        "ev-dataset": lambda ctx, text: checked_ref("dataset", text, ctx.workspace),
        "ev-split": lambda ctx, text: checked_ref("split", text),
    },
    "export": {},
}

#: tab module -> elem_ids of free-text boxes that are never a local path.
TEXT_INPUTS: dict[str, set[str]] = {
    "playground": {"pg-system", "pg-question"},
    "data": {"data-search", "data-ratios",
             "data-hub-split"},  # a split of a Hub dataset, handed to the datasets library
    "train": {f"train-{section}-{name}" for section, name, typ, _, meta in iter_fields()
              if typ is str and not meta.get("path") and not meta.get("choices")},
    "compare": {"cmp-question", "cmp-reference"},
    "evaluate": {"ev-term", "rv-reviewer", "rv-comment"},
    "export": {"export-repo",  # a Hub repo id, refused unless owner/name; never read from disk
               "export-token"},
}
