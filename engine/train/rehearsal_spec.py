"""What a rehearsal of a recipe runs (engine.train.rehearsal), decided without importing torch:
the front ends build the rehearsal's run config and spec here before they launch it."""

from __future__ import annotations

from typing import Any

from engine.config import RunConfig
from engine.errors import ConfigError
from engine.models import architectures
from engine.preflight import model_kind

#: The shipped dataset a rehearsal reads when none is given, by model kind.
DATASETS = {"text": "med-qa", "speech": "med-dictation"}
#: The embedded model whose tokenizer (text) or processor (speech) stands in for the real one.
STAND_INS = {"text": "smollm2-135m-instruct", "speech": "whisper-tiny.en"}
PROMPT = "A 54-year-old patient reports chest pain on exertion. What should be done first?"


def rehearsal_config(cfg: RunConfig, *, layers: int | None = 2, length: int = 256, steps: int = 3,
                     batch: int | None = None, dataset: str | None = None) -> tuple[RunConfig, dict[str, Any]]:
    """(the run config of a rehearsal of ``cfg``, its spec). ConfigError when the workbench has
    no architecture facts for the model."""
    name = cfg.model.name
    if architectures.facts_name(name) is None:
        raise ConfigError([f"model.name: no architecture facts for {name}; rehearsals know "
                           f"{', '.join(sorted(architectures.FOR_MODEL))}"])
    kind = model_kind(name) or "text"
    batch = batch or cfg.train.batch_size
    f = architectures.facts(name)
    if "llm" in f:  # a SALM: the LLM's depth and the audio encoder's
        of_layers = {"num_hidden_layers": architectures.facts(f["llm"])["num_hidden_layers"],
                     "encoder_layers": f["encoder"]["n_layers"]}
    else:
        of_layers = {k: f[k] for k in architectures.layer_keys(f)}
    spec = {"layers": layers, "of_layers": of_layers, "length": length, "steps": steps, "batch": batch,
            "recipe": {"batch_size": cfg.train.batch_size, "grad_accum": cfg.train.grad_accum,
                       "max_length": cfg.train.max_length, "dataset": cfg.data.dataset,
                       "precision": cfg.train.precision, "device": cfg.train.device},
            "stand_in_tokenizer": STAND_INS["text" if "llm" in f else kind]}
    rcfg = cfg.with_overrides({
        "data.dataset": dataset or DATASETS[kind], "data.max_train_samples": steps * batch,
        "data.eval_split": "", "train.max_steps": steps, "train.max_length": length, "train.batch_size": batch,
        "train.grad_accum": 1, "train.logging_steps": 1, "train.eval_steps": 0, "train.save_steps": steps,
        "train.device": "auto", "train.precision": "auto", "train.auto_resume": 0, "train.report_to": "none",
        "eval.eval_at_start": False, "eval.wer_samples": 0, "launch.where": "local"})
    return rcfg, spec
