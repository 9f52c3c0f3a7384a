"""Run-like folders for the export tests: a tiny random base model + a real PEFT adapter.

The adapter is saved with ``init_lora_weights=False`` (random A *and* B), so it changes the
base model's outputs: a merge that dropped or doubled it would fail the checks. The folder
follows the run-folder contract (config.yaml written by RunConfig, status.json, metrics.jsonl,
adapter/, eval/metrics.json) without spending CPU minutes on training.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def tiny_tokenizer():
    """Byte-level tokenizer (no merges): 256 byte symbols + 4 specials, with a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    vocab = {t: i for i, t in enumerate(specials + sorted(pre_tokenizers.ByteLevel.alphabet()))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", pad_token="<pad>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_llama(path: Path, seed: int = 0, *, hidden: int = 64, layers: int = 2) -> Path:
    """A random Llama (default 2 layers, hidden 64: ~100k parameters) + tokenizer, saved locally."""
    from transformers import LlamaConfig, LlamaForCausalLM

    if (path / "config.json").is_file():
        return path
    torch.manual_seed(seed)
    tok = tiny_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def make_run(workspace, base: Path | str, *, name: str = "tiny-run", kind: str = "text",
             quantization: str = "none", eval_metrics: dict | None = None, seed: int = 0,
             model_name: str | None = None, lora_b_scale: float | None = None) -> Path:
    """A completed run folder on ``base`` whose adapter/ holds a non-trivial LoRA adapter.

    ``model_name`` is what config.yaml names (e.g. the registry name of an embedded model whose
    converted folder is ``base``); ``lora_b_scale`` rescales the random B matrices (default:
    x20 for speech, where the random init barely moves the logits; unchanged for text)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoModelForSpeechSeq2Seq

    from engine.atomic import write_json, write_text
    from engine.config import RunConfig

    run = Path(workspace.runs) / name
    run.mkdir(parents=True)
    dataset = "med-dictation" if kind == "speech" else "med-qa"
    cfg = RunConfig.from_dict({
        "model": {"name": model_name or str(base), "quantization": quantization},
        "data": {"dataset": dataset},
        "lora": {"r": 4, "alpha": 8.0, "target_modules": "q_proj,v_proj"},
        "train": {"max_steps": 3, "batch_size": 2},
    })
    write_text(run / "config.yaml", cfg.to_yaml(f"# run {name}"))
    torch.manual_seed(seed)
    cls = AutoModelForSpeechSeq2Seq if kind == "speech" else AutoModelForCausalLM
    model = cls.from_pretrained(base, dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                  lora_dropout=0.0, init_lora_weights=False))
    scale = lora_b_scale if lora_b_scale is not None else (20.0 if kind == "speech" else 1.0)
    if scale != 1.0:
        with torch.no_grad():
            for n, p in peft_model.named_parameters():
                if "lora_B" in n:
                    p.mul_(scale)
    peft_model.save_pretrained(run / "adapter")
    write_json(run / "status.json", {"state": "completed", "kind": "train", "progress": 1.0})
    write_text(run / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in (
        {"step": 1, "epoch": 0.3, "loss": 2.5}, {"step": 3, "epoch": 1.0, "loss": 1.9, "eval_loss": 2.0})))
    if eval_metrics is not None:
        write_json(run / "eval" / "metrics.json", eval_metrics)
    return run


# ---- fixtures (import them into a test module: `from export_runs import tiny_text_base`) ----
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_text_base(tmp_path_factory) -> Path:
    return tiny_llama(tmp_path_factory.mktemp("tiny-llama") / "model")


def greedy_generate(model, tokenizer, prompt: str, n: int = 12) -> list[int]:
    """Plain ``generate`` (greedy, KV cache): the path a user of the export takes."""
    text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                         add_generation_prompt=True)
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=n, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return out[0, ids["input_ids"].shape[1]:].tolist()
