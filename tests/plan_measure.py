"""Measure a training step's peak resident memory on this CPU, for the memory planner's tests
(tests/test_plan.py) and its calibration figures (bench/RESULTS.md, "Memory planner").

Run as a child process, one configuration each, so each peak is its own:

    MALLOC_MMAP_THRESHOLD_=131072 python tests/plan_measure.py '{"model": "smollm2", "cfg": {...}}'

``model`` is "smollm2" (the embedded SmolLM2-135M, loaded through engine.models.loader like a
run) or a facts name of assets/architectures with ``layers`` (a random-weight build at full
width, like a rehearsal). Whisper trains its decoder on random "cached encoder outputs", as
engine.train.speech feeds them. The LoRA preparation is engine.train.model.apply_lora's; each step
is forward + backward + gradient clipping + fused AdamW (the Trainer's default optimizer), on
``batch_size`` x ``max_length`` random tokens. The peak comes from the kernel's high-water mark
(VmHWM, reset before each step through /proc/self/clear_refs) and from a thread sampling the
RSS every 10 ms; the floor is the RSS with torch, transformers and peft imported and warmed
up, before the model exists. Prints one ``RESULT {json}`` line (bytes).

MALLOC_MMAP_THRESHOLD_: glibc raises its mmap threshold up to 32 MiB after the first large
free, and the activations freed in the backward pass then stay in the heap as holes that RSS
keeps counting (SmolLM2 at 256 tokens: 250 MiB above the live tensors without checkpointing,
350-450 MiB with it, bench/RESULTS.md). A fixed threshold returns every freed tensor of 128 KiB
or more to the system, so RSS measures live memory, which is what the planner predicts.
"""

from __future__ import annotations

import gc
import json
import re
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

RESULT = "RESULT "


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _hwm() -> int:
    return int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) * 1024


def _reset_hwm() -> None:
    Path("/proc/self/clear_refs").write_text("5")


class _Sampler:
    """The RSS's peak, sampled every 10 ms while the ``with`` block runs."""

    def __enter__(self) -> "_Sampler":
        self.peak, self._stop = _rss(), False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop:
            self.peak = max(self.peak, _rss())
            time.sleep(0.01)

    def __exit__(self, *exc) -> None:
        self._stop = True
        self._thread.join()


def measure(spec: dict) -> dict:
    import torch

    from engine.config import RunConfig
    from engine.models import architectures, loader
    from engine.train.model import apply_lora

    cfg = RunConfig().with_values(spec["cfg"])
    torch.manual_seed(0)
    _ = (torch.randn(64, 64) @ torch.randn(64, 64)).sum()  # the runtime's own first-use allocations
    gc.collect()
    floor = _rss()
    dtype = torch.float32 if cfg.model.dtype == "auto" else getattr(torch, cfg.model.dtype)
    if spec["model"] == "smollm2":
        path = loader.model_path("smollm2-135m-instruct")
        model, _ = loader.load_pretrained("text", path, device="cpu", dtype=dtype, quant=cfg.model.quantization)
        model.config.use_cache = False
        facts = json.loads((Path(path) / "config.json").read_text())
    else:
        facts = architectures.with_layers(architectures.facts(spec["model"]), spec.get("layers"))
        model = architectures.build_random(facts, dtype=dtype, quant=cfg.model.quantization)
    speech = facts["model_type"] == "whisper"
    model = apply_lora(cfg, model, "speech" if speech else "text")
    model.train()
    with torch.no_grad():  # page every weight in: a checkpoint's mapping is read lazily
        for p in model.parameters():
            if p.dtype.is_floating_point:
                p.sum()
    gc.collect()
    built = _rss()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, fused=True)
    b, t, vocab = cfg.train.batch_size, cfg.train.max_length, int(facts["vocab_size"])
    gen = torch.Generator().manual_seed(0)
    steps = []
    for _ in range(int(spec.get("steps", 2))):
        ids = torch.randint(0, vocab, (b, t), generator=gen)
        if speech:
            from transformers.modeling_outputs import BaseModelOutput

            frames = torch.randn(b, int(facts["max_source_positions"]), int(facts["d_model"]), generator=gen)
            inputs = {"encoder_outputs": BaseModelOutput(last_hidden_state=frames), "decoder_input_ids": ids}
        else:
            inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        gc.collect()
        before = _rss()
        _reset_hwm()
        t0 = time.time()
        with _Sampler() as s:
            loss = model(**inputs, labels=ids).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            del loss
        steps.append({"before": before, "hwm": _hwm(), "sampled": s.peak, "seconds": round(time.time() - t0, 2)})
    peak = max(max(st["hwm"], st["sampled"]) for st in steps)
    return {"floor": floor, "built": built, "peak": peak, "steps": steps, "facts": facts}


if __name__ == "__main__":
    print(RESULT + json.dumps(measure(json.loads(sys.argv[1]))), flush=True)
