"""The one place that decides how weights load: device, dtype, 4-/8-bit, ``from_pretrained``,
LoRA adapter. Inference (:func:`load_model`), training (``engine.train.model``), export
(``engine.export.merge``) and NeMo (``engine.nemo.model``) all go through it.

Defaults: CUDA when present, else CPU; bf16 on a CUDA card that supports it, else float32.
Quantization goes through bitsandbytes (0.50+ also quantizes on the CPU). Hub ids load from
the local Hugging Face cache; when the Hub is unreachable and the model is not cached, the
error says so in one sentence instead of a page of traceback.
"""

from __future__ import annotations

import gc
import importlib.util
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import MedtuneError, MissingDependency, ModelError
from engine.models.availability import require_runnable
from engine.models.embedded import ensure_embedded
from engine.models.registry import ModelSpec, resolve_model
from engine.models.upcast import finish_load, load_dtype
from engine.progress import Progress, report, scaled

QUANT_CHOICES = ("none", "8bit", "4bit")
DTYPE_CHOICES = ("auto", "float32", "bfloat16", "float16")
DEVICE_CHOICES = ("auto", "cpu", "cuda")


@dataclass
class LoadedModel:
    spec: ModelSpec
    model: Any                  # PreTrainedModel, or PeftModel when an adapter is attached
    processor: Any              # tokenizer (text) or WhisperProcessor (speech)
    device: str                 # "cpu" | "cuda" | "cuda:N"
    dtype: Any                  # torch.dtype
    quant: str                  # "none" | "8bit" | "4bit"
    path: str = ""              # the folder or hub id the weights came from
    adapter: str | None = None

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def tokenizer(self) -> Any:
        """The text tokenizer (for speech models, the processor's tokenizer)."""
        return getattr(self.processor, "tokenizer", self.processor)


def model_path(name_or_path: str, progress: Progress | None = None) -> str:
    """Embedded name -> its converted cache folder (fetched on first use); anything else is
    returned as the loader would read it (registry hub id, local folder, hub id)."""
    spec = resolve_model(name_or_path)
    if spec.embedded:
        return str(ensure_embedded(spec.source.split(":", 1)[1], progress))
    return spec.source


def pick_device(device: str = "auto", no_cuda: MedtuneError | None = None) -> str:
    """"cpu", "cuda" or "cuda:N" (auto: CUDA when present). Asking for CUDA on a machine
    without it raises ``no_cuda`` (the caller's own wording), else a ModelError."""
    import torch  # noqa: PLC0415 - seconds to import; the UI imports this module at start-up

    if device not in DEVICE_CHOICES and not device.startswith("cuda:"):
        raise ModelError(f"Unknown device '{device}'. Choose one of {', '.join(DEVICE_CHOICES)}.")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise no_cuda or ModelError("device 'cuda' was asked for, but no CUDA GPU is available here.",
                                    hint="Use device 'auto' or 'cpu'.")
    return device


def bf16_supported(device: str) -> bool:
    """True on a CUDA device that computes in bfloat16 (what "auto" precision picks there)."""
    import torch  # noqa: PLC0415 - seconds to import; the UI imports this module

    return device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def pick_dtype(dtype: str, device: str) -> Any:
    """The torch dtype named ``dtype``; auto: bfloat16 where :func:`bf16_supported`, else float32."""
    import torch  # noqa: PLC0415 - seconds to import; the UI imports this module

    if dtype not in DTYPE_CHOICES:
        raise ModelError(f"Unknown dtype '{dtype}'. Choose one of {', '.join(DTYPE_CHOICES)}.")
    if dtype == "auto":
        return torch.bfloat16 if bf16_supported(device) else torch.float32
    return getattr(torch, dtype)


def quantization_config(quant: str, compute_dtype) -> Any:
    """A BitsAndBytesConfig for "8bit"/"4bit" (4-bit: NF4 + double quantization), or None."""
    if quant not in QUANT_CHOICES:
        raise ModelError(f"Unknown quantization '{quant}'. Choose one of {', '.join(QUANT_CHOICES)}.")
    if quant == "none":
        return None
    if importlib.util.find_spec("bitsandbytes") is None:
        raise MissingDependency("bitsandbytes", f"{quant} quantization", install="pip install 'bitsandbytes>=0.50'")
    from transformers import BitsAndBytesConfig  # noqa: PLC0415 - seconds to import; the UI imports this module

    if quant == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                              bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute_dtype)


def offline() -> bool:
    """True when the Hugging Face libraries are told not to download (HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE)."""
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes") or \
        os.environ.get("TRANSFORMERS_OFFLINE", "").lower() in ("1", "true", "yes")


def _not_found(hub_id: str) -> ModelError:
    """One clear sentence for "weights not here and the Hub cannot be reached"."""
    where = "offline mode (HF_HUB_OFFLINE=1)" if offline() else "the Hugging Face Hub is unreachable or refused"
    return ModelError(
        f"Model '{hub_id}' could not be found locally, and it cannot be downloaded: {where}.",
        hint="Download it on a connected machine (huggingface-cli download "
             f"{hub_id}) and copy the folder here, then pass the folder path; gated models "
             "(Llama) also need HF_TOKEN. Offline, use smollm2-135m-instruct or whisper-tiny.en.")


def load_pretrained(kind: str, path: str, *, device: str, dtype, quant: str = "none",
                    name: str = "") -> tuple[Any, Any]:
    """(model, tokenizer or processor) from ``path`` (folder or hub id): Whisper for kind
    "speech", else a causal LM; in ``dtype`` on ``device``, or quantized by bitsandbytes.
    A failed load is a ModelError that says what to do (``name`` is the model as asked for)."""
    from transformers import (  # noqa: PLC0415 - seconds to import; the UI imports this module
        AutoModelForCausalLM,
        AutoProcessor,
        AutoTokenizer,
        WhisperForConditionalGeneration,
    )

    qcfg = quantization_config(quant, dtype)
    loaded_as = load_dtype(dtype, device, qcfg is not None, path)
    kwargs: dict[str, Any] = {"dtype": loaded_as}
    if qcfg is not None:
        kwargs.update(quantization_config=qcfg, device_map={"": device})  # bitsandbytes places weights at load time
    if quant == "8bit":
        # bitsandbytes warns on *every* 8-bit matmul that fp32 inputs are cast to fp16.
        warnings.filterwarnings("ignore", message=r"MatMul8bitLt: inputs will be cast")
    is_local = Path(path).is_dir()
    hub = {} if is_local else {"local_files_only": offline()}
    speech = kind == "speech"
    try:
        processor = (AutoProcessor if speech else AutoTokenizer).from_pretrained(path, **hub)
        model = (WhisperForConditionalGeneration if speech else AutoModelForCausalLM).from_pretrained(
            path, **kwargs, **hub)
    except (OSError, ValueError) as e:
        text = str(e)
        if not is_local and ("offline" in text.lower() or "couldn't connect" in text.lower()
                             or "does not appear to have" in text or "not found" in text.lower()
                             or "connection" in text.lower() or "resolve" in text.lower()
                             or "Repository Not Found" in text or "gated" in text.lower()):
            raise _not_found(path) from e
        raise ModelError(f"Could not load model '{name or path}' from {path}: "
                         f"{text.splitlines()[0] if text else repr(e)}",
                         hint="Check the name (`medtune models list`), or download the model into the "
                              "workspace and give its folder.") from e
    if qcfg is None:
        model = finish_load(model, dtype, loaded_as).to(device)
    if not speech and getattr(processor, "pad_token", None) is None:
        processor.pad_token = processor.eos_token
    return model, processor


def load_model(name_or_path: str, *, quant: str = "none", dtype: str = "auto", device: str = "auto",
               adapter: str | Path | None = None, progress: Progress | None = None) -> LoadedModel:
    """Resolve ``name_or_path`` (registry name, hub id or folder) and load it for inference.

    ``adapter`` is a PEFT folder (``adapter_config.json`` + weights) to attach on top.
    Raises :class:`ModelError` / :class:`MissingDependency` with a message to act on.
    """
    spec = resolve_model(name_or_path)
    if spec.backend == "nemo":
        require_runnable(spec.name, device)  # NeMo installed, and a GPU where the model needs one
        raise ModelError(f"{spec.name} runs through the NeMo backend (engine.nemo), not the transformers loader.")
    dev = pick_device(device)
    torch_dtype = pick_dtype(dtype, dev)
    quantization_config(quant, torch_dtype)  # validate early, before any fetching
    report(progress, 0.0, f"resolving {spec.name}")
    path = model_path(name_or_path, scaled(progress, 0.0, 0.6)) if spec.embedded else spec.source
    report(progress, 0.6, f"loading {spec.name} ({quant}, {str(torch_dtype).replace('torch.', '')}, {dev})")
    model, processor = load_pretrained(spec.kind, path, device=dev, dtype=torch_dtype, quant=quant, name=spec.name)
    adapter_str = None
    if adapter:
        adapter_path = Path(adapter).expanduser()
        if not (adapter_path / "adapter_config.json").is_file():
            raise ModelError(f"{adapter_path}: not a LoRA adapter folder (no adapter_config.json).")
        report(progress, 0.9, f"attaching adapter {adapter_path.name}")
        from peft import PeftModel  # noqa: PLC0415 - seconds to import; the UI imports this module

        try:
            model = PeftModel.from_pretrained(model, str(adapter_path), is_trainable=False).eval()
        except (OSError, ValueError, RuntimeError, KeyError) as e:
            raise ModelError(f"{adapter_path}: cannot attach this adapter to {spec.name} ({e}).",
                             hint="An adapter only fits the base model it was trained on.") from e
        adapter_str = str(adapter_path)
    report(progress, 1.0, f"{spec.name} loaded")
    return LoadedModel(spec=spec, model=model, processor=processor, device=dev, dtype=torch_dtype,
                       quant=quant, path=path, adapter=adapter_str)


_cache_lock = threading.Lock()
_cache: tuple[tuple, LoadedModel] | None = None


def get_cached(name_or_path: str, *, quant: str = "none", dtype: str = "auto", device: str = "auto",
               adapter: str | Path | None = None, progress: Progress | None = None) -> LoadedModel:
    """:func:`load_model` behind a one-slot cache for the UI process: asking for the same model
    again is free, asking for another drops the old one first (one model in memory at a time).
    The lock also serialises loads, so two browser tabs never load twice."""
    global _cache
    key = (str(name_or_path), quant, dtype, device, str(adapter) if adapter else None)
    with _cache_lock:
        if _cache is not None and _cache[0] == key:
            return _cache[1]
        _cache = None  # release the old weights before loading new ones
        gc.collect()
        lm = load_model(name_or_path, quant=quant, dtype=dtype, device=device, adapter=adapter, progress=progress)
        _cache = (key, lm)
        return lm
