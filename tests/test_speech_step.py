"""The speech training step's shortcuts compute what the stock Whisper forward computes."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import TrainingArguments, WhisperConfig, WhisperForConditionalGeneration
from transformers.cache_utils import DynamicCache, EncoderDecoderCache
from transformers.modeling_outputs import BaseModelOutput

from engine.config import RunConfig
from engine.train.model import apply_lora
from engine.train.speech_step import CACHE_ARG, SpeechTrainer, _absorbed_pays, speed_up_cross_attention

D, HEADS, FRAMES = 64, 2, 1500  # with 2 heads the shortcut pays below 32 target tokens


def _model(**lora) -> torch.nn.Module:
    cfg = WhisperConfig(vocab_size=300, num_mel_bins=80, d_model=D, encoder_layers=1, decoder_layers=2,
                        encoder_attention_heads=2, decoder_attention_heads=HEADS, encoder_ffn_dim=128,
                        decoder_ffn_dim=128, max_source_positions=FRAMES, max_target_positions=448,
                        decoder_start_token_id=1, eos_token_id=2, pad_token_id=2, bos_token_id=2)
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(cfg)
    with torch.no_grad():  # biases start at zero; the value bias must be seen to be added right
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.normal_(0, 0.2)
    model.config.use_cache = False  # as engine.train.model.load_base leaves it for training
    rc = RunConfig().with_overrides({"lora.r": 4, "lora.alpha": 8.0, "lora.dropout": 0.0, **lora})
    model = apply_lora(rc, model, "speech")
    with torch.no_grad():  # LoRA B starts at zero; give the adapter something to say
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
    return model.train()


def _batch(tgt: int, bsz: int = 3) -> dict:
    g = torch.Generator().manual_seed(tgt)
    ids = torch.randint(3, 300, (bsz, tgt), generator=g)
    labels = torch.randint(3, 300, (bsz, tgt), generator=g)
    labels[:, 0] = -100  # a masked prompt position
    labels[0, tgt // 2:] = -100  # a padded row
    hidden = torch.randn(bsz, FRAMES, D, generator=g)
    return {"encoder_outputs": BaseModelOutput(last_hidden_state=hidden), "decoder_input_ids": ids, "labels": labels}


def _k_proj_calls(model) -> list[int]:
    calls = [0]
    for name, mod in model.named_modules():
        if name.endswith("encoder_attn.k_proj"):
            mod.register_forward_hook(lambda *a: calls.__setitem__(0, calls[0] + 1))
    return calls


def _loss_logits_grads(model, batch) -> tuple[torch.Tensor, torch.Tensor, dict]:
    model.zero_grad()
    out = model(**batch)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return out.loss.detach(), out.logits.detach(), grads


def _assert_same(a, b) -> None:
    (la, xa, ga), (lb, xb, gb) = a, b
    torch.testing.assert_close(la, lb, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(xa, xb, rtol=1e-4, atol=1e-5)
    assert ga.keys() == gb.keys() and any("encoder_attn.q_proj" in n for n in ga)
    for n in ga:
        torch.testing.assert_close(ga[n], gb[n], rtol=1e-4, atol=1e-6, msg=n)


ALL = "q_proj,k_proj,v_proj,out_proj,fc1,fc2"  # LoRA on the cross-attention keys/values too
FROZEN_KV = "q_proj,out_proj,fc1,fc2"


def test_lora_dropout_stays_off_the_encoder_frames_only():
    model = _model(**{"lora.dropout": 0.1})  # target_modules auto: the decoder's linear layers
    drops = {n: type(m.lora_dropout["default"]).__name__ for n, m in model.named_modules() if hasattr(m, "lora_A")}
    kv = {n for n in drops if n.endswith(("encoder_attn.k_proj", "encoder_attn.v_proj"))}
    assert len(kv) == 4 and {drops[n] for n in kv} == {"Identity"}
    assert {drops[n] for n in drops if n not in kv} == {"Dropout"}
    assert not any(".encoder." in n for n in drops)


@pytest.mark.parametrize("targets", [ALL, FROZEN_KV])
def test_cross_attention_shortcut_matches_stock_forward_and_gradients(targets):
    stock = _model(**{"lora.target_modules": targets})
    fast = copy.deepcopy(stock)
    assert speed_up_cross_attention(fast) == 2
    assert speed_up_cross_attention(fast) == 0  # idempotent
    stock_calls, fast_calls = _k_proj_calls(stock), _k_proj_calls(fast)
    batch = _batch(tgt=16)
    a, b = _loss_logits_grads(fast, batch), _loss_logits_grads(stock, batch)
    _assert_same(a, b)
    assert any("encoder_attn.k_proj.lora_A" in n for n in a[2]) == (targets == ALL)
    assert stock_calls[0] == 2 and fast_calls[0] == 0  # the shortcut never projected the frames
    # adapter switched off (the base model's answer in Compare): the shortcut applies, base only
    with fast.disable_adapter(), stock.disable_adapter(), torch.no_grad():
        torch.testing.assert_close(fast(**batch).logits, stock(**batch).logits, rtol=1e-4, atol=1e-5)
    assert fast_calls[0] == 0


def _fallback_case(batch, kv_dropout: float = 0.0, base_dtype: torch.dtype | None = None, **lora) -> None:
    stock = _model(**lora)
    for name, mod in stock.named_modules():
        if kv_dropout and name.endswith(("encoder_attn.k_proj", "encoder_attn.v_proj")):
            mod.lora_dropout["default"] = torch.nn.Dropout(kv_dropout)
    if base_dtype is not None:  # a half-precision base with float32 LoRA weights, as PEFT keeps them
        for name, p in stock.named_parameters():
            if "lora_" not in name:
                p.data = p.data.to(base_dtype)
        hidden = batch["encoder_outputs"].last_hidden_state.to(base_dtype)
        batch = {**batch, "encoder_outputs": BaseModelOutput(last_hidden_state=hidden)}
    fast = copy.deepcopy(stock)
    speed_up_cross_attention(fast)
    calls = _k_proj_calls(fast)
    torch.manual_seed(1)  # LoRA dropout, if any, draws the same masks in both
    a = _loss_logits_grads(fast, batch)
    torch.manual_seed(1)
    _assert_same(a, _loss_logits_grads(stock, batch))
    assert calls[0] == 2, lora


def test_cross_attention_takes_stock_forward_where_the_shortcut_does_not_apply():
    assert _absorbed_pays(31, D, HEADS) and not _absorbed_pays(32, D, HEADS)
    _fallback_case(_batch(tgt=40), **{"lora.target_modules": ALL})  # long targets: projecting is cheaper
    # LoRA dropout on the key/value inputs would need a mask over every frame
    _fallback_case(_batch(tgt=16), kv_dropout=0.1, **{"lora.target_modules": ALL})
    _fallback_case(_batch(tgt=16), **{"lora.target_modules": ALL, "lora.use_dora": True})
    _fallback_case(_batch(tgt=16), base_dtype=torch.bfloat16, **{"lora.target_modules": ALL})
    # generation with a KV cache
    stock = _model(**{"lora.target_modules": ALL})
    fast = copy.deepcopy(stock)
    speed_up_cross_attention(fast)
    calls = _k_proj_calls(fast)
    batch = _batch(tgt=16)
    outs = []
    for model in (stock, fast):
        model.eval()
        enc, ids = batch["encoder_outputs"], batch["decoder_input_ids"][:, :4]
        with torch.no_grad():
            past = EncoderDecoderCache(DynamicCache(), DynamicCache())
            first = model(encoder_outputs=enc, decoder_input_ids=ids, use_cache=True, **{CACHE_ARG: past})
            nxt = first.logits[:, -1:].argmax(-1)
            second = model(encoder_outputs=enc, decoder_input_ids=nxt, use_cache=True,
                           **{CACHE_ARG: first.past_key_values})
        outs.append((first.logits, second.logits))
    torch.testing.assert_close(outs[0], outs[1])
    assert calls[0] == 2  # projected once per layer, then reused from the cache


def test_speech_trainer_loss_is_the_models_loss(tmp_path):
    model = _model()
    stock = copy.deepcopy(model)
    trainer = SpeechTrainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), use_cpu=True,
                                                                report_to=[], disable_tqdm=True))
    assert model.base_model.model.model.decoder.layers[0].encoder_attn.forward.__func__.__name__ \
        == "_cross_attention_forward"  # the trainer installed the shortcut
    batch = _batch(tgt=16)
    loss = trainer.compute_loss(model, dict(batch))
    loss.backward()
    ref, _, ref_grads = _loss_logits_grads(stock, batch)
    torch.testing.assert_close(loss.detach(), ref, rtol=1e-5, atol=1e-6)
    for n, p in model.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.grad, ref_grads[n], rtol=1e-4, atol=1e-6, msg=n)
    eval_loss, outputs = trainer.compute_loss(model, dict(batch), return_outputs=True)
    assert outputs["loss"] is eval_loss
    with pytest.raises(TypeError, match="Whisper"):
        trainer.compute_loss(torch.nn.Linear(2, 2), dict(batch))
