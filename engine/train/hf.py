"""The transformers backend of the "train" job: LoRA (peft) on a causal LM or Whisper, trained
by the transformers Trainer, the adapter saved.

Chosen by engine.train.job for every model that no other backend claims. The same code also
runs under ``accelerate launch``/torchrun for multi-GPU, because all the distributed work is
the Trainer's.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from transformers import Trainer, TrainingArguments, set_seed

from engine.atomic import atomic_dir, write_json
from engine.config import RunConfig
from engine.data.datasets import open_dataset
from engine.data.subsample import evenly_spaced, subsample
from engine.errors import DataError
from engine.preflight import model_kind
from engine.progress import scaled
from engine.runs import JobContext, JobStopped, Run
from engine.train import speech
from engine.train.callbacks import MetricsCallback, ProgressCallback, StopCallback
from engine.train.collators import Counter, SpeechCollator, TextCollator
from engine.train.model import apply_lora, count_params, load_base, pick_device, precision_flags
from engine.train.resume import resume_point
from engine.train.speech_step import SpeechTrainer
from engine.train.text import build_text_dataset


def handles(model_name: str) -> bool:  # noqa: ARG001 - the fallback: engine.train.job asks it last
    return True


def run(ctx: JobContext) -> None:
    """Train (or resume) the run; raises JobStopped on a graceful stop."""
    train(ctx)


def train(ctx: JobContext, *, load: Callable[..., tuple[Any, Any, str]] = load_base,
          callbacks: Sequence[Any] = (), after: Callable[..., None] | None = None,
          batch_map: Callable[[dict], dict] | None = None) -> None:
    """:func:`run`, with the parts a rehearsal (engine.train.rehearsal) swaps: ``load(cfg, kind,
    device)`` gives (model, tokenizer or processor, path), ``callbacks`` join the Trainer's,
    ``batch_map`` rewrites each collated batch, and ``after(model, proc, trainer)`` runs on
    rank 0 once the adapter is saved."""
    in_loop = [False]

    def progress(fraction, message):  # before the loop, a stop ends the job at once
        # (one rank alone must not: the others would wait for it; ranks stop together in the loop)
        if not in_loop[0] and ctx.world_size == 1 and ctx.should_stop():
            raise JobStopped()
        ctx.progress(fraction, message)

    run, cfg, log = ctx.run, ctx.run.config(), ctx.log
    device = pick_device(cfg)
    flags = precision_flags(cfg, device)

    rp = resume_point(run, bool(ctx.params.get("resume")), log, writer=ctx.rank == 0)
    ckpt = rp.checkpoint

    progress(0.0, "loading data")
    ds = open_dataset(cfg.data.dataset, ctx.workspace, progress=scaled(progress, 0.0, 0.02))
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
    log(f"device {device}, precision {'bf16' if flags['bf16'] else 'fp16' if flags['fp16'] else 'fp32'}, "
        f"quantization {cfg.model.quantization}")
    model, proc, path = load(cfg, kind, device)
    set_seed(cfg.train.seed)  # LoRA init is seeded, so a resumed run rebuilds the same layout
    counter = Counter()
    callbacks = list(callbacks)
    split_file = str(ds.path / f"{cfg.data.train_split}.jsonl")
    eval_file = str(ds.path / f"{cfg.data.eval_split}.jsonl")
    if kind == "speech":
        prefix = speech.prompt_ids(proc, model)
        cache = None
        if not cfg.lora.encoder_lora and not cfg.lora.full_finetune:
            cache_dir = ctx.workspace.root / "cache" / "encoder" / speech._model_key(path, cfg.model.quantization)
            audios = [r["audio"] for r in train_rows + eval_rows]
            log(f"encoder cache: {len(set(audios))} clips in {cache_dir}")
            t0 = time.time()
            cache = speech.build_encoder_cache(model, proc, audios, cache_dir, scaled(progress, 0.02, 0.1))
            log(f"encoder cache ready in {time.time() - t0:.1f}s")
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
        model = apply_lora(cfg, model, kind)
        train_ds = build_text_dataset(proc, train_rows, cfg.train.max_length, cfg.data.system_prompt, split_file)
        eval_ds = build_text_dataset(proc, eval_rows, cfg.train.max_length, cfg.data.system_prompt,
                                     eval_file) if eval_rows else None
        collator = TextCollator(proc.pad_token_id, counter)
        unit = "tokens"
    trainable, total = count_params(model)
    log(f"{len(train_ds)} train / {len(eval_ds) if eval_ds else 0} eval examples; "
        f"trainable params {trainable:,} of {total:,} ({100 * trainable / max(1, total):.2f}%)")

    if batch_map is not None:
        collator = _mapped(collator, batch_map)
    trainer = _trainer(cfg, run, model, proc, train_ds, eval_ds, collator, flags, device, kind)
    clock = rp.clock()
    stop_cb = StopCallback(ctx.should_stop, ctx.world_size)
    # order matters: the speech eval callback fills eval_wer before MetricsCallback writes the row
    for cb in callbacks + [MetricsCallback(run, clock, counter, unit, ctx.world_size), stop_cb,
                           ProgressCallback(scaled(progress, 0.1, 0.99), clock)]:
        trainer.add_callback(cb)

    if eval_ds is not None and cfg.eval.eval_at_start and ckpt is None:
        log("evaluating the base model (step 0)")
        trainer.evaluate()
    log(f"training{f' from {ckpt.name}' if ckpt else ''}")
    in_loop[0] = True  # from here a stop request finishes the step and checkpoints (StopCallback)
    result = trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)
    # ranks decide together (StopCallback's agreed answer); one process may also take a late request
    if stop_cb.stopped_at is not None or (ctx.world_size == 1 and ctx.should_stop()):
        log(f"stopped at step {trainer.state.global_step}; checkpoint saved")
        raise JobStopped()
    # from the Trainer's own history, which every rank holds alike (evaluate is collective)
    last_eval = max((r["step"] for r in trainer.state.log_history if "eval_loss" in r), default=-1)
    if eval_ds is not None and last_eval != trainer.state.global_step:
        trainer.evaluate()
    if not trainer.is_world_process_zero():
        return  # rank 0 alone writes the run folder
    progress(0.99, "saving adapter")
    target = run.model_dir if cfg.lora.full_finetune else run.adapter_dir
    with atomic_dir(target, overwrite=True) as tmp:
        model.save_pretrained(tmp)
        proc.save_pretrained(tmp)
        write_json(Path(tmp) / "medtune.json", {"base_model": cfg.model.name, "base_path": path, "kind": kind,
                                                "quantization": cfg.model.quantization,
                                                "steps": trainer.state.global_step})
    log(f"done: {trainer.state.global_step} steps, train loss {result.training_loss:.4f}; saved {target.name}/")
    if after is not None:
        after(model, proc, trainer)


def _mapped(collator, fn):
    def collate(feats):
        return fn(collator(feats))
    return collate


def _trainer(cfg: RunConfig, run: Run, model, proc, train_ds, eval_ds, collator, flags, device, kind):
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
        # LoRA trains every adapter weight each step, so DDP need not search for unused ones
        ddp_find_unused_parameters=False,
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
    cls = SpeechTrainer if kind == "speech" else Trainer
    return cls(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds, data_collator=collator,
               processing_class=proc)
