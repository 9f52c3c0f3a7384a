"""Export as a background job: a SIGKILL mid-write leaves no partial export; pre-flight refusals."""

from __future__ import annotations

import os
import signal
import time
from collections import namedtuple

import pytest
from export_runs import make_run, tiny_llama, tiny_text_base  # noqa: F401 - fixture

from engine.export import checks
from engine.export.checks import DiskSpaceError, ExportMemoryError
from engine.export.job import ExportOptions, export_run


def _partials(export_dir):
    return [p for p in export_dir.iterdir() if p.name.startswith(".partial-")] if export_dir.is_dir() else []


def test_sigkill_mid_write_leaves_no_partial_export(tmp_path):
    from engine import jobs
    from engine.runs import Run
    from engine.workspace import Workspace

    ws = Workspace.open(tmp_path / "ws")
    # Bigger than the other tests' model (~17 MB of weights) so the write takes a moment.
    base = tiny_llama(tmp_path / "small-llama", hidden=256, layers=4)
    run = Run(make_run(ws, base, name="kill-me"))
    jobs.submit(run, "export", ExportOptions(merged=True, adapter_zip=True).to_params())
    exp = run.path / "export"
    deadline = time.time() + 240
    killed_with = None
    while time.time() < deadline:
        st = run.status("export")
        part = [p for p in _partials(exp) if any(p.iterdir())] if exp.is_dir() else []
        if part and st.get("pid"):
            killed_with = sorted(f.name for f in part[0].iterdir())
            os.killpg(int(st["pid"]), signal.SIGKILL)  # the job runs in its own process group
            break
        assert st.get("state") in ("queued", "running"), f"export ended before it could be killed: {st}"
        time.sleep(0.002)
    assert killed_with, "never saw the export being written"
    st = jobs.wait(run, "export", timeout=30)
    assert st["state"] == "failed" and st.get("reason") == "killed"
    # Nothing a reader would take for an export: no merged/, onnx/, zip, card or manifest.
    assert [p.name for p in exp.iterdir() if not p.name.startswith(".")] == []
    # The next look at the queue (any UI poll, `runs list`, a launch) finds the job dead and
    # removes its hidden leftovers, which can weigh as much as the merged model.
    jobs.schedule(ws)
    assert _partials(exp) == []
    # The next export sweeps the hidden leftovers and completes.
    jobs.submit(run, "export", ExportOptions(merged=True, adapter_zip=True).to_params())
    st = jobs.wait(run, "export", timeout=300)
    assert st["state"] == "completed", st
    assert _partials(exp) == []
    assert (exp / "merged" / "model.safetensors").is_file() and (exp / "adapter.zip").is_file()
    assert "export job completed" in run.log_tail(200)


def test_not_enough_disk_is_refused_before_writing(tiny_text_base, tmp_path, monkeypatch):
    from engine.workspace import Workspace

    run = make_run(Workspace.open(tmp_path / "ws"), tiny_text_base)
    Usage = namedtuple("Usage", "total used free")
    # A full disk cannot be arranged on a shared CI machine; the check reads shutil.disk_usage.
    monkeypatch.setattr(checks.shutil, "disk_usage", lambda p: Usage(10**9, 10**9 - 10**6, 10**6))
    with pytest.raises(DiskSpaceError, match="Not enough disk space") as err:
        export_run(run, ExportOptions(merged=True))
    assert "Free some space" in str(err.value)
    assert list((run / "export").iterdir()) == []


def test_not_enough_memory_is_refused(tiny_text_base, tmp_path, monkeypatch):
    import psutil

    from engine.workspace import Workspace

    run = make_run(Workspace.open(tmp_path / "ws"), tiny_text_base)
    real = psutil.virtual_memory()
    monkeypatch.setattr(psutil, "virtual_memory", lambda: real._replace(available=1000))
    with pytest.raises(ExportMemoryError, match="needs about .* of RAM") as err:
        export_run(run, ExportOptions(merged=True, onnx=True))
    assert err.value.kind == "memory"
    assert list((run / "export").iterdir()) == []


def test_missing_adapter_is_a_clear_error(tiny_text_base, tmp_path):
    import shutil

    from engine.export.checks import ExportError
    from engine.workspace import Workspace

    run = make_run(Workspace.open(tmp_path / "ws"), tiny_text_base)
    shutil.rmtree(run / "adapter")
    with pytest.raises(ExportError, match="has no trained adapter yet .*adapter/adapter_config.json"):
        export_run(run, ExportOptions())


def test_parameter_count_from_safetensors_headers(tiny_text_base):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_text_base)
    assert checks.count_parameters(tiny_text_base) == sum(p.numel() for p in model.parameters())
