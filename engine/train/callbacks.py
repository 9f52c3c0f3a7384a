"""TrainerCallbacks that connect the Trainer to the run folder.

- MetricsCallback: one metrics.jsonl line per log step and per evaluation.
- StopCallback: a graceful stop (SIGTERM) finishes the current step, saves a checkpoint and
  ends the loop.
- ProgressCallback: status.json progress + ETA for the runs table.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

import torch
from transformers import TrainerCallback

from engine import atomic
from engine.progress import Progress
from engine.runs import Run
from engine.train.collators import Counter
from engine.train.resume import Clock


def _num(x: Any) -> Any:
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return None
    return round(x, 6) if isinstance(x, float) else x


def fmt_eta(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class MetricsCallback(TrainerCallback):
    def __init__(self, run: Run, clock: Clock, counter: Counter, unit: str, world_size: int = 1):
        self.run, self.clock, self.counter, self.unit = run, clock, counter, unit
        self.world_size = world_size
        self._t0 = time.time()

    def _rate(self) -> float | None:
        # Averaged over this session: the Trainer prefetches batches, so per-interval
        # counts jump around and would often read zero.
        count = self.counter.tokens if self.unit == "tokens" else self.counter.samples
        dt = time.time() - self._t0
        # rank 0 counts its own batches; the ranks share the data evenly, so the run's rate is world x
        return count * self.world_size / dt if dt > 0 and count else None

    def _write(self, row: dict[str, Any]) -> None:
        atomic.append_line(self.run.metrics_path, json.dumps({k: _num(v) for k, v in row.items()}))

    def on_log(self, args, state, control, logs=None, **kw):
        logs = logs or {}
        if not state.is_world_process_zero or "loss" not in logs:
            return  # eval rows come from on_evaluate; the end-of-training summary is not a step
        self._write({
            "step": state.global_step, "epoch": round(state.epoch or 0.0, 4), "loss": logs.get("loss"),
            "lr": logs.get("learning_rate"), "grad_norm": logs.get("grad_norm"),
            f"{self.unit}_per_s": self._rate(), "elapsed_s": round(self.clock.elapsed(), 2),
            "eta_s": _num(self.clock.eta(state.global_step, state.max_steps)), "time": time.time(),
        })

    def on_evaluate(self, args, state, control, metrics=None, **kw):
        if not state.is_world_process_zero:
            return  # multi-GPU (accelerate/torchrun): rank 0 alone writes the run folder
        m = metrics or {}
        row = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4),
               "eval_loss": m.get("eval_loss"), "elapsed_s": round(self.clock.elapsed(), 2), "time": time.time()}
        for k in ("eval_wer", "eval_term_recall"):  # filled by the speech eval callback
            if k in m:
                row[k[5:]] = m[k]
        self._write(row)


class StopCallback(TrainerCallback):
    """Ends training after the current step when a graceful stop was requested.

    With several processes the ranks must stop at the same step, or the ones still training
    wait forever in their next collective: each rank's answer is all-reduced (max), so a
    request seen by any rank stops them all, at one step, with one checkpoint."""

    def __init__(self, should_stop, world_size: int = 1):
        self.should_stop = should_stop
        self.world_size = world_size
        self.stopped_at: int | None = None

    def _agreed(self, device) -> bool:
        stop = bool(self.should_stop())
        if self.world_size > 1:
            flag = torch.tensor([int(stop)], device=device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            stop = bool(flag.item())
        return stop

    def on_step_end(self, args, state, control, **kw):
        if self._agreed(args.device):
            control.should_save = True  # the resume point is this very step
            control.should_training_stop = True
            self.stopped_at = state.global_step
        return control


class ProgressCallback(TrainerCallback):
    def __init__(self, progress: Progress, clock: Clock):
        self.progress, self.clock = progress, clock

    def on_step_end(self, args, state, control, **kw):
        if not state.is_world_process_zero:
            return
        eta = self.clock.eta(state.global_step, state.max_steps)
        self.progress(state.global_step / max(1, state.max_steps),
                      f"step {state.global_step}/{state.max_steps}, ETA {fmt_eta(eta)}")
