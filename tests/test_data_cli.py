"""`medtune data ...` runs the same engine functions (in-process: the dispatcher is the CLI)."""

from __future__ import annotations

import json

from engine.cli import main


def test_cli_validate_reports_line_and_exit_code(workspace, capsys):
    f = workspace.uploads / "qa.jsonl"
    f.write_text('{"prompt": "a", "response": "b"}\n{"prompt": "c", "response": \n')
    assert main(["--workspace", str(workspace.root), "data", "validate", "uploads/qa.jsonl"]) == 1
    out = capsys.readouterr().out
    assert "line 2" in out and "not valid JSON" in out and "1 error(s)" in out


def test_cli_split_inspect_and_list(workspace, capsys):
    ws = ["--workspace", str(workspace.root)]
    assert main(ws + ["data", "split", "pubmedqa-synth", "--name", "pq", "--seed", "9", "--ratios", "0.6,0.2,0.2"]) == 0
    saved = json.loads((workspace.datasets / "pq" / "dataset.json").read_text())
    assert saved["seed"] == 9 and saved["stratified_by"] == "meta.label" and sum(saved["splits"].values()) == 64
    assert main(ws + ["data", "inspect", "pq", "--html", "pq.html"]) == 0
    assert (workspace.root / "pq.html").stat().st_size > 10_000
    assert main(ws + ["data", "list"]) == 0
    assert "pq" in capsys.readouterr().out
    assert main(ws + ["data", "split", "pq", "--name", "x", "--ratios", "1,2"]) == 2  # bad ratios: a clear error
    assert "ratios" in capsys.readouterr().err


def test_cli_scrub_and_synth(workspace, capsys):
    ws = ["--workspace", str(workspace.root)]
    assert main(["data", "scrub", "--text", "Call 555-123-4567 today"]) == 0
    assert capsys.readouterr().out.strip() == "Call [PHONE] today"
    assert main(["data", "scrub", "--eval", "--gold-split", "dev"]) == 0
    assert "| PHONE |" in capsys.readouterr().out
    (workspace.uploads / "s.txt").write_text("Start apixaban.\nContinue metoprolol.\n")
    assert main(ws + ["data", "synth", "uploads/s.txt", "--voice", "en-us@170"]) == 0
    manifest = workspace.synth / "s" / "manifest.json"
    rows = [json.loads(x) for x in manifest.read_text().splitlines()]
    assert [r["text"] for r in rows] == ["Start apixaban.", "Continue metoprolol."]
    src = workspace.uploads / "notes.jsonl"
    src.write_text(json.dumps({"prompt": "Patient John Smith, MRN 1234567", "response": "ok"}) + "\n")
    assert main(ws + ["data", "scrub", "uploads/notes.jsonl", "--out", "uploads/clean.jsonl"]) == 0
    clean = json.loads((workspace.uploads / "clean.jsonl").read_text())
    assert clean["prompt"] == "Patient [NAME], MRN [MRN]"
