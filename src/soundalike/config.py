"""Typed configuration: YAML files mapped onto dataclasses, with dotted command-line overrides.

A config file has the sections `data`, `model`, `train` and optionally `sparsity` plus a few top-level keys. The `model` section
names its family (`family: <name>`) beside that family's own fields, and is read into the family's config
dataclass (`soundalike.models.FAMILIES`), which validates it. Unknown keys and values of the wrong type are
`UserError`s that name the key. `--set train.batch_size=32` overrides any field; the value is parsed as YAML
(a list is `[2,4]`) and checked against the field's type.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .emphasis import check_coefficient
from .errors import UserError
from .models import FAMILIES, FAMILY_NAMES, ModelConfig, heads
from .sparsity import SparsityConfig


@dataclass
class DataConfig:
    path: str = "data/demo/dataset"  # a folder written by `soundalike slice`
    quantization: str = "mulaw"  # linear | mulaw
    q_levels: int = 256
    pre_emphasis: float = 0.0  # y[n] = x[n] - a*x[n-1] before quantizing, undone on output; 0: off (emphasis.py)


@dataclass
class TrainConfig:
    batch_size: int = 128
    seq_len: int = 1024  # TBPTT subsequence length in samples
    lr: float = 1e-3
    warmup_steps: int = 0
    # The last decay_steps updates before max_steps lower the LR on a half cosine from lr to lr * decay_to (a
    # warmup-stable-decay schedule: a run can go on at a constant LR, then anneal at the end); 0: constant.
    decay_steps: int = 0
    decay_to: float = 0.0
    grad_clip: float = 1.0
    # Training on inputs as free running may see them (LPCNet adds noise to its inputs for this): each window's
    # input samples are moved by Gaussian noise whose standard deviation, drawn per window from
    # [0, input_noise], is in levels of a 256-level scale (times q_levels / 256); the targets stay clean. 0: off.
    input_noise: float = 0.0
    # With model.level_input: each chunk a stream takes is played 0 to level_augment dB quieter (uniform, one
    # gain per chunk), and told so, so that the level input carries news the audio so far does not; 0: off.
    level_augment: float = 0.0
    # Polyak averaging: the checkpoints, validation, previews and renders use an exponential moving average of
    # the weights with this decay (about the last 1 / (1 - ema) steps; averaging.py); 0: off.
    ema: float = 0.0
    max_steps: int = 0  # 0: no limit
    max_time: str = ""  # e.g. "3d", "12h", "90m", "600s"; empty: no limit
    max_cpu_time: str = ""  # the same, in CPU time of this process (all its threads): fair budgets on a shared machine
    seed: int = 0
    log_every: int = 50
    val_every: int = 1000  # also writes checkpoints `latest` and `best`
    val_batch_size: int = 64
    ckpt_every: int = 5000  # numbered checkpoints step-N, the last `keep_last` kept
    keep_last: int = 3
    sample_count: int = 2  # clips rendered at each validation
    sample_seconds: float = 2.0
    sample_temperature: float = 1.0
    sample_min_p: float = 0.0  # min-p floor of the preview clips (render --min-p); 0: off
    keep_snapshots: int = 20  # weights-only snapshots of the preview steps kept (0: all); favourites never pruned
    threads: int = 0  # CPU threads for torch; 0: all cores
    amp: bool = True  # bf16 autocast on CUDA


@dataclass
class Config:
    name: str = ""  # run folder name under run_root; default: the config file's stem
    run_root: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=FAMILIES[FAMILY_NAMES[0]].config)
    train: TrainConfig = field(default_factory=TrainConfig)
    sparsity: SparsityConfig = field(default_factory=SparsityConfig)  # pruning while training (sparsity.py)

    def to_dict(self) -> dict:
        """Plain sections, as a config file writes them: `model` starts with its `family`."""
        d = dataclasses.asdict(self)
        d["model"] = {"family": self.model.family, **d["model"]}
        return d

    def digest(self) -> str:
        """Short hash of the model and data sections (what a checkpoint's weights depend on)."""
        d = self.to_dict()
        blob = json.dumps({"data": d["data"], "model": d["model"]}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:8]


def _check_value(key: str, tp: Any, value: Any) -> Any:
    """Return `value` converted to type `tp`, or raise UserError naming `key`."""
    origin = typing.get_origin(tp)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise UserError(f"{key}: expected a list, got {value!r}")
        return [_check_value(f"{key}[{i}]", item_tp, v) for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(tp):
            try:
                return _check_value(key, option, value)
            except UserError as e:
                errors.append(str(e))
        raise UserError(errors[0])
    if tp is type(None):
        if value is not None:
            raise UserError(f"{key}: expected null, got {value!r}")
        return None
    if tp is bool:
        if not isinstance(value, bool):
            raise UserError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 3e-4 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise UserError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise UserError(f"{key}: expected a string, got {value!r}")
        return value
    raise AssertionError(f"unsupported config type {tp} for {key}")


def from_dict(cls: type, data: Any, prefix: str = "", known: tuple[str, ...] = (), what: str = "") -> Any:
    """Build dataclass `cls` from a nested dict, rejecting unknown keys and wrong types. `known`: keys the
    caller has already taken out of `data`, named in errors; `what`: what the keys are known for."""
    if not isinstance(data, dict):
        raise UserError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in fields:
            raise UserError(f"{full}: unknown key{what} (known: {', '.join([*known, *fields])})")
        tp = hints[key]
        if tp is ModelConfig:
            kwargs[key] = model_from_dict(value, f"{full}.")
        elif dataclasses.is_dataclass(tp):
            kwargs[key] = from_dict(tp, value, f"{full}.")
        else:
            kwargs[key] = _check_value(full, tp, value)
    return cls(**kwargs)


def model_from_dict(data: Any, prefix: str = "model.") -> ModelConfig:
    """The `model` section: `family` (default: the first registered) picks the dataclass of the other keys."""
    if not isinstance(data, dict):
        raise UserError(f"{prefix.rstrip('.')}: expected a mapping, got {data!r}")
    data = dict(data)
    name = data.pop("family", FAMILY_NAMES[0])
    if not isinstance(name, str) or name not in FAMILIES:
        raise UserError(f"{prefix}family: unknown family {name!r} (known: {', '.join(FAMILY_NAMES)})")
    return from_dict(FAMILIES[name].config, data, prefix, ("family",), f" for family {name}")


_OVERRIDE = re.compile(r"^([A-Za-z_][\w.]*)=(.*)$", re.DOTALL)


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply `section.key=value` strings to a raw config dict (values parsed as YAML)."""
    for item in overrides:
        m = _OVERRIDE.match(item)
        if not m:
            raise UserError(f"--set {item!r}: expected KEY=VALUE, e.g. train.batch_size=32")
        key, text = m.groups()
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError as e:
            raise UserError(f"--set {key}: cannot parse value {text!r}: {e.problem}") from None
        node = raw
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"--set {key}: {part} is not a section")
        node[parts[-1]] = value
    return raw


def load_config(path: str | Path | None, overrides: list[str] = ()) -> Config:
    """Read a YAML config (or start from defaults if `path` is None), apply overrides, validate."""
    raw: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: config file not found")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            raise UserError(f"{path}: not valid YAML{where}: {getattr(e, 'problem', None) or e}") from None
        if not isinstance(raw, dict):
            raise UserError(f"{path}: expected a mapping of sections (data, model, train)")
    raw = apply_overrides(raw, list(overrides))
    cfg = from_dict(Config, raw)
    if not cfg.name:
        cfg.name = path.stem if path is not None else "default"
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Cross-field checks that types alone cannot express."""
    t = cfg.train
    cfg.model.validate(t.seq_len)
    cfg.sparsity.validate()
    for key in ("batch_size", "val_batch_size", "log_every", "val_every", "ckpt_every", "keep_last"):
        if getattr(t, key) < 1:
            raise UserError(f"train.{key}: must be positive, got {getattr(t, key)}")
    for key in ("warmup_steps", "decay_steps", "max_steps", "seed", "sample_count", "threads", "keep_snapshots"):
        if getattr(t, key) < 0:
            raise UserError(f"train.{key}: must not be negative, got {getattr(t, key)}")
    for key in ("lr", "grad_clip", "sample_temperature"):
        if not getattr(t, key) > 0:
            raise UserError(f"train.{key}: must be positive, got {getattr(t, key)}")
    if not 0 <= t.sample_min_p < 1:
        raise UserError(f"train.sample_min_p: must be at least 0 and below 1, got {t.sample_min_p}")
    if not 0 <= t.input_noise <= 64:
        raise UserError(f"train.input_noise: must be between 0 and 64 levels, got {t.input_noise}")
    if not 0 <= t.level_augment <= 40:
        raise UserError(f"train.level_augment: must be between 0 and 40 dB, got {t.level_augment}")
    if t.level_augment and not getattr(cfg.model, "level_input", False):
        raise UserError("train.level_augment: needs model.level_input: true (a model told the gain it is played at)")
    if t.decay_steps and not t.max_steps >= t.decay_steps:
        raise UserError(f"train.decay_steps: the decay ends at train.max_steps, which must be set and at least "
                        f"{t.decay_steps}, got {t.max_steps}")
    if not 0 <= t.decay_to <= 1:
        raise UserError(f"train.decay_to: a fraction of train.lr, must be between 0 and 1, got {t.decay_to}")
    if not 0 <= t.ema < 1:
        raise UserError(f"train.ema: must be at least 0 (0: off) and below 1, got {t.ema}")
    if t.sample_seconds < 0:
        raise UserError(f"train.sample_seconds: must not be negative, got {t.sample_seconds}")
    if t.seed >= 2**63:
        raise UserError(f"train.seed: must be below 2**63, got {t.seed}")
    d = cfg.data
    if d.quantization not in ("linear", "mulaw"):
        raise UserError(f"data.quantization: expected linear or mulaw, got {d.quantization!r}")
    if not 2 <= d.q_levels <= 65536:
        raise UserError(f"data.q_levels: must be between 2 and 65536, got {d.q_levels}")
    heads.check(cfg.model.output, cfg.model.mixtures, d.q_levels)
    check_coefficient(d.pre_emphasis, "data.pre_emphasis")
    if not d.path:
        raise UserError("data.path: must name a dataset folder")
    if not cfg.run_root:
        raise UserError("run_root: must name a folder")
    if not re.fullmatch(r"[\w .-]+", cfg.name) or cfg.name.strip(" .") == "":
        raise UserError(f"name: {cfg.name!r} must be a plain folder name (letters, digits, '.', '-', '_')")
    parse_duration(t.max_time, "train.max_time")
    parse_duration(t.max_cpu_time, "train.max_cpu_time")


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, key: str = "duration") -> float | None:
    """'3d' / '12h' / '90m' / '600s' / '600' -> seconds; '' -> None."""
    if not text:
        return None
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smhd]?)\s*", text)
    if not m:
        raise UserError(f"{key}: expected a duration like 3d, 12h, 90m or 600s, got {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML, atomically."""
    from .atomic import write_text

    write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
