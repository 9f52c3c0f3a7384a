"""Lightning callbacks that connect NeMo's training loop to our run folder.

NeMo writes no metrics file of its own, so :class:`RunFolderCallback` writes the same
``metrics.jsonl`` rows as the transformers path (the Train tab's live plot reads them),
updates status progress, honours a graceful stop, and saves resumable checkpoints in the
layout ``Run.latest_checkpoint()`` understands.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import torch
from lightning.pytorch import Callback

from engine import atomic
from engine.progress import Progress
from engine.train.resume import Clock

#: Written last into a checkpoint folder: its presence marks the checkpoint complete.
STATE_FILE = "trainer_state.json"
CKPT_FILE = "lightning.ckpt"


def _num(x: Any) -> Any:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) or math.isinf(x) else round(x, 6)


def trainable_only(checkpoint: dict, pl_module) -> None:
    """Keep only trainable weights in a Lightning checkpoint (Canary-Qwen's frozen 2.5B
    parameters would make every checkpoint ~5 GB); the frozen base is reloaded on resume."""
    keep = {n for n, p in pl_module.named_parameters() if p.requires_grad}
    checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}


class RunFolderCallback(Callback):
    """metrics.jsonl rows, progress, graceful stop and checkpoints for one NeMo training run.

    ``evaluate_wer`` (optional) returns ``{"wer": .., "term_recall": ..}`` for the eval clips;
    it runs after every validation pass so the eval row carries WER like the Whisper path.
    """

    def __init__(self, run: Any, clock: Clock, *, max_steps: int, steps_per_epoch: int, logging_steps: int,
                 save_steps: int, save_total_limit: int, batch_size: int, progress: Progress,
                 stop_requested: Callable[[], bool], evaluate_wer: Callable[[Any], dict] | None = None):
        self.run, self.clock = run, clock
        self.max_steps, self.steps_per_epoch = max_steps, max(1, steps_per_epoch)
        self.logging_steps, self.save_steps, self.save_total_limit = logging_steps, save_steps, save_total_limit
        self.batch_size, self.progress = batch_size, progress
        self.stop_requested, self.evaluate_wer = stop_requested, evaluate_wer
        self.stopped_at: int | None = None
        self._grad_norm: float | None = None
        self._losses: list[float] = []
        self._t_session = time.time()
        self._samples = 0
        self._last_step = clock.start_step  # no row until an optimizer step happened in this session

    # ---- rows ----------------------------------------------------------------------------
    def _write(self, row: dict) -> None:
        atomic.append_line(self.run.metrics_path, json.dumps(row))

    def _epoch(self, step: int) -> float:
        return round(step / self.steps_per_epoch, 4)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        grads = [p.grad.detach().float().norm() for p in pl_module.parameters() if p.grad is not None]
        self._grad_norm = float(torch.stack(grads).norm()) if grads else None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if isinstance(outputs, dict) and "loss" in outputs:
            self._losses.append(float(outputs["loss"]))
        self._samples += int(batch["input_ids"].shape[0]) if isinstance(batch, dict) and "input_ids" in batch else 0
        step = trainer.global_step
        if step == self._last_step:  # gradient accumulation: not an optimizer step yet
            return
        self._last_step = step
        if step % self.logging_steps == 0 or step == self.max_steps:
            dt = time.time() - self._t_session
            lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None
            self._write({
                "step": step, "epoch": self._epoch(step),
                "loss": _num(sum(self._losses) / len(self._losses)) if self._losses else None,
                "lr": _num(lr), "grad_norm": _num(self._grad_norm),
                "samples_per_s": _num(self._samples / dt) if dt > 0 and self._samples else None,
                "elapsed_s": round(self.clock.elapsed(), 2), "eta_s": _num(self.clock.eta(step, self.max_steps)),
                "time": time.time(),
            })
            self._losses.clear()
        eta = self.clock.eta(step, self.max_steps)
        self.progress(min(1.0, step / max(1, self.max_steps)),
                      f"step {step}/{self.max_steps}" + (f", ETA {int(eta)}s" if eta is not None else ""))
        stop = self.stop_requested()
        if step % self.save_steps == 0 or stop:
            self.save(trainer, step)
        if stop:
            self.stopped_at = step
            trainer.should_stop = True

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        m = trainer.callback_metrics
        step = trainer.global_step
        row = {"step": step, "epoch": self._epoch(step), "eval_loss": _num(m.get("val_loss")),
               "eval_acc": _num(m.get("val_acc"))}
        if self.evaluate_wer is not None:
            row.update({k: _num(v) for k, v in self.evaluate_wer(pl_module).items()})
        row.update({"elapsed_s": round(self.clock.elapsed(), 2), "time": time.time()})
        self._write(row)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        trainable_only(checkpoint, pl_module)

    # ---- checkpoints ---------------------------------------------------------------------
    def save(self, trainer, step: int) -> Path:
        """checkpoints/checkpoint-<step>/: lightning.ckpt (trainable weights, optimizer,
        scheduler, loop state), then trainer_state.json last (= complete)."""
        folder = self.run.checkpoints_dir / f"checkpoint-{step}"
        if (folder / STATE_FILE).is_file():
            return folder
        folder.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(str(folder / CKPT_FILE), weights_only=False)
        atomic.write_json(folder / STATE_FILE, {"global_step": step, "backend": "nemo",
                                                "elapsed_s": round(self.clock.elapsed(), 2)})
        self._prune()
        return folder

    def _prune(self) -> None:
        done = sorted((int(p.name.split("-")[1]), p) for p in self.run.checkpoints_dir.glob("checkpoint-*")
                      if p.name.split("-")[1].isdigit() and (p / STATE_FILE).is_file())
        for _, p in done[: max(0, len(done) - self.save_total_limit)]:
            shutil.rmtree(p, ignore_errors=True)
