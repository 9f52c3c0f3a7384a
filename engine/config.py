"""RunConfig: the one typed description of a training run.

It is the single source of defaults, ranges, choices and help text: the Train tab builds
its form from the field metadata, the CLI reads the same YAML, and a run saves the resolved
YAML next to its outputs. A leaf: it checks each field alone (type, range, choices, length);
what needs the registry, the datasets or NeMo (path fields, checks across fields) is
:mod:`engine.preflight`.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import reprlib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from engine.errors import ConfigError

# Caps on the free-text fields (metadata ``max_len``); every str field has one or a choice list.
#: A system prompt is prepended to every training example: 20,000 characters (~5,000 tokens)
#: is far above any real instruction, and an uncapped one (50 MB) grew a job to 4.8 GB.
MAX_PROMPT_CHARS = 20_000
#: Linux's PATH_MAX: a longer model or dataset path cannot name anything on disk.
MAX_PATH_CHARS = 4096
#: A split is a file name in the dataset folder; the same 64 as engine.data.folder.NAME.
MAX_SPLIT_CHARS = 64
#: A comma-separated list of module names: a hundred long names fit in 2,000 characters.
MAX_MODULES_CHARS = 2000
#: The biggest config file read (recipes, run configs). Every capped field of a valid config,
#: even YAML-escaped, stays under 400 KB; a bigger file is refused before it is parsed, so a
#: run whose config.yaml grew huge cannot stall every reader.
MAX_CONFIG_BYTES = 1024 * 1024


def _f(default: Any, help: str, **meta: Any) -> Any:
    """A dataclass field whose metadata carries help/choices/min/max/max_len for form and
    checks, and ``path`` (model, dataset or split) for the fields that name something on disk:
    each such kind has one resolver, :func:`engine.preflight.resolve_ref`."""
    meta["help"] = help
    if isinstance(default, list):
        return field(default_factory=lambda d=default: list(d), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class ModelConfig:
    name: str = _f("smollm2-135m-instruct",
                   "Model: a registry name (see `medtune models list`), a Hugging Face hub id, or a local folder.",
                   path="model", max_len=MAX_PATH_CHARS)
    quantization: str = _f("none", "Load the base weights quantized: none, 8bit, or 4bit (NF4 with double "
                           "quantization = QLoRA). Needs bitsandbytes.", choices=["none", "8bit", "4bit"])
    dtype: str = _f("auto", "Weight dtype when not quantized. auto = float32 on CPU, bfloat16 on a GPU that "
                    "supports it.", choices=["auto", "float32", "bfloat16", "float16"])


@dataclass
class DataConfig:
    dataset: str = _f("med-qa", "A shipped dataset name (med-qa, med-dictation, pubmedqa-synth, ...) or the "
                      "path of a dataset folder in the workspace.", path="dataset", max_len=MAX_PATH_CHARS)
    train_split: str = _f("train", "Split used for training.", path="split", max_len=MAX_SPLIT_CHARS)
    eval_split: str = _f("validation", "Split used for evaluation during training (empty = no evaluation).",
                         path="split", max_len=MAX_SPLIT_CHARS)
    test_split: str = _f("test", "Held-out split for the final evaluation (Evaluate tab).", path="split",
                         max_len=MAX_SPLIT_CHARS)
    max_train_samples: int = _f(0, "Use at most this many training examples (0 = all).", min=0)
    max_eval_samples: int = _f(0, "Use at most this many evaluation examples (0 = all).", min=0)
    system_prompt: str = _f("", "Optional system message added to every chat (text models).",
                            max_len=MAX_PROMPT_CHARS)


@dataclass
class LoraConfig:
    full_finetune: bool = _f(False, "Train every weight instead of a LoRA adapter (needs much more memory; "
                             "not with quantization).")
    r: int = _f(16, "LoRA rank: size of the low-rank update. 8-64 is typical.", min=1, max=1024)
    alpha: float = _f(32.0, "LoRA alpha: scales the update (effective scale alpha/r, or alpha/sqrt(r) "
                      "with rsLoRA). Commonly 2 x r.", min=0.0, exclusive_min=True)
    dropout: float = _f(0.05, "Dropout on the LoRA input, in [0, 1). Speech with a frozen encoder: not on "
                        "the encoder frames that feed the cross-attention keys/values (speed).",
                        min=0.0, max=1.0, exclusive_max=True)
    target_modules: str = _f("auto", "Layers that get LoRA: auto (the model's attention and MLP linear "
                             "layers), all-linear, or a comma-separated list of module names such as "
                             "q_proj,v_proj.", max_len=MAX_MODULES_CHARS)
    bias: str = _f("none", "Which biases to train: none, all, or lora_only.", choices=["none", "all", "lora_only"])
    use_rslora: bool = _f(False, "rsLoRA: scale by alpha/sqrt(r), which keeps high ranks stable.")
    use_dora: bool = _f(False, "DoRA: weight-decomposed LoRA (slower, sometimes better at low rank).")
    encoder_lora: bool = _f(False, "Speech only: also put LoRA on the audio encoder. Off = the encoder is "
                            "frozen and its outputs are computed once per clip and cached (much faster).")


@dataclass
class TrainConfig:
    learning_rate: float = _f(2e-4, "Peak learning rate.", min=0.0, exclusive_min=True, max=1.0)
    scheduler: str = _f("cosine", "Learning-rate schedule after warmup.",
                        choices=["linear", "cosine", "constant", "constant_with_warmup", "polynomial"])
    warmup_ratio: float = _f(0.05, "Fraction of the steps spent warming the learning rate up from 0.",
                             min=0.0, max=0.5)
    epochs: float = _f(1.0, "Passes over the training set (ignored when max_steps > 0).", min=0.0,
                       exclusive_min=True, max=1000.0)
    max_steps: int = _f(0, "Stop after this many optimizer steps (0 = use epochs).", min=0)
    batch_size: int = _f(8, "Examples per device per step.", min=1, max=4096)
    grad_accum: int = _f(1, "Gradient accumulation: optimizer step every N batches (effective batch = "
                         "batch_size x N). Raise it instead of batch_size when memory is short.", min=1, max=1024)
    max_length: int = _f(512, "Longest tokenized example (prompt + response, or transcript); longer ones "
                         "are truncated. Batches are padded only to their longest member.", min=8, max=131072)
    gradient_checkpointing: bool = _f(False, "Recompute activations in the backward pass: less memory, "
                                      "~30% slower.")
    seed: int = _f(42, "Random seed (data order, LoRA init).", min=0, max=2**32 - 1)
    precision: str = _f("auto", "Mixed precision: auto (bf16 on a GPU that supports it, else fp32), fp32, "
                        "bf16 or fp16 (bf16/fp16 need a CUDA GPU).", choices=["auto", "fp32", "bf16", "fp16"])
    device: str = _f("auto", "auto = the CUDA GPU when there is one, else the CPU.", choices=["auto", "cpu", "cuda"])
    logging_steps: int = _f(5, "Write a metrics line every N optimizer steps.", min=1)
    eval_steps: int = _f(50, "Evaluate every N steps (0 = only at the end).", min=0)
    save_steps: int = _f(50, "Save a checkpoint (the resume point) every N steps.", min=1)
    save_total_limit: int = _f(2, "Keep at most this many checkpoints (older ones are deleted).", min=1)
    weight_decay: float = _f(0.0, "AdamW weight decay.", min=0.0, max=1.0)
    max_grad_norm: float = _f(1.0, "Clip gradients to this norm (0 = no clipping).", min=0.0)
    report_to: str = _f("none", "Also report to TensorBoard or Weights & Biases when installed (off by default; "
                        "W&B sends data to a server).", choices=["none", "tensorboard", "wandb"])
    auto_resume: int = _f(0, "After a crash, resume from the last checkpoint up to this many times, waiting "
                          "longer each time (0 = off).", min=0, max=10)


@dataclass
class EvalConfig:
    wer_samples: int = _f(32, "Speech: clips of the eval split transcribed at each evaluation for WER and "
                          "term recall (0 = skip).", min=0)
    max_new_tokens: int = _f(128, "Longest generated answer/transcript during evaluation.", min=1, max=8192)
    eval_at_start: bool = _f(True, "Evaluate the untouched base model first (step 0), so the curves start "
                             "from the baseline.")


#: Slurm names (partition, account): letters, digits and . _ - , (a comma lists several).
_SLURM_NAME = r"[A-Za-z0-9_.,-]*"
#: Slurm's --time forms: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS.
_SLURM_TIME = r"(\d+(:\d{1,2}){0,2}|\d+-\d{1,2}(:\d{1,2}){0,2})?"
#: One extra batch option per line: '#SBATCH --name[=value]', nothing a shell would run
#: (the script is written from what a browser sent, so no quotes, $, backticks, ; | & < >).
SBATCH_LINE = r"#SBATCH --[A-Za-z][A-Za-z0-9-]*(=[A-Za-z0-9_.,:=/@%+-]+)?"


@dataclass
class LaunchConfig:
    where: str = _f("local", "Where the run trains: local = one process on this machine (the default); processes = "
                    "several processes on this machine, one per GPU, started by `accelerate launch`; slurm = a "
                    "batch job on a Slurm cluster (sbatch), which resumes by itself after preemption.",
                    choices=["local", "processes", "slurm"])
    processes: int = _f(2, "processes, slurm: training processes per node, one per GPU (on a CPU each gets its "
                        "share of the cores). The global batch is batch_size x grad_accum x processes x nodes.",
                        min=1, max=64)
    strategy: str = _f("ddp", "How the processes share the work: ddp (each holds the whole model, gradients are "
                       "averaged), fsdp (parameters, gradients and optimizer state sharded across GPUs), zero2 / "
                       "zero3 (DeepSpeed ZeRO stage 2 / 3; needs the deepspeed extra). fsdp and zero need CUDA GPUs.",
                       choices=["ddp", "fsdp", "zero2", "zero3"])
    nodes: int = _f(1, "slurm: nodes to run on.", min=1, max=1024)
    gpus_per_node: int = _f(0, "slurm: GPUs to request per node (--gpus-per-node); 0 = ask for none (a CPU "
                            "partition).", min=0, max=64)
    partition: str = _f("", "slurm: the partition to submit to (empty = the cluster's default).", max_len=128,
                        pattern=_SLURM_NAME, pattern_help="letters, digits and . _ - ,")
    account: str = _f("", "slurm: the account charged (empty = your default).", max_len=128,
                      pattern=_SLURM_NAME, pattern_help="letters, digits and . _ - ,")
    time_limit: str = _f("", "slurm: wall-time limit, e.g. 04:00:00 or 1-00:00:00 (empty = the partition's). "
                         "Before it runs out the job checkpoints and goes back in the queue (with requeue on).",
                         max_len=32, pattern=_SLURM_TIME, pattern_help="MM, HH:MM:SS or D-HH:MM:SS")
    requeue: bool = _f(True, "slurm: when the job is preempted or nears its time limit, checkpoint and go back in "
                       "the queue, then resume from that checkpoint.")
    sbatch_extra: str = _f("", "slurm: extra batch options, one '#SBATCH --option=value' per line (e.g. "
                           "#SBATCH --qos=high). Options only: nothing else is written into the script.",
                           max_len=4000, lines=SBATCH_LINE, pattern_help="#SBATCH --option[=value]")


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    launch: LaunchConfig = field(default_factory=LaunchConfig)

    # ---- (de)serialisation -------------------------------------------------------------
    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)

    def to_yaml(self, header: str = "") -> str:
        body = yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False)
        return (header.rstrip() + "\n" if header else "") + body

    @classmethod
    def from_dict(cls, d: dict | None, *, source: str | None = None) -> "RunConfig":
        """Build from nested dicts; unknown keys and wrong types raise one ConfigError."""
        cfg, problems = cls.parse(d)
        if problems:
            raise ConfigError(problems, source=source)
        return cfg

    @classmethod
    def parse(cls, d: Any) -> tuple["RunConfig", list[str]]:
        """Best-effort build plus the structural problems (unknown keys, wrong types); bad
        values fall back to defaults so range checks can still run on the rest."""
        problems: list[str] = []
        if d is None:
            d = {}
        if not isinstance(d, dict):
            return cls(), [f"top level: expected a mapping of sections ({', '.join(_SECTIONS)})"]
        sections = {name: _build_section(sec, d.get(name) or {}, name, problems) for name, sec in _SECTIONS.items()}
        for key in d:
            if key not in _SECTIONS:
                problems.append(f"{key}: unknown section (expected one of {', '.join(_SECTIONS)})")
        return cls(**sections), problems

    def with_overrides(self, overrides: dict[str, Any]) -> "RunConfig":
        """A copy with dotted-key overrides applied, e.g. {"train.max_steps": 10}."""
        d = self.to_dict()
        for key, value in overrides.items():
            section, _, name = key.partition(".")
            d.setdefault(section, {})[name] = value
        return RunConfig.from_dict(d)

    def field_problems(self) -> list[str]:
        """The problems of each field alone (type, range, choices, length), naming the field;
        :func:`engine.preflight.validate` adds path fields and checks across fields."""
        return [p for s, n, _, v, meta in iter_fields(self) for p in check_field(f"{s}.{n}", v, meta)]

    def with_values(self, values: dict[str, Any]) -> "RunConfig":
        """A copy with ``{"section.field": value}`` set (values already of the field's type)."""
        cfg = copy.deepcopy(self)
        for key, value in values.items():
            section, _, name = key.partition(".")
            setattr(getattr(cfg, section), name, value)
        return cfg


_SECTIONS = {"model": ModelConfig, "data": DataConfig, "lora": LoraConfig, "train": TrainConfig,
             "eval": EvalConfig, "launch": LaunchConfig}


def field_type(section: type, name: str) -> type:
    """The plain Python type (bool/int/float/str) of a section field."""
    hints = typing.get_type_hints(section)
    return hints[name]


def _coerce(value: Any, typ: type, path: str, problems: list[str]) -> Any:
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.strip().lower() in ("true", "yes", "on", "1")
    elif typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
    elif typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                return float(value.strip())
            except ValueError:
                pass
    elif typ is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return ",".join(value)  # target_modules given as a YAML list
    problems.append(f"{path}: expected {_TYPE_WORD[typ]}, got {_short(value)}")
    return None


_TYPE_WORD = {bool: "true/false", int: "an integer", float: "a number", str: "a string"}

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring, _REPR.maxother = 2, 5, 5, 80, 80


def _short(value: Any) -> str:
    """A bounded repr for messages: a YAML alias bomb or a 5 MB string stays a short line."""
    return _REPR.repr(value)


def _build_section(cls: type, raw: Any, name: str, problems: list[str]) -> Any:
    if not isinstance(raw, dict):
        problems.append(f"{name}: expected a mapping, got {_short(raw)}")
        return cls()
    kwargs = {}
    names = {f.name for f in dataclasses.fields(cls)}
    for key, value in raw.items():
        path = f"{name}.{_short(key) if not isinstance(key, str) else key[:80]}"
        if key not in names:
            problems.append(f"{path}: unknown key (known: {', '.join(sorted(names))})")
            continue
        v = _coerce(value, field_type(cls, key), path, problems)
        if v is not None:
            kwargs[key] = v
    return cls(**kwargs)


def check_field(path: str, value: Any, meta: Any) -> list[str]:
    """The problems of one field's value alone, from its metadata (max_len, choices, min/max)."""
    out = []
    if isinstance(value, str) and meta.get("max_len") is not None and len(value) > meta["max_len"]:
        return [f"{path}: must be at most {meta['max_len']:,} characters, got {len(value):,}"]
    if isinstance(value, str) and meta.get("pattern") is not None and not re.fullmatch(meta["pattern"], value):
        return [f"{path}: {_short(value)} is not valid here (expected {meta['pattern_help']})"]
    if isinstance(value, str) and meta.get("lines") is not None:
        bad = [(i, ln) for i, ln in enumerate(value.splitlines(), 1)
               if ln.strip() and not re.fullmatch(meta["lines"], ln.strip())]
        if bad:
            i, ln = bad[0]
            return [f"{path}: line {i}, {_short(ln.strip())}, is not of the form {meta['pattern_help']}"]
    if "choices" in meta and value not in meta["choices"]:
        out.append(f"{path}: must be one of {', '.join(map(str, meta['choices']))}, got {_short(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        return out + [f"{path}: must be a finite number, got {value}"]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        lo, hi = meta.get("min"), meta.get("max")
        if lo is not None and (value <= lo if meta.get("exclusive_min") else value < lo):
            word = "greater than" if meta.get("exclusive_min") else "at least"
            if lo == 0 and meta.get("exclusive_min"):
                out.append(f"{path}: must be positive (> 0), got {value}")
            elif lo == 1 and isinstance(value, int):
                out.append(f"{path}: must be a positive integer, got {value}")
            else:
                out.append(f"{path}: must be {word} {lo}, got {value}")
        if hi is not None and (value >= hi if meta.get("exclusive_max") else value > hi):
            word = "less than" if meta.get("exclusive_max") else "at most"
            out.append(f"{path}: must be {word} {hi}, got {value}")
    return out


# ---- user YAML: recipes, run configs, --set values ------------------------------------------
#: Deepest nesting read from user YAML. A recipe needs three levels (section, key, a list of
#: target modules); PyYAML composes recursively and would hit Python's recursion limit
#: (RecursionError) a few hundred levels down, so deeper input is refused, with its line.
MAX_YAML_DEPTH = 32

_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Refused(yaml.YAMLError):
    """Well-formed YAML that is refused; ``problem_mark`` (when known) says where."""

    def __init__(self, problem: str, mark: Any = None):
        super().__init__(problem)
        self.problem, self.problem_mark = problem, mark


class StrictLoader(yaml.SafeLoader):
    """``yaml.safe_load``'s loader, stricter where plain YAML is silent or crashes: a key set
    twice in one mapping is refused (YAML keeps the last one without a word), nesting deeper
    than :data:`MAX_YAML_DEPTH` is refused, and so is any tag no safe constructor knows
    (``!!python/object/apply:...``), in our words rather than PyYAML's."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise _Refused(f"nested more than {MAX_YAML_DEPTH} levels deep", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_document(self, node: Any) -> Any:
        self._refuse_duplicate_keys(node)
        return super().construct_document(node)

    def _refuse_duplicate_keys(self, root: Any) -> None:
        """Walk the composed document before building it (with a stack, and each node once:
        aliases may make it a graph); the first key set twice, in file order, is refused."""
        stack, seen = [(root, "")], set()
        while stack:
            node, path = stack.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            children = []
            if isinstance(node, yaml.MappingNode):
                first: dict[Any, int] = {}
                for key_node, value_node in node.value:
                    if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
                        children.append((value_node, path))  # merged keys may be overridden, by design
                        continue
                    name = f"{path}.{key_node.value}" if path else key_node.value
                    key = self.construct_object(key_node)  # resolved: 'yes' and 'true' are one key
                    line = key_node.start_mark.line + 1
                    if key in first:
                        raise _Refused(f"{_short_key(name)}: set twice, at line {first[key]} and again at line "
                                       f"{line} (YAML would silently keep the last one); keep one")
                    first[key] = line
                    children.append((value_node, name))
            elif isinstance(node, yaml.SequenceNode):
                children = [(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
            stack.extend(reversed(children))


def _short_key(name: str) -> str:
    return name if len(name) <= 80 else name[:77] + "..."


def _refuse_tag(loader: StrictLoader, node: Any) -> Any:
    tag = node.tag.replace("tag:yaml.org,2002:", "!!")
    raise _Refused(f"the tag '{tag[:80]}' is not allowed: only plain values (text, numbers, true/false, lists, "
                   "mappings) are read, no objects are built", node.start_mark)


StrictLoader.add_constructor(None, _refuse_tag)


def yaml_problem(text: str, *, one_line: bool = False) -> tuple[Any, str | None]:
    """(value, None), or (None, what is wrong) for user YAML read with :class:`StrictLoader`.
    ``one_line``: a ``--set`` value, where a line number means nothing."""
    try:
        return yaml.load(text, Loader=StrictLoader), None  # noqa: S506 - StrictLoader is a SafeLoader
    except _Refused as err:
        mark = err.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None and not one_line else ""
        return None, where + err.problem
    except yaml.YAMLError as err:
        return None, f"not valid YAML{_yaml_where(err)}"
    except RecursionError:  # a backstop: compose_node's depth limit should come first
        return None, "not valid YAML: nested too deeply"


def read_yaml(text: str, *, source: str | None = None) -> Any:
    """User YAML as plain data (see :class:`StrictLoader`); ConfigError naming ``source``."""
    value, problem = yaml_problem(text)
    if problem is not None:
        raise ConfigError([problem], source=source)
    return value


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``--set SECTION.KEY=VALUE`` pairs as ``{"section.key": value}``; each VALUE is read as
    YAML by the recipe loader. One ConfigError lists every bad pair."""
    out: dict[str, Any] = {}
    bad = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        shown = pair if len(pair) <= 80 else pair[:77] + "..."
        if not sep or "." not in key:
            bad.append(f"--set {shown}: expected SECTION.KEY=VALUE")
            continue
        parsed, problem = yaml_problem(value, one_line=True)
        if problem is not None:
            bad.append(f"--set {shown}: {problem}")
            continue
        out[key.strip()] = parsed
    if bad:
        raise ConfigError(bad)
    return out


def load_config(path: str | Path,
                check: Callable[[RunConfig], list[str]] = RunConfig.field_problems) -> RunConfig:
    """Read a YAML run config; ConfigError lists every problem, naming fields. ``check`` finds
    the problems beyond the file's structure: each field alone by default (a run's saved
    config), everything with :func:`engine.preflight.load_config`."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)  # bounded: a huge file is refused unread
    except FileNotFoundError:
        raise ConfigError([f"file not found: {path}"], source=str(path)) from None
    except OSError as e:  # a folder, no permission
        raise ConfigError([f"cannot read the file ({e.strerror or e})"], source=str(path)) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError([f"the file is larger than {MAX_CONFIG_BYTES:,} bytes, the most a config may be "
                           f"(data.system_prompt holds at most {MAX_PROMPT_CHARS:,} characters)"],
                          source=str(path))
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        start = e.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)  # utf-8-sig counts after the BOM
        line = data.count(b"\n", 0, start) + 1
        raise ConfigError([f"not UTF-8 text: byte 0x{data[start]:02x} at byte offset {start} (line {line}) "
                           "is not valid UTF-8; save the file as UTF-8"], source=str(path)) from None
    raw = read_yaml(text, source=str(path))
    if raw is None:
        raise ConfigError(["the file holds no settings (it is empty or only comments); expected sections "
                           f"{', '.join(_SECTIONS)}"], source=str(path))
    cfg, problems = RunConfig.parse(raw)
    problems += check(cfg)
    if problems:
        raise ConfigError(problems, source=str(path))
    return cfg


def _yaml_where(err: yaml.YAMLError) -> str:
    """' at line L, column C: what' from a YAML error (its own text quotes the whole file)."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    what = "; ".join(str(x) for x in (getattr(err, "context", None), getattr(err, "problem", None)) if x)
    if mark is None:
        return f": {what or err}"
    return f" at line {mark.line + 1}, column {mark.column + 1}: {what or 'syntax error'}"


def iter_fields(cfg: RunConfig | None = None):
    """(section, name, type, value-or-default, metadata) for every field, in form order."""
    cfg = cfg or RunConfig()
    for sec in dataclasses.fields(RunConfig):
        cls = _SECTIONS[sec.name]
        obj = getattr(cfg, sec.name)
        for f in dataclasses.fields(cls):
            yield sec.name, f.name, field_type(cls, f.name), getattr(obj, f.name), f.metadata


def diff_configs(configs: dict[str, RunConfig]) -> list[dict[str, Any]]:
    """Rows {field, <name>: value, ...} for the fields whose values differ between configs."""
    flat = {name: {f"{s}.{n}": v for s, n, _, v, _ in iter_fields(c)} for name, c in configs.items()}
    keys = next(iter(flat.values()), {}).keys()
    rows = []
    for k in keys:
        values = [flat[n][k] for n in flat]
        if any(v != values[0] for v in values[1:]):
            rows.append({"field": k, **{n: flat[n][k] for n in flat}})
    return rows
