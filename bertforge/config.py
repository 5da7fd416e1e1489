"""BertConfig: the model's hyper-parameters, with Hugging Face's field names.

Defaults are BERT-base. Presets are named values (``preset("mini")``). The same
config reads and writes Hugging Face's ``config.json`` and Google's
``bert_config.json`` (whose field names are the same, less a few extras).

Stdlib only: nothing here imports torch.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HIDDEN_ACTS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "tanh", "silu")
OBJECTIVES = ("mlm_nsp", "mlm", "mlm_sop", "ltr")
# initial weights of a new model for pre-training (bertforge/model/init.py)
INIT_SCHEMES = ("bert", "local")
PROBLEM_TYPES = ("single_label_classification", "multi_label_classification", "regression")


class ConfigError(ValueError):
    """A config file or value is wrong; the message names the file or field."""


@dataclass
class BertConfig:
    """BERT hyper-parameters. Sizes are counts (tokens, units, layers); defaults are BERT-base."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    # bertforge extras (kept in config.json; transformers ignores unknown keys)
    is_causal: bool = False  # left-to-right attention for the paper's "LTR & No NSP" ablation
    id2label: dict[int, str] | None = None
    problem_type: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.id2label, dict):  # JSON keys are strings: label ids are ints
            try:
                self.id2label = {int(k): str(v) for k, v in self.id2label.items()}
            except (TypeError, ValueError):
                raise ConfigError(f"BertConfig: id2label keys must be label ids (integers), "
                                  f"got {list(self.id2label)!r}") from None
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self, source: str = "BertConfig") -> None:
        """Raise ConfigError naming ``source`` and the field when a value cannot work."""
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{source}: {name} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"{source}: hidden_size ({self.hidden_size}) is not divisible by "
                f"num_attention_heads ({self.num_attention_heads}); pick heads so that "
                f"hidden_size / heads is a whole number (BERT uses 64 per head)")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob",
                     "initializer_range", "layer_norm_eps"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ConfigError(f"{source}: {name} must be a number, got {value!r}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            value = getattr(self, name)
            if not 0.0 <= float(value) < 1.0:
                raise ConfigError(f"{source}: {name} must be in [0, 1), got {value!r}")
        if self.hidden_act not in HIDDEN_ACTS:
            raise ConfigError(f"{source}: hidden_act {self.hidden_act!r} is not one of "
                              f"{HIDDEN_ACTS}")
        if (not isinstance(self.pad_token_id, int) or isinstance(self.pad_token_id, bool)
                or not 0 <= self.pad_token_id < self.vocab_size):
            raise ConfigError(f"{source}: pad_token_id {self.pad_token_id} outside vocab "
                              f"of size {self.vocab_size}")
        if self.initializer_range <= 0 or self.layer_norm_eps <= 0:
            raise ConfigError(f"{source}: initializer_range and layer_norm_eps must be > 0")
        if self.problem_type is not None and self.problem_type not in PROBLEM_TYPES:
            raise ConfigError(f"{source}: problem_type {self.problem_type!r} is not one of "
                              f"{PROBLEM_TYPES} (or null: inferred from the labels)")
        if self.id2label is not None and not isinstance(self.id2label, dict):
            raise ConfigError(f"{source}: id2label must be a mapping of label id -> name, "
                              f"got {type(self.id2label).__name__}")

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def num_labels(self) -> int:
        return len(self.id2label) if self.id2label else 2

    # ------------------------------------------------------------ (de)serialise
    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> BertConfig:
        """Build from a Hugging Face or Google config dict; unknown keys go to ``extra``."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a JSON object, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in data.items() if k in names}
        extra = {k: v for k, v in data.items() if k not in names}
        if known.get("id2label"):
            known["id2label"] = {int(k): str(v) for k, v in known["id2label"].items()}
        elif isinstance(extra.get("num_labels"), int) and extra["num_labels"] > 0:
            # a config that gives only a count: labels named as transformers names them
            known["id2label"] = {i: f"LABEL_{i}" for i in range(extra.pop("num_labels"))}
        try:
            cfg = cls.__new__(cls)
            for f in dataclasses.fields(cls):
                default = (f.default_factory() if f.default_factory is not dataclasses.MISSING
                           else f.default)
                setattr(cfg, f.name, known.get(f.name, default))
            cfg.extra = extra
            cfg.validate(source)
        except TypeError as err:  # e.g. a string where a number belongs
            raise ConfigError(f"{source}: {err}") from None
        return cfg

    def to_dict(self) -> dict[str, Any]:
        """Hugging Face ``config.json`` content (loads in ``transformers.BertConfig``)."""
        out: dict[str, Any] = dict(self.extra)
        for f in dataclasses.fields(self):
            if f.name in ("extra", "id2label", "problem_type", "is_causal"):
                continue
            out[f.name] = getattr(self, f.name)
        out.setdefault("model_type", "bert")
        out.setdefault("architectures", ["BertForPreTraining"])
        out.setdefault("position_embedding_type", "absolute")
        if self.is_causal:
            out["is_causal"] = True
        if self.id2label:
            out["id2label"] = {str(k): v for k, v in self.id2label.items()}
            out["label2id"] = {v: k for k, v in self.id2label.items()}
        if self.problem_type:
            out["problem_type"] = self.problem_type
        return out

    def to_google_dict(self) -> dict[str, Any]:
        """Google's ``bert_config.json`` content (the original 11 fields)."""
        keys = ("attention_probs_dropout_prob", "hidden_act", "hidden_dropout_prob",
                "hidden_size", "initializer_range", "intermediate_size",
                "max_position_embeddings", "num_attention_heads", "num_hidden_layers",
                "type_vocab_size", "vocab_size")
        return {k: getattr(self, k) for k in keys}

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> BertConfig:
        """Read ``config.json`` or ``bert_config.json``; errors name the file."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}: line {err.lineno}: not valid JSON ({err.msg})") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not UTF-8 text; is this really a config file?") from None
        return cls.from_dict(data, source=str(path))

    def save(self, path: str | os.PathLike, google: bool = False) -> None:
        """Write ``config.json`` (or Google's ``bert_config.json`` with ``google=True``)."""
        data = self.to_google_dict() if google else self.to_dict()
        Path(path).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    def replace(self, **changes: Any) -> BertConfig:
        """A copy with ``changes`` applied (and validated). The copy owns its ``extra`` and
        ``id2label`` (changing them leaves this config alone). ``num_labels=K`` (as in
        transformers) stands for ``id2label={0: "LABEL_0", …}`` unless ``id2label`` is given."""
        num_labels = changes.pop("num_labels", None)
        if num_labels is not None and "id2label" not in changes:
            if not isinstance(num_labels, int) or isinstance(num_labels, bool) or num_labels < 1:
                raise ConfigError(f"num_labels must be a positive integer, got {num_labels!r}")
            if num_labels != self.num_labels or self.id2label is None:
                changes["id2label"] = {i: f"LABEL_{i}" for i in range(num_labels)}
        _check_field_names(changes, "BertConfig.replace")
        changes.setdefault("extra", copy.deepcopy(self.extra))
        changes.setdefault("id2label", None if self.id2label is None else dict(self.id2label))
        return dataclasses.replace(self, **changes)


def _check_field_names(values: dict[str, Any], where: str) -> None:
    """ConfigError naming the unknown fields among ``values`` and the known ones."""
    names = [f.name for f in dataclasses.fields(BertConfig)]
    unknown = [k for k in values if k not in names]
    if unknown:
        raise ConfigError(f"{where}: unknown config field(s) {', '.join(map(repr, unknown))}; "
                          f"known fields: {', '.join(names)}, and num_labels")


# ---------------------------------------------------------------------- presets
def _google_grid() -> dict[str, dict[str, int]]:
    """Google's 24 small BERTs (Turc et al. 2019): L in 2..12, H in 128..768, A = H/64."""
    grid = {}
    for layers in (2, 4, 6, 8, 10, 12):
        for hidden in (128, 256, 512, 768):
            grid[f"L-{layers}_H-{hidden}"] = dict(
                num_hidden_layers=layers, hidden_size=hidden,
                num_attention_heads=hidden // 64, intermediate_size=4 * hidden)
    return grid


PRESETS: dict[str, dict[str, int]] = {
    "base": dict(num_hidden_layers=12, hidden_size=768, num_attention_heads=12,
                 intermediate_size=3072),
    "large": dict(num_hidden_layers=24, hidden_size=1024, num_attention_heads=16,
                  intermediate_size=4096),
    **_google_grid(),
}
ALIASES = {"tiny": "L-2_H-128", "mini": "L-4_H-256", "small": "L-4_H-512",
           "medium": "L-8_H-512"}


def preset_names() -> list[str]:
    """Every preset name, aliases first."""
    return [*ALIASES, *PRESETS]


def preset(name: str, **overrides: Any) -> BertConfig:
    """The named preset (``base``, ``tiny``, ``L-4_H-256``…) with ``overrides`` applied."""
    key = ALIASES.get(name, name)
    if key not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(preset_names())}")
    num_labels = overrides.pop("num_labels", None)
    _check_field_names(overrides, f"preset {name!r}")
    config = BertConfig(**{**PRESETS[key], **overrides})
    return config if num_labels is None else config.replace(num_labels=num_labels)


# ------------------------------------------------------------ parameter count
def parameter_breakdown(config: BertConfig, heads: bool = True) -> dict[str, int]:
    """Parameters counted as the paper counts them, from the config alone.

    ``total_parameters`` is encoder + pooler (the paper's 110M / 340M); the pre-training
    heads (MLM transform + output bias, the decoder being tied; NSP) are listed apart.
    """
    v, h, i = config.vocab_size, config.hidden_size, config.intermediate_size
    n = config.num_hidden_layers
    out = {
        "token_embeddings": v * h,
        "position_embeddings": config.max_position_embeddings * h,
        "segment_embeddings": config.type_vocab_size * h,
        "embedding_layer_norm": 2 * h,
        "attention_per_layer": 4 * h * h + 4 * h,
        "feed_forward_per_layer": 2 * h * i + i + h,
        "layer_norms_per_layer": 4 * h,
        "layers": n,
        "pooler": h * h + h,
    }
    per_layer = (out["attention_per_layer"] + out["feed_forward_per_layer"]
                 + out["layer_norms_per_layer"])
    out["encoder_layers_total"] = n * per_layer
    embeddings = sum(out[k] for k in ("token_embeddings", "position_embeddings",
                                      "segment_embeddings", "embedding_layer_norm"))
    out["embeddings_total"] = embeddings
    out["total_parameters"] = embeddings + out["encoder_layers_total"] + out["pooler"]
    if heads:
        out["mlm_head"] = h * h + h + 2 * h + v  # transform + LayerNorm + output bias
        out["nsp_head"] = 2 * h + 2
        out["total_with_pretraining_heads"] = (out["total_parameters"] + out["mlm_head"]
                                               + out["nsp_head"])
    return out
