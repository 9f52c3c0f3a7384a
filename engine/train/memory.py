"""Where a training run's memory goes, measured: weights / LoRA + optimizer state / activations.

The split is the one the memory planner (engine.plan) predicts:

- weights: the bytes of every tensor of the model that is not trained (quantized blocks and
  their statistics included, and the float32 copies that preparing a quantized model for
  training makes of its norms and embeddings);
- LoRA + optimizer state: the trained tensors, their gradients and the optimizer's state;
- activations: the rest of the peak during a training step.

The static parts are counted from the tensors themselves. The peak is read where the memory
lives: ``torch.cuda.max_memory_allocated`` on a GPU; on a CPU the process's resident size,
sampled every few milliseconds by a thread (the CPU allocator has no peak counter), less what
the process held before the model was built.
"""

from __future__ import annotations

import ctypes
import threading
import time
from typing import Any

import psutil
import torch
from transformers import TrainerCallback

SAMPLE_S = 0.005


def tensor_bytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def model_bytes(model: torch.nn.Module) -> tuple[int, int]:
    """(frozen bytes, trainable bytes) of the model's parameters and buffers, each storage once
    (tied embeddings count once). A 4-bit weight's quantization statistics (absmax, and the
    double-quantization state) count with it."""
    seen: set[int] = set()
    frozen = trained = 0
    for p in list(model.parameters()) + list(model.buffers()):
        key = p.untyped_storage().data_ptr() if p.device.type != "meta" else id(p)
        if key in seen:
            continue
        seen.add(key)
        n = tensor_bytes(p) + _quant_state_bytes(p)
        if p.requires_grad:
            trained += n
        else:
            frozen += n
    return frozen, trained


def _quant_state_bytes(p: Any) -> int:
    qs = getattr(p, "quant_state", None)
    if qs is None:
        scb = getattr(p, "SCB", None)  # 8-bit: one scale per row
        return tensor_bytes(scb) if isinstance(scb, torch.Tensor) else 0
    total = tensor_bytes(qs.absmax) if isinstance(getattr(qs, "absmax", None), torch.Tensor) else 0
    nested = getattr(qs, "state2", None)
    if nested is not None and isinstance(getattr(nested, "absmax", None), torch.Tensor):
        total += tensor_bytes(nested.absmax)
    return total


def optimizer_bytes(optimizer: Any) -> int:
    total = 0
    for state in getattr(optimizer, "state", {}).values():
        total += sum(tensor_bytes(v) for v in state.values() if isinstance(v, torch.Tensor))
    return total


def release_freed_memory() -> None:
    """Hand memory the process has freed back to the system (glibc keeps freed heap pages, so a
    build that made and dropped temporaries would otherwise look like live memory in the RSS)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim, the figure is a little high
        pass


class PeakSampler:
    """The process's peak memory since :meth:`reset`: CUDA's own counter on a GPU, else RSS."""

    def __init__(self, device: str = "cpu"):
        self.cuda = device.startswith("cuda") and torch.cuda.is_available()
        self._proc = psutil.Process()
        self._peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def now(self) -> int:
        return torch.cuda.memory_allocated() if self.cuda else self._proc.memory_info().rss

    def start(self) -> PeakSampler:
        self.reset()
        if not self.cuda:
            self._thread = threading.Thread(target=self._run, daemon=True, name="memory-sampler")
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, self._proc.memory_info().rss)
            time.sleep(SAMPLE_S)

    def reset(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        self._peak = self.now()

    def peak(self) -> int:
        return torch.cuda.max_memory_allocated() if self.cuda else max(self._peak, self.now())

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1)


class MemoryCallback(TrainerCallback):
    """Records the split at the first optimizer step and the peak over every step after."""

    def __init__(self, sampler: PeakSampler, baseline: int):
        self.sampler, self.baseline = sampler, baseline
        self.split: dict[str, int] = {}
        self.step_times: list[float] = []
        self._t = 0.0

    def on_step_begin(self, args, state, control, **kw):
        self._t = time.perf_counter()

    def on_step_end(self, args, state, control, model=None, optimizer=None, **kw):
        self.step_times.append(time.perf_counter() - self._t)
        if not self.split and model is not None:
            frozen, trained = model_bytes(model)
            # the gradients are gone by now (zero_grad frees them): one per trained tensor, its size
            self.split = {"weights": frozen, "lora_and_optimizer": 2 * trained + optimizer_bytes(optimizer)}

    def result(self) -> dict[str, Any]:
        peak = self.sampler.peak() - self.baseline
        static = sum(self.split.values())
        return {**self.split, "activations": max(0, peak - static), "peak": peak,
                "measured_by": "torch.cuda.max_memory_allocated" if self.sampler.cuda else "RSS sampled every 5 ms",
                "s_per_step": (sum(self.step_times[1:]) / len(self.step_times[1:])) if len(self.step_times) > 1
                else (self.step_times[0] if self.step_times else None)}
