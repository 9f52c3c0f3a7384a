"""The Data tab (built out by issue #3)."""

from __future__ import annotations

import gradio as gr

from ui.context import AppContext


def build(ctx: AppContext) -> None:
    gr.Markdown("This tab is not built yet.")
