"""ONNX export of the merged model for ONNX Runtime, with a parity check against PyTorch.

Why not optimum: ``optimum`` 2.x moved its ONNX exporter into ``optimum-onnx``, whose newest
release (0.1.0) requires ``transformers<4.58`` and fails to import with transformers 5.x
(``ImportError: cannot import name 'get_parameter_dtype' from transformers.modeling_utils``).
So the graphs are exported here with ``torch.onnx.export`` on small wrappers:

- text:   ``model.onnx``          input_ids, attention_mask [batch, seq] -> logits [batch, seq, vocab]
- speech: ``encoder_model.onnx``  input_features [batch, mel, 3000] -> last_hidden_state
          ``decoder_model.onnx``  input_ids [batch, seq], encoder_hidden_states -> logits

The graphs carry no KV cache: generation re-runs the whole prefix each step (fine for short
outputs and small models; a cached decoder is future work). They are exported in float32
with the TorchScript-based exporter (``dynamo=False``): on transformers 5 models it exports in
well under a second per graph and matched PyTorch (~2e-7) on a left-padded batch, where the
dynamo exporter took ~25x longer and its graph differed (0.39) on that padded batch.
"""

from __future__ import annotations

import gc
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoModelForSpeechSeq2Seq, AutoProcessor, AutoTokenizer

from engine.errors import MissingDependency
from engine.export import verify
from engine.export.checks import ExportError
from engine.progress import Progress, report

OPSET = 18
TEXT_GRAPH = "model.onnx"
ENCODER_GRAPH = "encoder_model.onnx"
DECODER_GRAPH = "decoder_model.onnx"


def _ort():
    try:
        import onnxruntime  # noqa: PLC0415 - an optional extra, only ONNX export needs it
    except ImportError as e:
        raise MissingDependency("onnxruntime", "ONNX export", "pip install onnx onnxruntime") from e
    return onnxruntime


class _TextLogits(torch.nn.Module):
    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits


class _WhisperEncoder(torch.nn.Module):
    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.encoder = model.get_encoder()

    def forward(self, input_features: torch.Tensor) -> torch.Tensor:
        return self.encoder(input_features).last_hidden_state


class _WhisperDecoder(torch.nn.Module):
    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        # An explicit all-ones mask: without one, transformers looks for packed sequences with
        # torch.diff, which has no ONNX symbolic.
        return self.model(encoder_outputs=(encoder_hidden_states,), decoder_input_ids=input_ids,
                          decoder_attention_mask=torch.ones_like(input_ids), use_cache=False).logits


def _export(module: torch.nn.Module, args: tuple, path: Path, names_in: list[str], names_out: list[str],
            axes: dict) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about python bools in HF code are expected
        torch.onnx.export(module, args, str(path), dynamo=False, opset_version=OPSET,
                          input_names=names_in, output_names=names_out, dynamic_axes=axes,
                          do_constant_folding=True)


def _session(path: Path):
    ort = _ort()
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def onnx_text_scorer(folder: Path) -> verify.Scorer:
    sess = _session(folder / TEXT_GRAPH)

    def logits(_ctx, ids: np.ndarray) -> np.ndarray:
        return sess.run(["logits"], {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0]

    return verify.Scorer(prepare=lambda x: None, logits=logits)


def onnx_speech_scorer(folder: Path) -> verify.Scorer:
    enc = _session(folder / ENCODER_GRAPH)
    dec = _session(folder / DECODER_GRAPH)

    def prepare(features: np.ndarray) -> np.ndarray:
        return enc.run(["last_hidden_state"], {"input_features": features.astype(np.float32)})[0]

    def logits(hidden: np.ndarray, ids: np.ndarray) -> np.ndarray:
        return dec.run(["logits"], {"input_ids": ids, "encoder_hidden_states": hidden})[0]

    return verify.Scorer(prepare=prepare, logits=logits)


def export_onnx(merged_dir: Path, out_dir: Path, *, kind: str, progress: Progress | None = None) -> dict:
    """Export the merged checkpoint in ``merged_dir`` to ONNX graphs in ``out_dir`` and check parity.

    Returns the parity record (max |logit diff| vs PyTorch float32 and greedy agreement on the
    fixed inputs); raises :class:`~engine.export.checks.ExportError` when parity fails.
    """
    _ort()
    report(progress, 0.0, "Loading the merged model in float32 for ONNX")
    cls = AutoModelForSpeechSeq2Seq if kind == "speech" else AutoModelForCausalLM
    # eager attention: the SDPA path has data-dependent branches the tracer would freeze.
    model = cls.from_pretrained(merged_dir, dtype=torch.float32, attn_implementation="eager").eval()
    processor = (AutoProcessor if kind == "speech" else AutoTokenizer).from_pretrained(merged_dir)

    report(progress, 0.2, "Exporting ONNX graphs")
    if kind == "speech":
        feats = torch.zeros(1, model.config.num_mel_bins, 2 * model.config.max_source_positions)
        _export(_WhisperEncoder(model), (feats,), out_dir / ENCODER_GRAPH, ["input_features"],
                ["last_hidden_state"], {"input_features": {0: "batch"}, "last_hidden_state": {0: "batch"}})
        hidden = torch.zeros(2, model.config.max_source_positions, model.config.d_model)
        ids = torch.full((2, 3), int(model.config.decoder_start_token_id), dtype=torch.long)
        _export(_WhisperDecoder(model), (ids, hidden), out_dir / DECODER_GRAPH,
                ["input_ids", "encoder_hidden_states"], ["logits"],
                {"input_ids": {0: "batch", 1: "seq"}, "encoder_hidden_states": {0: "batch"},
                 "logits": {0: "batch", 1: "seq"}})
        graphs = [ENCODER_GRAPH, DECODER_GRAPH]
    else:
        ids = torch.tensor([[1, 2, 3, 4, 5], [1, 2, 3, 4, 5]], dtype=torch.long) % model.config.vocab_size
        # A padded example row, so the traced graph keeps the general attention-mask path.
        mask = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]], dtype=torch.long)
        _export(_TextLogits(model), (ids, mask), out_dir / TEXT_GRAPH, ["input_ids", "attention_mask"],
                ["logits"], {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                             "logits": {0: "batch", 1: "seq"}})
        graphs = [TEXT_GRAPH]
    processor.save_pretrained(out_dir)
    model.config.save_pretrained(out_dir)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(out_dir)

    report(progress, 0.6, "Checking ONNX Runtime against PyTorch on the fixed inputs")
    cases, eos, decode = verify.fixed_inputs(kind, processor, model)
    reference = verify.record(verify.scorer_for(kind, model), cases, eos)
    del model
    gc.collect()
    scorer = onnx_speech_scorer(out_dir) if kind == "speech" else onnx_text_scorer(out_dir)
    result = verify.check(reference, scorer, eos, tolerance=verify.ONNX_TOLERANCE, decode=decode)
    result.update({"graphs": graphs, "opset": OPSET, "dtype": "float32", "runtime": "onnxruntime " + _ort().__version__,
                   "kv_cache": False})
    (out_dir / "onnx_export.json").write_text(json.dumps({k: v for k, v in result.items() if k != "cases"}, indent=2))
    if not result["passed"]:
        raise ExportError(
            f"ONNX Runtime disagrees with PyTorch: max |logit diff| {result['max_abs_logit_diff']:.3g} "
            f"(tolerance {verify.ONNX_TOLERANCE}), greedy identical: {result['greedy_identical']}. "
            "The ONNX export was not written.")
    report(progress, 1.0, "ONNX parity verified")
    return result
