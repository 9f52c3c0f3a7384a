"""The Gradio Blocks app: a header and one tab per area, each built by ui/tabs/<area>.py."""

from __future__ import annotations

import importlib

import gradio as gr

from ui.context import AppContext

TITLE = "MedTune Workbench"

#: (tab label, module under ui.tabs). Each module has build(ctx) called inside its gr.Tab.
TABS = (
    ("Playground", "playground"),
    ("Data", "data"),
    ("Train", "train"),
    ("Compare", "compare"),
    ("Evaluate", "evaluate"),
    ("Export", "export"),
)


def build_app(ctx: AppContext) -> gr.Blocks:
    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        gr.Markdown(
            f"# {TITLE}\nLoRA/QLoRA fine-tuning of medical language and speech models: "
            "data, training, base-vs-tuned comparison and export in one place. "
            "Research use only: not a medical device, not medical advice."
        )
        with gr.Tabs():
            for label, module in TABS:
                with gr.Tab(label, id=module):
                    importlib.import_module(f"ui.tabs.{module}").build(ctx)
    return demo
