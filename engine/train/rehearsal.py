"""Rehearsal: a GPU recipe at its real shapes, with random weights, on whatever machine is here.

The real weights are on the Hub (gated, and out of reach offline), but a model's shapes are a
few published facts (engine.models.architectures). A rehearsal builds the recipe's architecture
from them with random weights, straight in the recipe's dtype and quantization, applies the
recipe's LoRA targets and gradient checkpointing, and trains a few optimizer steps on real rows
of a shipped dataset through the very code a real run uses (engine.train.hf: datasets,
collators, the Trainer, checkpoints, the adapter). It then merges the adapter and generates a
few tokens greedily, and records in ``rehearsal.json`` what a user needs before renting a GPU:
trainable parameters, peak memory split as the planner splits it (engine.train.memory), and
seconds per step. The run folder is an ordinary one; the spec file marks it as a rehearsal.

What differs from a real run, on purpose: the tokenizer is a stand-in (the embedded SmolLM2 or
Whisper tiny.en one; ids beyond a smaller vocabulary are folded into it), gradient accumulation is
1 (memory peaks within one micro-batch), there is no evaluation, and ``layers`` may cut the
depth (full width and vocabulary stay).
"""

from __future__ import annotations

import gc
import time
from typing import Any

import numpy as np
import torch

from engine import atomic
from engine.config import RunConfig
from engine.models import architectures, loader
from engine.models.availability import is_nemo_model
from engine.nemo.model import create_from_config
from engine.nemo.salm_config import salm_from_config
from engine.nemo.transcribe import generate_texts
from engine.preflight import model_kind
from engine.runs import JobContext, Run
from engine.train import hf, nemo
from engine.train.memory import MemoryCallback, PeakSampler, model_bytes, optimizer_bytes, release_freed_memory
from engine.train.rehearsal_spec import PROMPT, STAND_INS


def run(ctx: JobContext) -> None:
    """The "train" job of a rehearsal run (engine.train.job sends it here)."""
    spec = ctx.run.rehearsal()
    cfg = ctx.run.config()
    if is_nemo_model(cfg.model.name):
        _run_nemo(ctx, spec, cfg)
        return
    device = hf.pick_device(cfg)
    sampler = PeakSampler(device).start()
    baseline = sampler.now()
    built: dict[str, Any] = {}

    def load(cfg: RunConfig, kind: str, device: str):
        f = architectures.with_layers(architectures.facts(cfg.model.name), spec.get("layers"))
        dtype = loader.pick_dtype(cfg.model.dtype, device)
        ctx.log(f"rehearsal: {architectures.summary(f)}, random weights in {str(dtype).replace('torch.', '')}, "
                f"quantization {cfg.model.quantization}; tokenizer: {STAND_INS[kind]} (stand-in)")
        t0 = time.perf_counter()
        model = architectures.build_random(f, dtype=dtype, quant=cfg.model.quantization, device=device,
                                           progress=lambda x, m: ctx.progress(0.02 + 0.06 * x, m))
        built["build_s"] = round(time.perf_counter() - t0, 1)
        gc.collect()
        release_freed_memory()  # the build's freed temporaries are not training memory
        sampler.reset()
        built["weights_loaded"] = model_bytes(model)[0]
        stand_in = loader.model_path(STAND_INS[kind])
        proc = _processor(kind, stand_in)
        built["vocab"] = f["vocab_size"] if len(proc if kind == "text" else proc.tokenizer) > f["vocab_size"] else None
        return model, proc, f"random weights ({architectures.path_of(cfg.model.name).name})"

    memory = MemoryCallback(sampler, baseline)
    result: dict[str, Any] = {}

    def after(model, proc, trainer) -> None:
        ctx.progress(0.99, "merging the adapter and generating")
        mem = memory.result()
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        t0 = time.perf_counter()
        merged = model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
        tokens = _generate(merged, proc, model_kind(cfg.model.name) or "text", device, built.get("vocab"))
        result.update(
            trainable_params=trainable, total_params=total, memory=mem, steps=trainer.state.global_step,
            build_s=built.get("build_s"), merge_and_generate_s=round(time.perf_counter() - t0, 1),
            generated_tokens=tokens, merged=merged is not model, device=device, final_loss=_last_loss(ctx.run))
        sampler.stop()

    def fold(batch: dict) -> dict:
        """The stand-in tokenizer's ids folded into a smaller vocabulary (Llama-2's 32,000 is
        smaller than SmolLM2's 49,152): same lengths, same memory, ids the embedding has."""
        vocab = built.get("vocab")
        if vocab:
            for key in ("input_ids", "labels", "decoder_input_ids"):
                t = batch.get(key)
                if isinstance(t, torch.Tensor):
                    batch[key] = torch.where(t >= 0, t % vocab, t)
        return batch

    try:
        hf.train(ctx, load=load, callbacks=[memory], after=after, batch_map=fold)
    finally:
        sampler.stop()
    _finish(ctx, spec, result)


def _finish(ctx: JobContext, spec: dict[str, Any], result: dict[str, Any]) -> None:
    atomic.write_json(ctx.run.rehearsal_path, {**spec, "result": result})
    mem = result["memory"]
    ctx.log(f"rehearsal: peak {_gib(mem['peak'])} = weights {_gib(mem['weights'])} + LoRA and optimizer "
            f"{_gib(mem['lora_and_optimizer'])} + activations {_gib(mem['activations'])}; "
            f"{mem['s_per_step']:.1f} s/step; {'merged and ' if result.get('merged') else ''}generated "
            f"{len(result['generated_tokens'])} tokens")


def _run_nemo(ctx: JobContext, spec: dict[str, Any], cfg: RunConfig) -> None:
    """Canary-Qwen's SALM at its real shapes: the Qwen3 LLM from its facts and the FastConformer
    encoder from Canary's (both cut to ``layers``), random weights, saved once as a SALM folder in
    the run and trained by the NeMo backend itself (engine.train.nemo) on speech rows."""

    f = architectures.facts(cfg.model.name)
    layers = spec.get("layers")
    llm = architectures.with_layers(architectures.facts(f["llm"]), layers)
    enc = dict(f["encoder"], n_layers=min(f["encoder"]["n_layers"], layers or f["encoder"]["n_layers"]))
    root = ctx.run.path / "rehearsal-model"
    ctx.log(f"rehearsal: SALM = {architectures.summary(llm)} + FastConformer ({enc['n_layers']} of "
            f"{f['encoder']['n_layers']} layers, d_model {enc['d_model']}), random weights; tokenizer: "
            f"{STAND_INS['text']} (stand-in)")
    ctx.progress(0.02, "building the SALM at its real shapes")
    architectures.hf_config(llm).save_pretrained(root / "llm")
    _processor("text", loader.model_path(STAND_INS["text"])).save_pretrained(root / "llm")
    t0 = time.perf_counter()
    model_dir = create_from_config(salm_from_config(
        str(root / "llm"), llm_hidden=llm["hidden_size"], d_model=enc["d_model"], n_layers=enc["n_layers"],
        n_heads=enc["n_heads"], features=enc["features"], subsampling_factor=enc["subsampling_factor"],
        ff_expansion_factor=enc["ff_expansion_factor"], subsampling_conv_channels=enc["subsampling_conv_channels"],
        conv_kernel_size=enc["conv_kernel_size"]), root / "salm")
    build_s = round(time.perf_counter() - t0, 1)
    gc.collect()
    sampler = PeakSampler(hf.pick_device(cfg)).start()  # from here: what training the saved SALM costs
    baseline = sampler.now()
    result: dict[str, Any] = {}

    def after(model, trainer) -> None:
        frozen, trained = model_bytes(model)
        split = {"weights": frozen, "lora_and_optimizer": 2 * trained + optimizer_bytes(trainer.optimizers[0])}
        peak = sampler.peak() - baseline
        steps = [r for r in ctx.run.metrics() if r.get("loss") is not None]
        t1 = time.perf_counter()
        text = generate_texts(model, [np.zeros(16000, dtype=np.float32)], max_new_tokens=8)
        result.update(
            trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
            total_params=sum(p.numel() for p in model.parameters()), steps=trainer.global_step, build_s=build_s,
            memory={**split, "activations": max(0, peak - sum(split.values())), "peak": peak,
                    "measured_by": "RSS sampled every 5 ms" if not sampler.cuda else "torch.cuda.max_memory_allocated",
                    "s_per_step": _pace(steps)},
            # NeMo keeps the LoRA beside the LLM (its export merges): generation proves the trained model runs
            merge_and_generate_s=round(time.perf_counter() - t1, 1), generated_tokens=text[0].split()[:8], merged=False,
            device=str(model.device), final_loss=steps[-1]["loss"] if steps else None)

    try:
        # the load's own transient (checkpoint and model side by side) is not training memory
        nemo.train(ctx, model_dir=str(model_dir), loaded=lambda model: (release_freed_memory(), sampler.reset()),
                   after=after)
    finally:
        sampler.stop()
    _finish(ctx, spec, result)


def _pace(rows: list[dict[str, Any]]) -> float | None:
    """Seconds per step from the metrics' elapsed times (the first step, with its warm-up, left out)."""
    if len(rows) < 2:
        return rows[0].get("elapsed_s") if rows else None
    return (rows[-1]["elapsed_s"] - rows[0]["elapsed_s"]) / (rows[-1]["step"] - rows[0]["step"])


def _processor(kind: str, folder: str):
    from transformers import AutoProcessor, AutoTokenizer  # noqa: PLC0415 - as engine.models.loader

    if kind == "speech":
        return AutoProcessor.from_pretrained(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


@torch.no_grad()
def _generate(model, proc, kind: str, device: str, vocab: int | None, n: int = 8) -> list[int]:
    """A few greedy tokens from the merged model: the rehearsal's proof that it still runs."""
    model.eval()
    model.config.use_cache = True
    if kind == "speech":
        feats = proc.feature_extractor(np.zeros(16000, dtype=np.float32), sampling_rate=16000,
                                       return_tensors="pt").input_features.to(device, model.dtype)
        out = model.generate(input_features=feats, max_new_tokens=n, do_sample=False)
        return out[0].tolist()
    enc = proc(PROMPT, return_tensors="pt").to(device)
    if vocab:
        enc["input_ids"] = enc["input_ids"] % vocab
    out = model.generate(**enc, max_new_tokens=n, do_sample=False, min_new_tokens=n,
                         pad_token_id=proc.pad_token_id)
    return out[0, enc["input_ids"].shape[1]:].tolist()


def _last_loss(run: Run) -> float | None:
    rows = [r for r in run.metrics() if r.get("loss") is not None]
    return rows[-1]["loss"] if rows else None


def _gib(n: int | float) -> str:
    return f"{n / 2**30:.2f} GiB"
