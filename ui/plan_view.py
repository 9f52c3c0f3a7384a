"""The Train form's memory plan (engine.plan): a stacked bar of weights / LoRA + optimizer /
activations against 16, 24, 40 and 80 GB cards, the total, a fits row and the advice.

Pure HTML with inline CSS (no script, no external asset), so it renders wherever the rest of
the form does. A model the planner has no facts for is a short muted note, never an error
banner: the plan is advice beside a valid config, not a check it must pass.
"""

from __future__ import annotations

import html
import logging

from engine.config import RunConfig
from engine.errors import MedtuneError
from engine.plan import CARDS, Plan, estimate, gb

log = logging.getLogger("medtune.ui")

#: (label, Plan attribute, colour) of the bar's segments, bottom-up in memory.
SEGMENTS = (("weights", "weights", "#4a78c2"), ("LoRA + optimizer", "lora_and_optimizer", "#e0a030"),
            ("activations", "activations", "#2a9d6f"), ("overhead", "overhead", "#a8a8a8"))
_MUTED = "color:#888;font-size:0.9em"


def plan_html(cfg: RunConfig) -> str:
    """The plan of ``cfg`` on a GPU (with the CPU figure on one line), or a muted note saying why not."""
    try:
        gpu = estimate(cfg, device="cuda")
        cpu = estimate(cfg, device="cpu")
    except MedtuneError as err:
        return _note(f"No memory plan: {err.message}", err.hint)
    except Exception as err:  # noqa: BLE001 - a planner bug must not break the form's preview
        log.error("memory planner failed", exc_info=err)
        return _note(f"No memory plan (unexpected {type(err).__name__}).", None)
    return _render(gpu, cpu)


def _note(text: str, hint: str | None) -> str:
    extra = f" {html.escape(hint)}" if hint else ""
    return f"<div id='train-plan-inner' data-state='none' style='{_MUTED}'>{html.escape(text)}{extra}</div>"


def _render(p: Plan, cpu: Plan) -> str:
    scale = max(CARDS[-1] * 1.08, gb(p.total) * 1.05)  # GB across the bar's full width (room for a label)

    def pct(gigs: float) -> str:
        return f"{100 * gigs / scale:.2f}%"

    segs = "".join(
        f"<div title='{label}: {gb(getattr(p, attr)):.2f} GB' style='width:{pct(gb(getattr(p, attr)))};"
        f"background:{colour}'></div>" for label, attr, colour in SEGMENTS if getattr(p, attr) > 0)
    marks = "".join(
        f"<div style='position:absolute;left:{pct(card)};top:-16px;bottom:-2px;border-left:2px dashed "
        f"{'#2a7' if ok else '#c33'}'><span style='position:absolute;top:0;left:3px;font-size:0.75em;"
        f"white-space:nowrap'>{card} GB</span></div>" for card, ok in p.fits.items() if card <= scale)
    bar = (f"<div style='position:relative;margin:20px 0 6px'><div style='display:flex;height:18px;"
           f"background:#eee;border-radius:3px;overflow:hidden'>{segs}</div>{marks}</div>")
    legend = " &nbsp; ".join(
        f"<span style='white-space:nowrap'><span style='display:inline-block;width:10px;height:10px;"
        f"background:{colour};margin-right:4px'></span>{label} {gb(getattr(p, attr)):.2f} GB</span>"
        for label, attr, colour in SEGMENTS if getattr(p, attr) > 0)
    fits = " &nbsp; ".join(
        f"<span class='plan-fit' data-card='{card}' data-fits='{str(ok).lower()}' style='color:"
        f"{'#2a7' if ok else '#c33'}'>{card} GB {'✓' if ok else '✗'}</span>" for card, ok in p.fits.items())
    advice = (f"<div class='plan-advice' style='margin-top:4px'><b>Advice:</b> {html.escape(p.advice)}</div>"
              if p.advice else "")
    head = (f"<b>Predicted peak GPU memory: {gb(p.total):.1f} GB</b> "
            f"<span style='{_MUTED}'>({p.params / 1e9:.2f}B parameters, {p.trainable:,} trainable; "
            f"on a CPU {gb(cpu.total):.1f} GB)</span>")
    foot = (f"<div style='{_MUTED};margin-top:4px'>One training step at batch_size x max_length; not counted: "
            "evaluation, several processes' sharding, allocator fragmentation beyond the overhead.</div>")
    return (f"<div id='train-plan-inner' data-state='plan' data-total-gb='{gb(p.total):.2f}'>{head}{bar}"
            f"<div>{legend}</div><div style='margin-top:4px'>Fits: {fits}</div>{advice}{foot}</div>")
