"""The Gradio Blocks app: a header and one tab per area, each built by ui/tabs/<area>.py."""

from __future__ import annotations

import contextlib
import importlib
from typing import Any

import gradio as gr

from ui.context import AppContext

TITLE = "MedTune Workbench"
SUBTITLE = ("LoRA/QLoRA fine-tuning of medical language and speech models: data, training, "
            "base-vs-tuned comparison and export in one place, offline on this machine.")
DISCLAIMER = "Research use only: not a medical device, not medical advice."

#: (tab label, module under ui.tabs). Each module has build(ctx) called inside its gr.Tab.
TABS = (
    ("Playground", "playground"),
    ("Data", "data"),
    ("Train", "train"),
    ("Compare", "compare"),
    ("Evaluate", "evaluate"),
    ("Export", "export"),
)

CSS = """
.medtune-header h1 { margin-bottom: 0.1em; }
.medtune-header p { margin-top: 0; opacity: 0.85; }
.medtune-banner-error { border-left: 4px solid #c0392b; padding: 0.4em 0.8em; background: rgba(192,57,43,0.08); }
.medtune-banner-ok { border-left: 4px solid #27ae60; padding: 0.4em 0.8em; background: rgba(39,174,96,0.08); }
.medtune-banner-info { border-left: 4px solid #2980b9; padding: 0.4em 0.8em; background: rgba(41,128,185,0.08); }
"""


def launch_kwargs() -> dict[str, Any]:
    """Keyword arguments for ``Blocks.launch`` that keep the app private and offline.

    - no run history (it would keep prompts/answers in the browser and offers a Hub upload),
    - no monitoring dashboard, no MCP server, no server-side rendering (needs Node),
    - errors shown as messages in the page (engine errors are turned into gr.Error first).
    """
    return dict(
        show_error=True,
        run_history=False,
        enable_monitoring=False,
        mcp_server=False,
        ssr_mode=False,
        footer_links=["api", "settings"],
        theme=gr.themes.Default(primary_hue="blue", secondary_hue="green"),
        css=CSS,
    )


def build_app(ctx: AppContext, sign_out: bool = False) -> gr.Blocks:
    """The whole workbench as one Blocks; tabs are imported lazily from ``ui.tabs``.
    ``sign_out`` (the app is behind ui/auth.py's login) adds a button to its /logout."""
    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        with gr.Row() if sign_out else contextlib.nullcontext():
            gr.Markdown(f"# {TITLE}\n{SUBTITLE}  \n**{DISCLAIMER}**", elem_classes=["medtune-header"])
            if sign_out:
                gr.Button("Sign out", link="logout", size="sm", scale=0, elem_id="sign-out")
        with gr.Tabs():
            for label, module in TABS:
                with gr.Tab(label, id=module, elem_id=f"tab-{module}"):
                    importlib.import_module(f"ui.tabs.{module}").build(ctx)

        def release(request: gr.Request) -> None:  # the page closed: its loaded data goes now
            ctx.sessions.drop(request.session_hash)

        demo.unload(release)
    return demo
