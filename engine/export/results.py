"""Read an export folder back for display (Export tab, CLI): summary, verification, card, files."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DOWNLOADS = ("adapter.zip", "merged.zip", "onnx.zip")


@dataclass
class ExportView:
    exists: bool
    manifest: dict[str, Any] = field(default_factory=dict)
    verification: dict[str, Any] = field(default_factory=dict)
    card: str = ""                                  # README.md without its YAML front matter
    downloads: list[Path] = field(default_factory=list)
    push: dict[str, Any] = field(default_factory=dict)

    def verification_markdown(self) -> str:
        """One table row per check: what was compared, max |logit diff|, tolerance, greedy, verdict."""
        if not self.verification:
            return "No verification yet (export the merged model or ONNX to get one)."
        rows = ["| check | max abs logit diff | tolerance | identical greedy output | result |",
                "|---|---|---|---|---|"]
        merged = self.verification.get("merged")
        if merged:
            for label, key in (("merged (in memory) vs base + adapter", "in_memory"),
                               ("merged (reloaded, no peft) vs base + adapter", "reloaded_without_peft")):
                v = merged[key]
                rows.append(_row(f"{label}, {merged['merged_into']}", v))
        onnx = self.verification.get("onnx")
        if onnx:
            rows.append(_row("ONNX Runtime vs PyTorch, float32", onnx))
        return "\n".join(rows)


def _row(label: str, v: dict) -> str:
    return (f"| {label} | {v['max_abs_logit_diff']:.3g} | {v['tolerance']} | "
            f"{'yes' if v['greedy_identical'] else 'no'} | {'passed' if v['passed'] else 'FAILED'} |")


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def strip_front_matter(text: str) -> str:
    if text.startswith("---\n"):
        end = text.find("\n---", 4)
        if end != -1:
            return text[end + 4:].lstrip("\n")
    return text


def read_export(run_dir: str | Path) -> ExportView:
    """What ``<run_dir>/export/`` holds now. Only complete items are ever there (see job.py)."""
    export_dir = Path(run_dir) / "export"
    if not (export_dir / "export.json").is_file():
        return ExportView(exists=False)
    try:
        card = strip_front_matter((export_dir / "README.md").read_text(encoding="utf-8"))
    except OSError:
        card = ""
    return ExportView(
        exists=True,
        manifest=_json(export_dir / "export.json"),
        verification=_json(export_dir / "verification.json"),
        card=card,
        downloads=[export_dir / n for n in DOWNLOADS if (export_dir / n).is_file()],
        push=_json(export_dir / "push.json"),
    )
