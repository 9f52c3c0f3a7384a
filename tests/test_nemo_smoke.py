"""CPU smoke test of the NeMo backend: the real speechlm2 code path, end to end, at toy size.

A tiny SALM is built from config (a 2-layer FastConformer and a 2-layer random Qwen3 with a
character-level tokenizer, ``pretrained_weights: False``: nothing is downloaded), saved in
NeMo's format, then trained with LoRA by engine.train.nemo on the shipped dictation set
(first sentences only), resumed, and used to transcribe.
"""

from __future__ import annotations

import json
import string

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.extra("nemo")]

HIDDEN = 64


def _char_tokenizer(out_dir):
    """A character-level tokenizer with Qwen's chat markers (NeMo's 'qwen' prompt format)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<unk>"]
    chars = list(string.ascii_letters + string.digits + string.punctuation + " \n")
    tok = Tokenizer(models.WordLevel(vocab={t: i for i, t in enumerate(specials + chars)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    tok.decoder = decoders.Fuse()
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<|endoftext|>",
                                 eos_token="<|im_end|>")
    hf.add_special_tokens({"additional_special_tokens": ["<|im_start|>"]})
    hf.save_pretrained(out_dir)
    return hf


@pytest.fixture(scope="module")
def tiny_salm(tmp_path_factory):
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from engine.nemo.model import create_from_config
    from engine.nemo.salm_config import salm_from_config

    root = tmp_path_factory.mktemp("nemo")
    llm = root / "llm"
    tok = _char_tokenizer(llm)
    torch.manual_seed(0)
    Qwen3ForCausalLM(Qwen3Config(
        vocab_size=len(tok) + 8, hidden_size=HIDDEN, intermediate_size=2 * HIDDEN, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=2048,
        tie_word_embeddings=True)).save_pretrained(llm)
    cfg = salm_from_config(str(llm), llm_hidden=HIDDEN, d_model=64, n_layers=2)
    return create_from_config(cfg, root / "tiny-salm")


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    from engine.workspace import Workspace

    return Workspace.open(tmp_path_factory.mktemp("ws"))


@pytest.fixture(scope="module")
def dictation(ws):
    """The shipped dictation set, first 3 sentences (train clips in all 4 voices)."""
    from engine.data.shipped import build_shipped

    out = ws.datasets / "med-dictation-mini"
    build_shipped("med-dictation", out, limit=3)
    return out


def _cfg(model_dir, data_dir, **train):
    from engine.config import RunConfig

    cfg = RunConfig.from_dict({
        "model": {"name": str(model_dir)},
        "data": {"dataset": str(data_dir)},
        # r/alpha/dropout as NeMo's public salm.yaml; the encoder trains too (tiny model)
        "lora": {"r": 8, "alpha": 32, "dropout": 0.0, "encoder_lora": True},
        "train": {"learning_rate": 3e-3, "scheduler": "constant", "batch_size": 4, "logging_steps": 1,
                  "eval_steps": 100, "save_steps": 4, "device": "cpu", **train},
        "eval": {"wer_samples": 2, "max_new_tokens": 16, "eval_at_start": False},
    })
    return cfg


def test_nemo_lora_smoke_train_stop_resume_transcribe_export(tiny_salm, dictation, ws):
    import threading

    from engine.nemo.transcribe import load, transcribe_batch
    from engine.runs import JobContext, JobStopped, Run
    from engine.train import nemo as nemo_train

    run = Run(ws.runs / "nemo-smoke")
    run.path.mkdir(parents=True)
    cfg = _cfg(tiny_salm, dictation, max_steps=8)
    run.config_path.write_text(cfg.to_yaml())

    # graceful stop at step 5 (what SIGTERM does in the job process): checkpoint, JobStopped
    stop = threading.Event()

    def stop_at_5(fraction, message):
        if message.startswith("step 5/"):
            stop.set()

    with pytest.raises(JobStopped):
        nemo_train.run(JobContext(run, {}, stop_at_5, should_stop=stop.is_set))
    assert [r["step"] for r in run.metrics() if "loss" in r] == [1, 2, 3, 4, 5]
    assert run.latest_checkpoint().name == "checkpoint-5" and not run.adapter_dir.exists()

    # resume: continues from checkpoint-5 in the same metrics file, to the end
    seen = []
    nemo_train.run(JobContext(run, {"resume": True}, lambda f, m: seen.append((f, m))))
    rows = run.metrics()
    train_rows = [r for r in rows if "loss" in r]
    assert [r["step"] for r in train_rows] == list(range(1, 9))
    for r in train_rows:
        assert {"epoch", "lr", "elapsed_s", "eta_s", "grad_norm", "samples_per_s"} <= r.keys()
    first, last = train_rows[0]["loss"], train_rows[-1]["loss"]
    assert last < first, f"loss did not decrease: {first} -> {last}"
    assert train_rows[-1]["elapsed_s"] > train_rows[4]["elapsed_s"]  # elapsed time carries over the resume
    evals = [r for r in rows if "eval_loss" in r]
    assert evals and evals[-1]["step"] == 8 and 0.0 <= evals[-1]["wer"]
    assert seen and seen[-1][0] >= 0.9
    assert sorted(p.name for p in run.checkpoints_dir.iterdir()) == ["checkpoint-5", "checkpoint-8"]
    ad = run.adapter_dir
    assert {"adapter_config.json", "adapter_model.safetensors", "trainable.safetensors",
            "medtune.json"} <= {p.name for p in ad.iterdir()}
    assert json.loads((ad / "adapter_config.json").read_text())["r"] == 8
    meta = json.loads((ad / "medtune.json").read_text())
    assert meta["backend"] == "nemo" and meta["steps"] == 8

    # transcripts come out of the tuned model (the base + adapter), for a batch of clips
    from engine.data.folder import DatasetDir

    held_out = DatasetDir(dictation)
    clips = [r["audio"] for r in held_out.load_split("validation") + held_out.load_split("test")][:2]
    handle = load(str(tiny_salm), run.adapter_dir, device="cpu")
    texts = transcribe_batch(handle, clips, batch_size=2, max_new_tokens=16)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    assert any(t.strip() for t in texts), texts

    # export: merged (NeMo's HF-style SALM folder + the merged LLM alone) transcribes like base+adapter
    from transformers import AutoModelForCausalLM

    from engine.nemo.export import export
    from engine.nemo.model import load_salm
    from engine.nemo.transcribe import SalmHandle

    out = export(run, run.export_dir / "nemo-merged", merged=True)
    assert (out / "salm" / "config.json").is_file() and (out / "salm" / "model.safetensors").is_file()
    assert "lora" not in json.loads((out / "salm" / "config.json").read_text())
    merged = SalmHandle(load_salm(str(out / "salm"), device="cpu").eval(), "merged", handle.prompt)
    assert transcribe_batch(merged, clips, batch_size=2, max_new_tokens=16) == texts
    assert AutoModelForCausalLM.from_pretrained(out / "llm").config.model_type == "qwen3"
    out = export(run, run.export_dir / "nemo-adapter", merged=False)
    assert (out / "salm-lora" / "model.safetensors").is_file()
    assert (out / "adapter" / "adapter_model.safetensors").is_file()



def test_nemo_job_in_a_child_process_without_eval_split(tiny_salm, dictation, ws):
    """The real job path: jobs.launch -> `python -m engine.jobs RUN --kind train` -> the training
    job dispatches a NeMo model to engine.train.nemo (grad accumulation, no eval split)."""
    from engine import jobs
    from engine.preflight import model_kind

    assert model_kind(str(tiny_salm)) == "speech"
    cfg = _cfg(tiny_salm, dictation, max_steps=2, batch_size=2, grad_accum=2, save_steps=100)
    cfg.data.eval_split = ""
    run = jobs.launch(ws, cfg, name="nemo-child")
    st = jobs.wait(run, "train", timeout=600)
    assert st["state"] == "completed", run.log_tail(40)
    rows = run.metrics()
    assert [r["step"] for r in rows] == [1, 2] and all("loss" in r for r in rows)
    assert rows[-1]["epoch"] == 2.0  # 4 clips / (batch 2 x accum 2) = 1 optimizer step per epoch
    assert run.latest_checkpoint().name == "checkpoint-2"
    assert json.loads((run.adapter_dir / "medtune.json").read_text())["backend"] == "nemo"
    assert "NeMo SALM on cpu" in run.log_tail(200)
