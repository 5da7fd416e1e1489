"""Reading and writing checkpoints: Hugging Face directories and Google TF checkpoints.

Everything goes through one canonical state dict named as ``BertForPreTraining``'s
parameters (``bert.*``, ``mlm.*``, ``nsp.*``, ``head.*``); the per-format key tables in
``keys.py`` translate names. Weights are never unpickled: safetensors, or
``torch.load(weights_only=True)`` for ``pytorch_model.bin``. A legacy ``pytorch_model.bin``
that also holds the training script's data (``argparse.Namespace``, numpy scalars) loads
only with ``allow_pickle=True`` (``bertforge convert --allow-pickle``): still weights-only,
with exactly those data classes allowed, and a warning (``UnsafeLoadWarning``). A file
holding anything else (a whole pickled module, code) is refused, naming what it holds.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from bertforge.config import BertConfig, ConfigError
from bertforge.interop.keys import (
    GOOGLE_DROPPED_PATTERNS,
    GOOGLE_TABLE,
    HF_DROPPED,
    HF_LEGACY_SUFFIXES,
    HF_TABLE,
    google_is_transposed,
    is_dropped,
)
from bertforge.model.bert import BertModel
from bertforge.model.heads import MLMHead

M = TypeVar("M", bound=nn.Module)
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable or does not fit the model; names the file."""


class UnsafeLoadWarning(UserWarning):
    """A legacy pickled file was loaded on request, with data classes beyond tensors
    allowed (still torch's weights-only unpickler: no code from the file runs)."""


@dataclass
class Checkpoint:
    """A checkpoint read into memory: config, canonical state dict, where it came from."""

    config: BertConfig
    state: dict[str, torch.Tensor]
    source: str
    format: str  # "hf" or "google"
    unexpected: list[str] = field(default_factory=list)


# ------------------------------------------------------------------ reading
def read_checkpoint(path: str | os.PathLike, allow_pickle: bool = False) -> Checkpoint:
    """Read a Hugging Face-shaped or Google TF checkpoint directory into canonical names.

    ``allow_pickle``: load a legacy ``pytorch_model.bin`` that the weights-only loader
    refuses because it also holds training-script data (``legacy_data_classes()``), with
    an ``UnsafeLoadWarning``; files holding other objects stay refused. Loading stays
    weights-only either way: no code from the file runs.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: not a directory; a checkpoint is a directory with "
                              "config.json + model.safetensors (or Google's bert_config.json "
                              "+ bert_model.ckpt.*)")
    if (folder / "config.json").is_file() and any((folder / w).is_file() for w in WEIGHT_FILES):
        return _read_hf(folder, allow_pickle)
    if any(folder.glob("*.ckpt*.index")) or any(folder.glob("*.index")):
        return _read_google(folder)
    if (folder / "config.json").is_file():
        raise CheckpointError(f"{folder}: config.json found but no weights "
                              f"(looked for {', '.join(WEIGHT_FILES)})")
    raise CheckpointError(f"{folder}: no checkpoint found (looked for config.json with "
                          f"{' / '.join(WEIGHT_FILES)}, or a Google bert_model.ckpt.index)")


def _read_hf(folder: Path, allow_pickle: bool = False) -> Checkpoint:
    config = BertConfig.from_json_file(folder / "config.json")
    raw = _load_hf_tensors(folder, allow_pickle)
    state, unexpected = hf_to_canonical(raw)
    return Checkpoint(config, state, str(folder), "hf", unexpected)


def _load_hf_tensors(folder: Path, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    if (folder / "model.safetensors").is_file():
        return _load_safetensors(folder / "model.safetensors")
    if (folder / "model.safetensors.index.json").is_file():
        index_path = folder / "model.safetensors.index.json"
        try:
            shards = sorted(set(json.loads(index_path.read_text())["weight_map"].values()))
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise CheckpointError(f"{index_path}: malformed shard index ({err})") from None
        out: dict[str, torch.Tensor] = {}
        for shard in shards:
            out.update(_load_safetensors(folder / shard))
        return out
    path = folder / "pytorch_model.bin"
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle errors come in many types
        if allow_pickle:
            return _unpickle_legacy(path, err)
        raise CheckpointError(f"{path}: cannot be read as a weights-only torch file "
                              f"({_one_line(err)}). "
                              "bertforge loads tensors only by default; if the file also holds "
                              "its training script's data (argparse.Namespace, numpy scalars), "
                              "'bertforge convert --allow-pickle' turns it into safetensors"
                              ) from None


def _one_line(err: Exception) -> str:
    """The gist of torch.load's (long, multi-line, colored) weights-only refusal."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
    found = re.search(r"WeightsUnpickler error:\s*([^\n]*)", text)
    line = found.group(1) if found else (text.strip().splitlines() or ["empty or cut short"])[0]
    line = line.split(" was not an allowed global")[0]
    return f"{type(err).__name__}: {line[:160]}"


def legacy_data_classes() -> list[Any]:
    """The data-only classes old training scripts saved beside their weights (the run's
    ``argparse.Namespace``, numpy scalars such as the best score), allowed for
    ``allow_pickle``. torch's weights-only unpickler builds them from plain values; none
    of them runs code from the file. Older numpy wrote its scalars under ``numpy.core``."""
    import argparse

    core = getattr(np, "_core", None) or np.core
    dtypes = [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")]
    return [argparse.Namespace, np.dtype, *dtypes, core.multiarray.scalar,
            (core.multiarray.scalar, "numpy.core.multiarray.scalar")]


def _unpickle_legacy(path: Path, refused: Exception) -> dict[str, torch.Tensor]:
    """The tensors of a legacy ``pytorch_model.bin`` (a state dict, or a dict with a
    ``state_dict`` entry) that the plain weights-only loader ``refused``: loaded again
    weights-only with ``legacy_data_classes`` allowed, with a warning. Anything else the
    file holds (a pickled module, arbitrary objects) is refused, named."""
    try:
        with torch.serialization.safe_globals(legacy_data_classes()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated file, a class outside the allowlist, ...
        try:
            held = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:  # not even readable as a torch file
            held = []
        allowed = {c[1] if isinstance(c, tuple) else f"{c.__module__}.{c.__qualname__}"
                   for c in legacy_data_classes()}
        other = sorted(g for g in held if g not in allowed)
        more = f" and {len(other) - 4} more" if len(other) > 4 else ""
        what = f"it holds {', '.join(other[:4])}{more}" if other else _one_line(err)
        raise CheckpointError(f"{path}: cannot be loaded even with --allow-pickle ({what}); "
                              "bertforge never runs a file's pickled code. Load it with the "
                              "code that wrote it and save its state_dict (safetensors)"
                              ) from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    tensors = ({str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
               if isinstance(obj, dict) else {})
    if not tensors:
        raise CheckpointError(f"{path}: unpickled a {type(obj).__name__} holding no tensors; "
                              "expected a state dict of weights")
    warnings.warn(f"{path}: not loadable as tensors alone ({type(refused).__name__}); "
                  "unpickling it as asked (allow_pickle / --allow-pickle), weights-only with "
                  "the training script's data classes allowed (argparse.Namespace, numpy "
                  "scalars); no code from the file runs. Use the safetensors copy from now on",
                  UnsafeLoadWarning, stacklevel=5)
    return tensors


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors file, perhaps truncated or "
                              f"corrupted ({err}); re-copy or re-save it") from None


def hf_to_canonical(raw: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Hugging Face names -> ours. Returns the state and the keys no table knows."""
    renamed = {}
    for key, value in raw.items():
        for old, new in HF_LEGACY_SUFFIXES.items():
            if key.endswith(old):
                key = key[: -len(old)] + new
        renamed[key] = value
    if not any(k.startswith("bert.") for k in renamed):  # a bare BertModel
        renamed = {f"bert.{k}": v for k, v in renamed.items()}
    state, unexpected = {}, []
    for key, value in renamed.items():
        ours = HF_TABLE.to_ours(key)
        if ours is not None:
            state[ours] = value
        elif key not in HF_DROPPED:
            unexpected.append(key)
    return state, unexpected


def _read_google(folder: Path) -> Checkpoint:
    from bertforge.interop.tf_bundle import read_checkpoint as read_bundle

    config_path = folder / "bert_config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{folder}: Google checkpoint without bert_config.json")
    config = BertConfig.from_json_file(config_path)
    arrays = read_bundle(folder)
    state, unexpected = google_to_canonical(arrays)
    return Checkpoint(config, state, str(folder), "google", unexpected)


def google_to_canonical(arrays: dict[str, np.ndarray]
                        ) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Google TF variable names -> ours (kernels transposed; Adam slots dropped)."""
    state, unexpected = {}, []
    for name, array in arrays.items():
        if is_dropped(name, GOOGLE_DROPPED_PATTERNS):
            continue
        ours = GOOGLE_TABLE.to_ours(name)
        if ours is None:
            unexpected.append(name)
            continue
        tensor = torch.from_numpy(np.ascontiguousarray(array)).float()
        state[ours] = tensor.t().contiguous() if google_is_transposed(name) else tensor
    return state, unexpected


# ------------------------------------------------------------------ loading
def canonical_prefix(model: nn.Module) -> str:
    """A bare BertModel's keys lack the ``bert.`` that canonical names carry."""
    return "bert." if isinstance(model, BertModel) else ""


def load_state(model: nn.Module, ckpt: Checkpoint, strict: bool = False) -> list[str]:
    """Copy the checkpoint into ``model``; returns the model keys the checkpoint lacked."""
    prefix = canonical_prefix(model)
    own = model.state_dict()
    missing = []
    with torch.no_grad():
        for key, target in own.items():
            source = ckpt.state.get(prefix + key)
            if source is None:
                missing.append(key)
                continue
            if tuple(source.shape) != tuple(target.shape):
                raise CheckpointError(
                    f"{ckpt.source}: tensor {prefix + key} has shape {list(source.shape)} but "
                    f"the model built from its config needs {list(target.shape)}"
                    + _shape_hint(key))
            target.copy_(source.to(target.dtype))
    if missing and strict:
        raise CheckpointError(f"{ckpt.source}: missing weights for {', '.join(missing[:8])}")
    if missing:
        warnings.warn(f"{ckpt.source}: {len(missing)} weights not in the checkpoint were "
                      f"initialised at random: {', '.join(missing[:6])}"
                      + (" …" if len(missing) > 6 else ""), stacklevel=3)
    return missing


def _shape_hint(key: str) -> str:
    if "word_embeddings" in key:
        return ("; config.json's vocab_size disagrees with the embedding matrix: fix "
                "vocab_size or use the matching config")
    return "; the config does not describe these weights"


def load_pretrained(cls: type[M], path: str | os.PathLike, strict: bool = False,
                    **overrides: Any) -> M:
    """Build ``cls`` from a checkpoint directory, in eval mode (config overrides, e.g.
    dropout, allowed)."""
    ckpt = read_checkpoint(path)
    config = ckpt.config.replace(**overrides) if overrides else ckpt.config
    _check_vocab_file(Path(path), config)
    model = cls(config)
    # which weights are new (a task head): fine-tuning initialises them again from its seed
    model.new_weights = tuple(load_state(model, ckpt, strict=strict))
    return model.eval()  # as transformers does; training code calls .train()


def _check_vocab_file(folder: Path, config: BertConfig) -> None:
    vocab = folder / "vocab.txt"
    if vocab.is_file():
        with open(vocab, "rb") as fh:
            lines = sum(1 for _ in fh)
        if lines > config.vocab_size:
            raise CheckpointError(
                f"{vocab}: {lines} tokens but the model's vocab_size is {config.vocab_size}: "
                "ids past the embedding matrix would crash; use the vocabulary the model "
                "was trained with")


# ------------------------------------------------------------------ writing
TASK_MODELS = ("BertForSequenceClassification", "BertForTokenClassification",
               "BertForQuestionAnswering", "BertForMultipleChoice")


def model_for(ckpt: Checkpoint) -> nn.Module:
    """A model that holds every tensor of ``ckpt``: the task model config.json names when
    the checkpoint has its head; BertForPreTraining (masked-LM + NSP heads); a masked-LM
    model (MLM head only, as transformers' BertForMaskedLM saves); else the encoder, with
    a pooler only when the checkpoint has one."""
    from bertforge.model import task_heads
    from bertforge.model.heads import BertForPreTraining

    keys = ckpt.state.keys()
    archs = ckpt.config.extra.get("architectures") or []
    task = next((a for a in archs if a in TASK_MODELS), None)
    if task is not None and any(k.startswith("head.") for k in keys):
        return getattr(task_heads, task)(ckpt.config)
    has_mlm = any(k.startswith("mlm.") for k in keys)
    has_nsp = any(k.startswith("nsp.") for k in keys)
    has_pooler = any(k.startswith("bert.pooler.") for k in keys)
    if has_mlm and has_nsp:
        return BertForPreTraining(ckpt.config)
    if has_mlm:
        return MaskedLM(ckpt.config, add_pooler=has_pooler)
    return BertModel(ckpt.config, add_pooler=has_pooler)


class MaskedLM(nn.Module):
    """The encoder and the masked-LM head alone, saved as transformers' BertForMaskedLM
    (``bert.*`` + ``cls.predictions.*``). Only a container for conversion: it has no
    forward (``FillMask`` runs such checkpoints)."""

    hf_architecture = "BertForMaskedLM"

    def __init__(self, config: BertConfig, add_pooler: bool = False) -> None:
        super().__init__()
        self.config = config
        self.bert = BertModel(config, add_pooler=add_pooler)
        self.mlm = MLMHead(config)


def to_hf_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights under Hugging Face's names (bare BertModel keys for BertModel)."""
    prefix = canonical_prefix(model)
    out = {}
    for key, value in model.state_dict().items():
        theirs = HF_TABLE.to_theirs(prefix + key)
        if theirs is None:
            raise CheckpointError(f"no Hugging Face name for parameter {key}")
        if prefix and theirs.startswith(prefix):
            theirs = theirs[len(prefix):]
        out[theirs] = value.detach().contiguous().cpu()
    return out


def architecture(model: nn.Module) -> str:
    """The transformers class name that loads what we save."""
    return getattr(model, "hf_architecture", type(model).__name__)


def save_pretrained(model: nn.Module, path: str | os.PathLike, tokenizer: Any = None) -> None:
    """Write ``config.json`` and ``model.safetensors`` (atomically), plus the tokenizer."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    config: BertConfig = model.config
    data = config.to_dict()
    data["architectures"] = [architecture(model)]
    _write_atomic(out / "config.json",
                  lambda p: p.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n"))
    state = to_hf_state(model)
    _write_atomic(out / "model.safetensors",
                  lambda p: save_file(state, str(p), metadata={"format": "pt"}))
    if tokenizer is not None:
        tokenizer.save(out)


def save_google(model: nn.Module, path: str | os.PathLike, tokenizer: Any = None) -> Path:
    """Write Google's TensorFlow layout, as in the BERT releases: ``bert_config.json``
    (Google's 11 fields), ``bert_model.ckpt.index`` + ``.data-00000-of-00001`` (Google's
    variable names, kernels [in, out]) and the vocabulary. What ``run_classifier.py``,
    ``run_squad.py`` and ``run_pretraining.py`` load with ``--init_checkpoint``, and what
    ``from_pretrained`` reads back. Returns the checkpoint prefix.

    Google's code fixes what its config cannot say: LayerNorm epsilon 1e-12, learned
    absolute positions, and "gelu" computed by the tanh form (Hugging Face and bertforge
    read "gelu" as the exact erf form; the two differ by under 1e-3)."""
    from bertforge.interop.tf_writer import write_checkpoint

    config: BertConfig = model.config
    if abs(config.layer_norm_eps - 1e-12) > 1e-15 or config.hidden_act not in (
            "gelu", "gelu_new", "gelu_pytorch_tanh", "relu"):
        warnings.warn(f"Google's BERT code runs LayerNorm epsilon 1e-12 and gelu; this model "
                      f"has {config.layer_norm_eps:g} and {config.hidden_act}: its outputs "
                      "there will differ", stacklevel=2)
    prefix = canonical_prefix(model)
    arrays = {}
    for key, value in model.state_dict().items():
        name = GOOGLE_TABLE.to_theirs(prefix + key)
        if name is None:
            raise CheckpointError(f"no Google TensorFlow name for parameter {key} "
                                  f"({architecture(model)}); Google's code has no such layer")
        tensor = value.detach().float().cpu()
        arrays[name] = (tensor.t() if google_is_transposed(name) else tensor).contiguous().numpy()
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    write_checkpoint(out / "bert_model.ckpt", arrays)
    data = config.to_google_dict()
    if data["hidden_act"] in ("gelu_new", "gelu_pytorch_tanh"):
        data["hidden_act"] = "gelu"  # Google's name for the tanh form
    _write_atomic(out / "bert_config.json",
                  lambda p: p.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n"))
    if tokenizer is not None:
        tokenizer.save(out)
    return out / "bert_model.ckpt"


def _write_atomic(final: Path, write: Any) -> None:
    tmp = final.with_name(f".{final.name}.tmp")
    write(tmp)
    os.replace(tmp, final)


def config_from(path: str | os.PathLike) -> BertConfig:
    """The config of a checkpoint directory (``config.json`` or ``bert_config.json``)."""
    folder = Path(path)
    for name in ("config.json", "bert_config.json"):
        if (folder / name).is_file():
            return BertConfig.from_json_file(folder / name)
    raise ConfigError(f"{folder}: no config.json or bert_config.json")
