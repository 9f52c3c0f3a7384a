"""The "train" job: read the run's config, train with the transformers Trainer, save the adapter.

Runs inside ``python -m engine.jobs RUN_DIR --kind train`` (see engine.jobs for the entry
point contract). The same function also runs under ``accelerate launch``/torchrun for
multi-GPU, because all the distributed work is the Trainer's.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from engine import jobs
from engine.atomic import atomic_dir, write_json
from engine.config import RunConfig, model_kind
from engine.data.subsample import evenly_spaced, subsample
from engine.errors import DataError
from engine.progress import Progress, scaled
from engine.runs import Run
from engine.workspace import Workspace


def _log(msg: str) -> None:
    print(f"[medtune] {time.strftime('%H:%M:%S')} {msg}", flush=True)


def _open_data(cfg: RunConfig, workspace: Workspace, progress: Progress | None):
    from engine.data.datasets import open_dataset

    return open_dataset(cfg.data.dataset, workspace, progress=progress)


def run(run: Run, params: dict[str, Any], progress: Progress) -> None:
    """Train (or resume) the run in ``run.path``; raises JobStopped on a graceful stop."""
    from engine.nemo.availability import is_nemo_model

    if is_nemo_model(run.config().model.name):  # NeMo SALM (Canary-Qwen): its own Lightning loop
        from engine.nemo.train import run as nemo_run

        return nemo_run(run, params, progress)
    jobs.handles_stop()  # StopCallback turns SIGTERM into "finish step, checkpoint, stop"
    outer = progress

    def progress(fraction, message):  # noqa: F811 - before the loop, a stop ends the job at once
        if jobs.stop_requested() and not in_loop[0]:
            raise jobs.JobStopped()
        outer(fraction, message)

    in_loop = [False]
    from transformers import set_seed

    from engine.train.model import apply_lora, count_params, load_base, pick_device, precision_flags
    from engine.train.resume import resume_point

    cfg = run.config()
    workspace = Workspace(run.path.parent.parent)
    device = pick_device(cfg)
    flags = precision_flags(cfg, device)

    rp = resume_point(run, bool(params.get("resume")), _log)
    ckpt = rp.checkpoint

    progress(0.0, "loading data")
    ds = _open_data(cfg, workspace, scaled(progress, 0.0, 0.02))
    kind = model_kind(cfg.model.name) or "text"
    if ds.kind != kind:
        raise DataError(f"{cfg.model.name} is a {kind} model but dataset {ds.name} holds {ds.kind} examples",
                        file=str(ds.path), field="kind", hint=f"Pick a {kind} dataset.")
    # term-balanced when the dataset has a term list (engine.data.subsample)
    train_rows = subsample(ds.load_split(cfg.data.train_split), cfg.data.max_train_samples, ds.terms())
    if not train_rows:
        raise DataError(f"split '{cfg.data.train_split}' is empty", file=str(ds.path))
    eval_rows: list[dict] = []
    if cfg.data.eval_split and cfg.data.eval_split in ds.split_names():
        eval_rows = evenly_spaced(ds.load_split(cfg.data.eval_split), cfg.data.max_eval_samples)

    progress(0.02, f"loading {cfg.model.name}")
    _log(f"device {device}, precision {'bf16' if flags['bf16'] else 'fp16' if flags['fp16'] else 'fp32'}, "
         f"quantization {cfg.model.quantization}")
    model, proc, path = load_base(cfg, kind, device)
    set_seed(cfg.train.seed)  # LoRA init is seeded, so a resumed run rebuilds the same layout
    from engine.train.collators import Counter, SpeechCollator, TextCollator

    counter = Counter()
    callbacks: list[Any] = []
    split_file = str(ds.path / f"{cfg.data.train_split}.jsonl")
    eval_file = str(ds.path / f"{cfg.data.eval_split}.jsonl")
    if kind == "speech":
        from engine.train import speech

        prefix = speech.prompt_ids(proc, model)
        cache = None
        if not cfg.lora.encoder_lora and not cfg.lora.full_finetune:
            cache_dir = workspace.root / "cache" / "encoder" / speech._model_key(path, cfg.model.quantization)
            audios = [r["audio"] for r in train_rows + eval_rows]
            _log(f"encoder cache: {len(set(audios))} clips in {cache_dir}")
            t0 = time.time()
            cache = speech.build_encoder_cache(model, proc, audios, cache_dir, scaled(progress, 0.02, 0.1))
            _log(f"encoder cache ready in {time.time() - t0:.1f}s")
        model = apply_lora(cfg, model, kind)
        train_ds = speech.build_speech_dataset(proc, prefix, train_rows, cfg.train.max_length, cache, split_file)
        eval_ds = speech.build_speech_dataset(proc, prefix, eval_rows, cfg.train.max_length, cache,
                                              eval_file) if eval_rows else None
        collator = SpeechCollator(proc.tokenizer.eos_token_id, proc.feature_extractor, counter)
        if eval_ds is not None and cfg.eval.wer_samples:
            n = min(cfg.eval.wer_samples, len(eval_ds))
            callbacks.append(speech.SpeechEvalCallback(
                proc, prefix, [eval_ds[i] for i in range(n)], [eval_ds[i]["text"] for i in range(n)], ds.terms(),
                cfg.eval.max_new_tokens))
        unit = "samples"
    else:
        from engine.train.text import build_text_dataset

        model = apply_lora(cfg, model, kind)
        train_ds = build_text_dataset(proc, train_rows, cfg.train.max_length, cfg.data.system_prompt, split_file)
        eval_ds = build_text_dataset(proc, eval_rows, cfg.train.max_length, cfg.data.system_prompt,
                                     eval_file) if eval_rows else None
        collator = TextCollator(proc.pad_token_id, counter)
        unit = "tokens"
    trainable, total = count_params(model)
    _log(f"{len(train_ds)} train / {len(eval_ds) if eval_ds else 0} eval examples; "
         f"trainable params {trainable:,} of {total:,} ({100 * trainable / max(1, total):.2f}%)")

    trainer = _trainer(cfg, run, model, proc, train_ds, eval_ds, collator, flags, device, kind)
    from engine.train.callbacks import MetricsCallback, ProgressCallback, StopCallback

    clock = rp.clock()
    stop_cb = StopCallback(jobs.stop_requested)
    # order matters: the speech eval callback fills eval_wer before MetricsCallback writes the row
    for cb in callbacks + [MetricsCallback(run, clock, counter, unit), stop_cb,
                           ProgressCallback(scaled(progress, 0.1, 0.99), clock)]:
        trainer.add_callback(cb)

    if eval_ds is not None and cfg.eval.eval_at_start and ckpt is None:
        _log("evaluating the base model (step 0)")
        trainer.evaluate()
    _log(f"training{f' from {ckpt.name}' if ckpt else ''}")
    in_loop[0] = True  # from here a stop request finishes the step and checkpoints (StopCallback)
    result = trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)
    if stop_cb.stopped_at is not None or jobs.stop_requested():
        _log(f"stopped at step {trainer.state.global_step}; checkpoint saved")
        raise jobs.JobStopped()
    last_eval = max((r["step"] for r in run.metrics() if "eval_loss" in r), default=-1)
    if eval_ds is not None and last_eval != trainer.state.global_step:
        trainer.evaluate()
    progress(0.99, "saving adapter")
    target = run.model_dir if cfg.lora.full_finetune else run.adapter_dir
    with atomic_dir(target, overwrite=True) as tmp:
        model.save_pretrained(tmp)
        proc.save_pretrained(tmp)
        write_json(Path(tmp) / "medtune.json", {"base_model": cfg.model.name, "base_path": path, "kind": kind,
                                                "quantization": cfg.model.quantization,
                                                "steps": trainer.state.global_step})
    _log(f"done: {trainer.state.global_step} steps, train loss {result.training_loss:.4f}; saved {target.name}/")


def _trainer(cfg: RunConfig, run: Run, model, proc, train_ds, eval_ds, collator, flags, device, kind):
    from transformers import Trainer, TrainingArguments

    t = cfg.train
    steps_per_epoch = math.ceil(len(train_ds) / (t.batch_size * t.grad_accum))
    max_steps = t.max_steps or max(1, math.ceil(steps_per_epoch * t.epochs))
    report = [] if t.report_to == "none" else [t.report_to]
    args = TrainingArguments(
        output_dir=str(run.checkpoints_dir),
        max_steps=max_steps,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.scheduler,
        warmup_steps=t.warmup_ratio,  # transformers 5: a float < 1 is a ratio of total steps
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        logging_steps=t.logging_steps,
        eval_strategy="steps" if eval_ds is not None and t.eval_steps else "no",
        eval_steps=t.eval_steps or None,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        seed=t.seed,
        data_seed=t.seed,
        bf16=flags["bf16"],
        fp16=flags["fp16"],
        use_cpu=device == "cpu",
        train_sampling_strategy="group_by_length",
        length_column_name="length",
        remove_unused_columns=False,
        prediction_loss_only=True,
        label_names=["labels"],
        dataloader_num_workers=0,
        report_to=report,
        disable_tqdm=True,
        save_only_model=False,
    )
    cls = Trainer
    if kind == "speech":
        from engine.train.speech_step import SpeechTrainer as cls
    return cls(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds, data_collator=collator,
               processing_class=proc)
