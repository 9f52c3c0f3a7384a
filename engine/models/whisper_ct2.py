"""Convert CTranslate2 Whisper weights (``WhisperSpec``) into a transformers checkpoint.

The inverse of ``ctranslate2.converters.transformers.WhisperLoader``. CT2 names layers by
role, not by HF module, so the map below is the whole contract:

====================================================  ==========================================
CT2 variable                                          transformers parameter
====================================================  ==========================================
encoder/conv{1,2}/{weight,bias}                        model.encoder.conv{1,2}.*
encoder/position_encodings/encodings                   model.encoder.embed_positions.weight
encoder|decoder/layer_norm/{gamma,beta}                model.{encoder,decoder}.layer_norm.{weight,bias}
*/layer_N/self_attention/layer_norm                    layers.N.self_attn_layer_norm
*/layer_N/self_attention/linear_0  (3*d, fused qkv)    layers.N.self_attn.{q,k,v}_proj (k: no bias)
*/layer_N/self_attention/linear_1                      layers.N.self_attn.out_proj
decoder/layer_N/attention/layer_norm                   layers.N.encoder_attn_layer_norm
decoder/layer_N/attention/linear_0                     layers.N.encoder_attn.q_proj
decoder/layer_N/attention/linear_1 (2*d, fused kv)     layers.N.encoder_attn.{k,v}_proj (k: no bias)
decoder/layer_N/attention/linear_2                     layers.N.encoder_attn.out_proj
*/layer_N/ffn/layer_norm                               layers.N.final_layer_norm
*/layer_N/ffn/linear_{0,1}                             layers.N.fc{1,2}
decoder/embeddings/weight                              model.decoder.embed_tokens.weight (= proj_out)
decoder/position_encodings/encodings                   model.decoder.embed_positions.weight
====================================================  ==========================================

float16 -> float32 is exact, so the converted model computes with the very weights CT2 uses.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from engine.errors import ModelError
from engine.models.ct2 import CT2Model, read_ct2
from engine.progress import Progress, report

# English-only Whisper token ids (vocabulary of 51864, see the facts).
EOT, SOT, PREV_SOT, NO_TIMESTAMPS = 50256, 50257, 50360, 50362
N_TIMESTAMPS = 1501  # <|0.00|> .. <|30.00|>


def _count_layers(ct2: CT2Model, side: str) -> int:
    pat = re.compile(rf"^{side}/layer_(\d+)/")
    ids = {int(m.group(1)) for n in ct2.variables if (m := pat.match(n))}
    if not ids or ids != set(range(len(ids))):
        raise ModelError(f"CTranslate2 Whisper model: unexpected {side} layers {sorted(ids)}")
    return len(ids)


def _state_dict(ct2: CT2Model, n_enc: int, n_dec: int, d: int) -> dict[str, np.ndarray]:
    sd: dict[str, np.ndarray] = {}
    used: set[str] = set()

    def take(name: str) -> np.ndarray:
        used.add(ct2.aliases.get(name, name))
        return ct2.get(name).astype(np.float32)

    def norm(src: str, dst: str) -> None:
        sd[f"{dst}.weight"], sd[f"{dst}.bias"] = take(f"{src}/gamma"), take(f"{src}/beta")

    def linear(src: str, dst: str) -> None:
        sd[f"{dst}.weight"], sd[f"{dst}.bias"] = take(f"{src}/weight"), take(f"{src}/bias")

    def split(src: str, dsts: list[str]) -> None:
        w, b = take(f"{src}/weight"), take(f"{src}/bias")
        if w.shape[0] != d * len(dsts):
            raise ModelError(f"CT2 {src}: expected {d * len(dsts)} rows, got {w.shape[0]}")
        for i, dst in enumerate(dsts):
            sd[f"{dst}.weight"] = w[i * d:(i + 1) * d]
            if dst.endswith("k_proj"):
                # HF Whisper's k_proj has no bias; CT2 stores zeros there (softmax is shift-
                # invariant per query, so a k bias could never matter). Refuse anything else.
                if np.abs(b[i * d:(i + 1) * d]).max() > 1e-6:
                    raise ModelError(f"CT2 {src}: non-zero key bias cannot map onto HF k_proj")
            else:
                sd[f"{dst}.bias"] = b[i * d:(i + 1) * d]

    for side, n in (("encoder", n_enc), ("decoder", n_dec)):
        hf = f"model.{side}"
        if side == "encoder":
            linear("encoder/conv1", f"{hf}.conv1")
            linear("encoder/conv2", f"{hf}.conv2")
        else:
            sd[f"{hf}.embed_tokens.weight"] = take("decoder/embeddings/weight")
        sd[f"{hf}.embed_positions.weight"] = take(f"{side}/position_encodings/encodings")
        norm(f"{side}/layer_norm", f"{hf}.layer_norm")
        for i in range(n):
            src, dst = f"{side}/layer_{i}", f"{hf}.layers.{i}"
            norm(f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm")
            split(f"{src}/self_attention/linear_0", [f"{dst}.self_attn.{p}_proj" for p in "qkv"])
            linear(f"{src}/self_attention/linear_1", f"{dst}.self_attn.out_proj")
            if side == "decoder":
                norm(f"{src}/attention/layer_norm", f"{dst}.encoder_attn_layer_norm")
                linear(f"{src}/attention/linear_0", f"{dst}.encoder_attn.q_proj")
                split(f"{src}/attention/linear_1", [f"{dst}.encoder_attn.{p}_proj" for p in "kv"])
                linear(f"{src}/attention/linear_2", f"{dst}.encoder_attn.out_proj")
            norm(f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm")
            linear(f"{src}/ffn/linear_0", f"{dst}.fc1")
            linear(f"{src}/ffn/linear_1", f"{dst}.fc2")
    # Every weight tensor must have been mapped; leftovers would mean a spec we misread.
    left = [n for n, v in ct2.variables.items() if v.ndim > 0 and n not in used]
    if left:
        raise ModelError(f"CTranslate2 Whisper variables not mapped: {left[:5]}")
    return sd


def _check_spec(ct2: CT2Model) -> None:
    if ct2.spec != "WhisperSpec":
        raise ModelError(f"Expected a CTranslate2 WhisperSpec model, got '{ct2.spec}'.")
    # The HF module is pre-norm, unscaled embeddings, GELU: refuse a CT2 model that differs.
    if not ct2.scalar("decoder/pre_norm") or ct2.scalar("decoder/scale_embeddings"):
        raise ModelError("CTranslate2 Whisper model has an unexpected decoder layout.")


def _tokenizer(tokenizer_json: Path):
    from tokenizers import AddedToken  # noqa: PLC0415 - as transformers: only needed to convert
    from transformers import WhisperTokenizer  # noqa: PLC0415 - seconds to import, only needed to convert

    tj = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    specials = [a["content"] for a in tj["added_tokens"] if a.get("special")]
    # Registering the specials matters: WhisperTokenizer finds where timestamps begin as
    # all_special_ids[-1] + 1, and skip_special_tokens strips the task prefix.
    tok = WhisperTokenizer(tokenizer_file=str(tokenizer_json), pad_token="<|endoftext|>",
                           extra_special_tokens=specials)
    # Timestamp tokens are part of the model's vocabulary but missing from CT2's tokenizer.json;
    # the Hub tokenizers carry them as non-special added tokens, and so do we.
    tok.add_tokens([AddedToken(f"<|{i * 0.02:.2f}|>", special=False, normalized=False,
                               lstrip=False, rstrip=False) for i in range(N_TIMESTAMPS)])
    if tok.convert_tokens_to_ids("<|startoftranscript|>") != SOT or \
            tok.convert_tokens_to_ids("<|notimestamps|>") != NO_TIMESTAMPS:
        raise ModelError("CTranslate2 tokenizer.json does not have English-only Whisper token ids.")
    return tok


def convert_whisper_ct2(ct2_dir: str | Path, out_dir: str | Path, progress: Progress | None = None) -> None:
    """Write a transformers Whisper checkpoint + processor converted from ``ct2_dir``
    (holding ``model.bin``, ``config.json``, ``tokenizer.json``) into ``out_dir``."""
    import torch  # noqa: PLC0415 - seconds to import; the UI imports this module
    from transformers import (  # noqa: PLC0415 - seconds to import; the UI imports this module
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
    )

    ct2_dir, out_dir = Path(ct2_dir), Path(out_dir)
    report(progress, 0.05, "reading CTranslate2 weights")
    ct2 = read_ct2(ct2_dir / "model.bin")
    _check_spec(ct2)
    ct2_cfg = json.loads((ct2_dir / "config.json").read_text(encoding="utf-8"))

    conv1 = ct2.get("encoder/conv1/weight")
    d, n_mels = int(conv1.shape[0]), int(conv1.shape[1])
    vocab = int(ct2.get("decoder/embeddings/weight").shape[0])
    if vocab != 51864:
        raise ModelError(f"Expected an English-only Whisper (vocabulary 51864), got {vocab}.")
    n_enc, n_dec = _count_layers(ct2, "encoder"), _count_layers(ct2, "decoder")
    suppress = [int(x) for x in ct2_cfg.get("suppress_ids", [])]
    begin_suppress = [int(x) for x in ct2_cfg.get("suppress_ids_begin", [220, EOT])]
    config = WhisperConfig(
        vocab_size=vocab, num_mel_bins=n_mels, d_model=d,
        encoder_layers=n_enc, decoder_layers=n_dec,
        encoder_attention_heads=int(ct2.scalar("encoder/num_heads")),
        decoder_attention_heads=int(ct2.scalar("decoder/num_heads")),
        encoder_ffn_dim=int(ct2.get("encoder/layer_0/ffn/linear_0/weight").shape[0]),
        decoder_ffn_dim=int(ct2.get("decoder/layer_0/ffn/linear_0/weight").shape[0]),
        max_source_positions=int(ct2.get("encoder/position_encodings/encodings").shape[0]),
        max_target_positions=int(ct2.get("decoder/position_encodings/encodings").shape[0]),
        decoder_start_token_id=SOT, bos_token_id=SOT, eos_token_id=EOT, pad_token_id=EOT,
        suppress_tokens=suppress, begin_suppress_tokens=begin_suppress,
        tie_word_embeddings=True, architectures=["WhisperForConditionalGeneration"],
    )

    report(progress, 0.3, "mapping weights")
    sd = _state_dict(ct2, n_enc, n_dec, d)
    model = WhisperForConditionalGeneration(config).to(torch.float32).eval()
    expected = set(model.state_dict())
    missing = expected - set(sd) - {"proj_out.weight"}  # proj_out is tied to embed_tokens
    extra = set(sd) - expected
    if missing or extra:
        raise ModelError(f"Whisper conversion mismatch: missing {sorted(missing)[:5]}, extra {sorted(extra)[:5]}")
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()}
    for k, t in tensors.items():
        if tuple(t.shape) != tuple(model.state_dict()[k].shape):
            raise ModelError(f"Whisper conversion: shape of {k} is {tuple(t.shape)}, "
                             f"expected {tuple(model.state_dict()[k].shape)}")
    model.load_state_dict(tensors, strict=False)
    if model.proj_out.weight.data_ptr() != model.model.decoder.embed_tokens.weight.data_ptr():
        model.tie_weights()

    # English-only generation: <|startoftranscript|><|notimestamps|> then text until EOT;
    # no language/task tokens (no lang_to_id, so generate() never runs language detection).
    model.generation_config = GenerationConfig(
        decoder_start_token_id=SOT, bos_token_id=SOT, eos_token_id=EOT, pad_token_id=EOT,
        no_timestamps_token_id=NO_TIMESTAMPS, prev_sot_token_id=PREV_SOT,
        is_multilingual=False, return_timestamps=False,
        suppress_tokens=suppress, begin_suppress_tokens=begin_suppress,
        alignment_heads=ct2_cfg.get("alignment_heads"),
        max_initial_timestamp_index=50, max_length=config.max_target_positions,
    )

    report(progress, 0.6, "building the processor")
    processor = WhisperProcessor(
        feature_extractor=WhisperFeatureExtractor(feature_size=n_mels),
        tokenizer=_tokenizer(ct2_dir / "tokenizer.json"),
    )
    report(progress, 0.8, "saving safetensors")
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    report(progress, 1.0, "converted")
