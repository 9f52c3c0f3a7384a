"""The NeMo training backend: LoRA on a SALM's LLM, driven through NeMo's Python API.

Chosen by engine.train.job for NeMo models: config.yaml in, metrics/checkpoints/adapter out,
graceful stop, resume from the newest complete checkpoint. The pieces are NeMo's own: ``SALM``
(loaded with ``from_pretrained``), its ``DataModule`` + ``SALMDataset`` reading a Lhotse
``lhotse_as_conversation`` input_cfg over NeMo manifests we write from the workbench dataset,
and a Lightning ``Trainer``. Not examples/speechlm2/salm_train.py: it pins a CUDA device at
import and wants torchrun.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import save_file

from engine.atomic import atomic_dir, write_json
from engine.data.datasets import open_dataset
from engine.errors import DataError
from engine.models.availability import is_nemo_model, require_runnable
from engine.models.loader import bf16_supported, pick_device
from engine.nemo import manifests
from engine.nemo import model as salm_model
from engine.nemo.salm_config import training_cfg
from engine.nemo.transcribe import MEDTUNE_FILE, TRAINABLE_FILE, generate_texts
from engine.progress import scaled
from engine.runs import JobContext, JobStopped
from engine.train.resume import resume_point
from engine.train.speech import wer_and_recall


def handles(model_name: str) -> bool:
    """NeMo models (Canary-Qwen, a local SALM folder) train here (engine.train.job's protocol)."""
    return is_nemo_model(model_name)


def plan_steps(n_train: int, train: Any) -> tuple[int, int]:
    """(optimizer steps per epoch, total optimizer steps) for ``n_train`` examples."""
    batches = max(1, math.ceil(n_train / train.batch_size))
    per_epoch = max(1, math.ceil(batches / train.grad_accum))
    total = train.max_steps or max(1, math.ceil(per_epoch * train.epochs))
    return per_epoch, total


def precision(cfg: Any, device: str) -> str:
    """Lightning precision: bf16-true on a GPU (Canary-Qwen is trained so), fp32 on CPU."""
    return "bf16-true" if cfg.train.precision in ("auto", "bf16") and bf16_supported(device) else "32-true"


def _wer_evaluator(rows: list[dict], terms: list[str], prompt: str, max_new_tokens: int, batch_size: int):
    audios, refs = [r["audio"] for r in rows], [r["text"] for r in rows]

    def evaluate(model) -> dict:
        hyps: list[str] = []
        for i in range(0, len(audios), batch_size):
            hyps += generate_texts(model, audios[i: i + batch_size], prompt=prompt, max_new_tokens=max_new_tokens)
        w, rec = wer_and_recall(refs, hyps, terms)
        out = {"wer": w}
        if rec is not None:
            out["term_recall"] = rec
        return out

    return evaluate


def run(ctx: JobContext) -> None:
    """Train (or resume) the NeMo run; raises JobStopped on a graceful stop."""
    train(ctx)


def train(ctx: JobContext, *, model_dir: str | None = None, loaded: Callable[..., None] | None = None,
          after: Callable[..., None] | None = None) -> None:
    """:func:`run`, with what a rehearsal (engine.train.rehearsal) swaps: ``model_dir`` = the SALM
    to start from instead of ``model.name``, ``loaded(model)`` once it is loaded with its LoRA,
    and ``after(model, trainer)`` once the adapter is saved."""
    run, cfg, log, progress = ctx.run, ctx.run.config(), ctx.log, ctx.progress
    source = model_dir or cfg.model.name
    require_runnable(source, cfg.train.device)

    # NeMo (with lightning, omegaconf) is an optional extra: imported once the machine is known to run it
    from lightning.pytorch import Trainer, seed_everything  # noqa: PLC0415 - optional extra (nemo); engine.train.job imports this module for every run
    from omegaconf import OmegaConf, open_dict  # noqa: PLC0415 - optional extra (comes with NeMo)

    from engine.train.nemo_callbacks import CKPT_FILE, RunFolderCallback  # noqa: PLC0415 - imports lightning (the nemo extra)

    rp = resume_point(run, bool(ctx.params.get("resume")), log)
    ckpt = rp.checkpoint

    progress(0.0, "loading data")
    ds = open_dataset(cfg.data.dataset, ctx.workspace, progress=scaled(progress, 0.0, 0.02))
    if ds.kind != "speech":
        raise DataError(f"{cfg.model.name} is a speech model but dataset {ds.name} holds {ds.kind} examples",
                        file=str(ds.path), field="kind", hint="Pick a speech dataset (e.g. med-dictation).")
    has_eval = bool(cfg.data.eval_split) and cfg.data.eval_split in ds.split_names()
    splits = [cfg.data.train_split] + ([cfg.data.eval_split] if has_eval else [])
    mf = manifests.dataset_manifests(ds, splits, run.path / "nemo",
                                     {cfg.data.train_split: cfg.data.max_train_samples,
                                      cfg.data.eval_split: cfg.data.max_eval_samples})
    n_train = sum(1 for _ in open(mf[cfg.data.train_split], encoding="utf-8"))
    eval_rows = ds.load_split(cfg.data.eval_split)[: cfg.data.max_eval_samples or None] if has_eval else []
    per_epoch, max_steps = plan_steps(n_train, cfg.train)

    progress(0.02, f"loading {cfg.model.name}")
    device = pick_device(cfg.train.device)
    prec = precision(cfg, device)
    seed_everything(cfg.train.seed, workers=True, verbose=False)
    # loaded in fp32 on the CPU; Lightning moves it to the device and precision below
    model = salm_model.load_salm(source, device="cpu", dtype="float32")
    tcfg = training_cfg(OmegaConf.to_container(model.cfg, resolve=True), cfg, max_steps)
    with open_dict(model.cfg):
        for k in ("freeze_params", "prevent_freeze_params", "optimizer", "lr_scheduler"):
            model.cfg[k] = tcfg[k]
    torch.manual_seed(cfg.train.seed)  # LoRA init is seeded: a resumed run rebuilds the same layout
    salm_model.apply_lora(model, tcfg["lora"])
    trainable = salm_model.set_trainable(model)
    if loaded is not None:
        loaded(model)
    total = sum(p.numel() for p in model.parameters())
    model.strict_loading = False  # checkpoints hold only the trainable weights (see callbacks)
    prompt_format = model.cfg.prompt_format
    log(f"NeMo SALM on {device}, precision {prec}; {n_train} train / {len(eval_rows)} eval clips; "
        f"{max_steps} steps; trainable params {trainable:,} of {total:,} ({100 * trainable / max(1, total):.2f}%)")

    from nemo.collections.speechlm2 import DataModule, SALMDataset  # noqa: PLC0415 - optional extra, ~20 s to import

    data_cfg = OmegaConf.create(manifests.data_config(
        mf[cfg.data.train_split], mf.get(cfg.data.eval_split) if has_eval else None,
        prompt_format=prompt_format, batch_size=cfg.train.batch_size, seed=cfg.train.seed,
        token_equivalent_duration=float(model.token_equivalent_duration)))
    datamodule = DataModule(data_cfg, tokenizer=model.tokenizer, dataset=SALMDataset(tokenizer=model.tokenizer))

    evaluate_wer = None
    if eval_rows and cfg.eval.wer_samples:
        evaluate_wer = _wer_evaluator(eval_rows[: cfg.eval.wer_samples], ds.terms(), manifests.DEFAULT_PROMPT,
                                      cfg.eval.max_new_tokens, cfg.train.batch_size)
    cb = RunFolderCallback(
        run, rp.clock(), max_steps=max_steps, steps_per_epoch=per_epoch,
        logging_steps=cfg.train.logging_steps, save_steps=cfg.train.save_steps,
        save_total_limit=cfg.train.save_total_limit, batch_size=cfg.train.batch_size,
        progress=scaled(progress, 0.05, 0.97), stop_requested=ctx.should_stop, evaluate_wer=evaluate_wer)
    # Validation cadence in optimizer steps: within an epoch via val_check_interval (counted in
    # batches), or every N whole epochs when eval_steps spans more than one epoch.
    eval_every = cfg.train.eval_steps or max_steps
    every_n_epochs = max(1, eval_every // per_epoch) if eval_every >= per_epoch else None
    trainer = Trainer(
        accelerator="gpu" if device == "cuda" else "cpu", devices=1, precision=prec, max_steps=max_steps,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        use_distributed_sampler=False,  # Lhotse samples; NeMo's own recipe sets this too
        limit_train_batches=per_epoch * cfg.train.grad_accum,  # Lhotse loaders are endless: an epoch = one pass
        val_check_interval=eval_every * cfg.train.grad_accum if has_eval and not every_n_epochs else None,
        check_val_every_n_epoch=every_n_epochs if has_eval else 1,
        limit_val_batches=(0 if not has_eval else 1.0), num_sanity_val_steps=0,
        accumulate_grad_batches=cfg.train.grad_accum,
        gradient_clip_val=cfg.train.max_grad_norm or None, callbacks=[cb], deterministic=False,
    )
    if has_eval and every_n_epochs and eval_every % per_epoch:
        log(f"note: evaluating every {every_n_epochs * per_epoch} steps ({every_n_epochs} epoch(s)), the "
            f"nearest whole-epoch cadence to eval_steps={eval_every}")
    if evaluate_wer is not None and cfg.eval.eval_at_start and ckpt is None:
        log("evaluating the base model (step 0)")
        trainer.validate(model, datamodule=datamodule, verbose=False)
    log(f"training{f' from {ckpt.name}' if ckpt else ''}")
    trainer.fit(model, datamodule=datamodule, ckpt_path=str(ckpt / CKPT_FILE) if ckpt else None)
    step = trainer.global_step
    if cb.stopped_at is not None or ctx.should_stop():
        cb.save(trainer, step)
        log(f"stopped at step {step}; checkpoint saved")
        raise JobStopped()
    last_eval = max((r["step"] for r in run.metrics() if "eval_loss" in r), default=-1)
    if has_eval and last_eval != step:
        trainer.validate(model, datamodule=datamodule, verbose=False)
    cb.save(trainer, step)  # the final resume point too

    progress(0.98, "saving adapter")
    save_adapter(model, run.adapter_dir, {
        "backend": "nemo", "base_model": cfg.model.name, "kind": "speech", "steps": step,
        "lora": tcfg["lora"], "prompt": manifests.DEFAULT_PROMPT, "prompt_format": prompt_format,
        "train_encoder": bool(cfg.lora.encoder_lora)})
    log(f"done: {step} steps; saved {run.adapter_dir.name}/")
    if after is not None:
        after(model, trainer)


def save_adapter(model, target: Path, meta: dict) -> Path:
    """adapter/: peft's LoRA of the LLM (adapter_config.json + adapter_model.safetensors,
    loadable on the bare LLM with peft), every trained SALM weight (LoRA + projection
    [+ encoder]) as trainable.safetensors, and medtune.json."""
    with atomic_dir(target, overwrite=True) as tmp:
        model.llm.save_pretrained(tmp)
        save_file(salm_model.trainable_state(model), str(Path(tmp) / TRAINABLE_FILE))
        write_json(Path(tmp) / MEDTUNE_FILE, meta)
    return target
