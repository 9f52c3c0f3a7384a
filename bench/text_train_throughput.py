"""Text LoRA training throughput: the workbench recipe vs the common script recipe.

    python bench/text_train_throughput.py            # full: 32 med-qa examples, batch 4
    python bench/text_train_throughput.py --quick    # CI smoke run (figures meaningless)
    python bench/text_train_throughput.py --model meta-llama/Llama-3.1-8B --examples 256 --batch-size 8  # GPU

workbench: engine.train's real pieces - build_text_dataset (chat template, loss on the
  response only), TextCollator (each batch padded to its own longest member), and the
  Trainer from engine.train.hf (length-grouped sampler).
baseline:  the recipe most fine-tuning scripts use - transformers Trainer + peft, every
  example tokenised with padding="max_length" to 512, DataCollatorForLanguageModeling
  (loss on every non-pad token), random batches (no length grouping).
Both: same model (embedded SmolLM2-135M-Instruct unless --model), same shipped med-qa
examples in the same number, same LoRA (the workbench defaults), batch, learning rate,
schedule, seed, steps. Figures: real (non-pad) tokens per second of training, tokens fed
(pad included), peak RSS (and peak GPU memory on a GPU), and the held-out loss (response
tokens of the validation split, the same evaluation code for both) after training.
Goal: >= 4x real tokens/s at equal or better held-out loss.
"""

from __future__ import annotations

import math
import tempfile
import time
from types import SimpleNamespace

import _common

FIXED_LEN = 512


def _spaced(rows: list[dict], n: int) -> list[dict]:
    if n >= len(rows):
        return rows
    step = len(rows) / n
    return [rows[int(i * step)] for i in range(n)]


def _config(args):
    from engine.config import RunConfig

    cfg = RunConfig()
    cfg.model.name = args.model
    cfg.train.batch_size = args.batch_size
    cfg.train.max_length = FIXED_LEN
    cfg.train.device = args.device
    cfg.train.max_steps = math.ceil(args.examples / args.batch_size)
    cfg.train.save_steps = 10**6   # no checkpoint inside the timed loop (the baseline saves none either)
    cfg.train.eval_steps = 0
    return cfg


def held_out_loss(model, tok, rows: list[dict], batch_size: int) -> float:
    """Mean loss per response token on ``rows`` (identical for both variants)."""
    import torch

    from engine.train.collators import TextCollator
    from engine.train.text import encode_example

    model.eval()
    coll = TextCollator(tok.pad_token_id)
    dev = next(model.parameters()).device
    total, count = 0.0, 0
    encoded = [e for e in (encode_example(tok, r, FIXED_LEN) for r in rows) if e]
    for i in range(0, len(encoded), batch_size):
        b = {k: v.to(dev) for k, v in coll(encoded[i:i + batch_size]).items()}
        with torch.no_grad():
            logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits.float()
        labels = b["labels"][:, 1:]
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                                 ignore_index=-100, reduction="sum")
        total += float(loss)
        count += int((labels != -100).sum())
    return total / max(1, count)


def _data(args):
    from engine.data.datasets import open_dataset
    from engine.data.shipped import ensure_shipped

    ws = _common.workspace(args)
    ds = open_dataset(str(ensure_shipped("med-qa", ws)), ws)
    return _spaced(ds.load_split("train"), args.examples), _spaced(ds.load_split("validation"), args.eval_examples)


def variant_workbench(args) -> dict:
    from transformers import set_seed

    from engine.train.collators import Counter, TextCollator
    from engine.train.hf import _trainer
    from engine.train.model import apply_lora, load_base, pick_device, precision_flags
    from engine.train.text import build_text_dataset

    cfg = _config(args)
    train_rows, eval_rows = _data(args)
    dev = pick_device(cfg)
    flags = precision_flags(cfg, dev)
    model, tok, _ = load_base(cfg, "text", dev)
    set_seed(cfg.train.seed)
    model = apply_lora(cfg, model, "text")
    train_ds = build_text_dataset(tok, train_rows, FIXED_LEN, "", "med-qa/train.jsonl")
    counter = Counter()
    fed = _FedCounter(TextCollator(tok.pad_token_id, counter))
    with tempfile.TemporaryDirectory() as tmp:
        trainer = _trainer(cfg, SimpleNamespace(checkpoints_dir=tmp), model, tok, train_ds, None, fed, flags, dev,
                           "text")
        trainer.add_callback(_NoSave())  # the baseline saves no checkpoint: keep the timed loops alike
        secs, cpu = _timed_train(trainer)
    return _row("workbench", trainer, counter.samples, counter.tokens, fed.fed, secs, cpu,
                held_out_loss(model, tok, eval_rows, args.batch_size), dev)


def _timed_train(trainer) -> tuple[float, float]:
    """Wall and CPU seconds of ``trainer.train()`` (the only part either variant times)."""
    t0, c0 = time.perf_counter(), _common.cpu_s()
    trainer.train()
    return time.perf_counter() - t0, _common.cpu_s() - c0


def _row(variant: str, trainer, examples: int, real: int, fed: int, secs: float, cpu: float, loss: float,
         dev) -> dict:
    return {"variant": variant, "steps": trainer.state.global_step, "examples": examples,
            "real_tokens": real, "fed_tokens": fed, "train_s": round(secs, 2), "train_cpu_s": round(cpu, 2),
            "tokens_per_s": round(real / secs, 1), "tokens_per_cpu_s": round(real / cpu, 1),
            "held_out_loss": round(loss, 4), **_common.peak_mem(dev)}


class _NoSave(__import__("transformers").TrainerCallback):
    """The Trainer saves a checkpoint at the last step whenever save_strategy is "steps";
    the baseline runs with save_strategy "no", so the workbench side skips it too."""

    def on_step_end(self, args, state, control, **kwargs):
        control.should_save = False
        return control


class _FedCounter:
    """Wraps a collator; counts every position fed to the model, pad included."""

    def __init__(self, inner):
        self.inner, self.fed, self.real, self.samples = inner, 0, 0, 0

    def __call__(self, feats):
        batch = self.inner(feats)
        self.fed += int(batch["input_ids"].numel())
        self.real += int(batch["attention_mask"].sum())
        self.samples += len(feats)
        return batch


def variant_baseline(args) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    from engine.models.loader import model_path
    from engine.train.model import pick_device, precision_flags, target_modules

    cfg = _config(args)
    train_rows, eval_rows = _data(args)
    dev = pick_device(cfg)
    flags = precision_flags(cfg, dev)
    path = model_path(args.model)
    dtype = torch.bfloat16 if flags["bf16"] else torch.float32
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(dev)
    model.config.use_cache = False
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    set_seed(cfg.train.seed)
    lc = cfg.lora
    model = get_peft_model(model, LoraConfig(r=lc.r, lora_alpha=lc.alpha, lora_dropout=lc.dropout, bias=lc.bias,
                                             target_modules=target_modules(cfg, model, "text"),
                                             task_type="CAUSAL_LM"))

    def text(ex):  # the usual: the whole chat rendered by the template, trained on as one text
        msgs = [{"role": "user", "content": ex["prompt"]}, {"role": "assistant", "content": ex["response"]}]
        return tok.apply_chat_template(msgs, tokenize=False) if tok.chat_template else \
            f"### Question:\n{ex['prompt']}\n\n### Answer:\n{ex['response']}{tok.eos_token}"

    enc = tok([text(r) for r in train_rows], padding="max_length", truncation=True, max_length=FIXED_LEN,
              add_special_tokens=False)
    train_ds = Dataset.from_dict({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})
    fed = _FedCounter(DataCollatorForLanguageModeling(tok, mlm=False))
    t = cfg.train
    with tempfile.TemporaryDirectory() as tmp:
        targs = TrainingArguments(output_dir=tmp, max_steps=t.max_steps, per_device_train_batch_size=t.batch_size,
                                  learning_rate=t.learning_rate, lr_scheduler_type=t.scheduler,
                                  warmup_steps=t.warmup_ratio, weight_decay=t.weight_decay,
                                  max_grad_norm=t.max_grad_norm, seed=t.seed, data_seed=t.seed, bf16=flags["bf16"],
                                  use_cpu=dev == "cpu", save_strategy="no", report_to=[], disable_tqdm=True,
                                  logging_steps=10**6, dataloader_num_workers=0)
        trainer = Trainer(model=model, args=targs, train_dataset=train_ds, data_collator=fed)
        secs, cpu = _timed_train(trainer)
    return _row("baseline", trainer, fed.samples, fed.real, fed.fed, secs, cpu,
                held_out_loss(model, tok, eval_rows, args.batch_size), dev)


def main() -> None:
    ap = _common.parser(__doc__)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--examples", type=int, default=32, help="training examples (one epoch)")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--eval-examples", type=int, default=31, help="validation examples for the held-out loss")
    args = ap.parse_args()
    if args.quick:
        args.examples, args.batch_size, args.eval_examples = 4, 2, 4
    if args.variant:
        _common.emit({"workbench": variant_workbench, "baseline": variant_baseline}[args.variant](args))
        return
    argv = _common.passthrough(args, ["workspace", "device", "model", "examples", "batch_size", "eval_examples"])
    rows = [_common.run_variant(__file__, v, argv) for v in ("baseline", "workbench")]
    base, wb = rows
    r = wb["tokens_per_s"] / base["tokens_per_s"]
    r_cpu = wb["tokens_per_cpu_s"] / base["tokens_per_cpu_s"]
    loss_ok = wb["held_out_loss"] <= base["held_out_loss"] + 1e-3
    cols = ["variant", "examples", "steps", "real_tokens", "fed_tokens", "train_s", "tokens_per_s",
            "train_cpu_s", "tokens_per_cpu_s", "held_out_loss", "peak_rss_mb"] + (["peak_gpu_mb"] if "peak_gpu_mb" in wb else [])
    _common.finish(f"Text LoRA training, {args.model}, med-qa, batch {args.batch_size}", rows, cols,
                   _common.ratio_line(r, f"workbench/baseline real tokens/s ({r_cpu:.2f}x per CPU-second;"
                                      f" held-out loss {wb['held_out_loss']:.3f} vs {base['held_out_loss']:.3f})",
                                      ">= 4x at equal or better loss", r >= 4 and loss_ok), args)


if __name__ == "__main__":
    main()
