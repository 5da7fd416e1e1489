"""What every inference tool shares: errors, devices, reading input lines, length limits.

Input files are UTF-8 text, one input per line; a line ``A ||| B`` is a sentence pair
(Google's ``extract_features.py`` convention). Lines are split on ``\\n`` only, so line
numbers agree with ``wc -l`` and editors.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from bertforge.config import BertConfig
from bertforge.tokenization.io import read_utf8_lines

PAIR_SEPARATOR = " ||| "
HARD_MAX_LENGTH = 512  # BERT's position table; never encode longer even when config allows


class InferenceError(ValueError):
    """Bad input to an inference tool; the message names the file, line or field."""


class TruncationWarning(UserWarning):
    """Inputs longer than the maximum sequence length were cut."""


def resolve_device(name: str | torch.device | None) -> torch.device:
    """``auto`` (or None) -> cuda if available, else cpu; otherwise the named device, checked."""
    if name is None or str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise InferenceError(f"--device {name!r}: not a device name ({err}); use cpu, cuda, "
                             "cuda:N or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InferenceError(f"--device {name}: CUDA is not available in this torch build or "
                             "on this machine; use --device cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise InferenceError(f"--device {name}: MPS is not available; use --device cpu")
    return device


def read_lines(path: str | os.PathLike) -> list[str]:
    """The lines of a UTF-8 text file (no line endings; a final newline adds no line).

    Invalid UTF-8 raises InferenceError naming the file, line and column."""
    return read_utf8_lines(path, InferenceError)


def split_pairs(lines: list[str]) -> tuple[list[str], list[str | None] | None]:
    """``A ||| B`` lines -> (firsts, seconds). ``seconds`` is None when no line is a pair;
    in a mixed file, a line without the separator has None as its second segment."""
    parts = [line.partition(PAIR_SEPARATOR) for line in lines]
    if not any(sep for _, sep, _ in parts):
        return lines, None
    return [a for a, _, _ in parts], [b if sep else None for _, sep, b in parts]


def default_max_length(model_dir: str | os.PathLike | None, config: BertConfig) -> int:
    """The longest input in tokens: sentence-transformers' ``max_seq_length`` when the model
    directory has ``sentence_bert_config.json`` (all-MiniLM-L6-v2: 256), else the position
    table's size (at most 512)."""
    limit = min(config.max_position_embeddings, HARD_MAX_LENGTH)
    if model_dir is not None:
        st_config = Path(model_dir) / "sentence_bert_config.json"
        if st_config.is_file():
            value = _json_field(st_config, "max_seq_length")
            if isinstance(value, int) and value > 0:
                limit = min(limit, value)
    return limit


def check_max_length(max_length: int | None, config: BertConfig, default: int) -> int:
    """Validate ``--max-seq-length`` against the model's position table."""
    if max_length is None:
        return default
    if max_length < 3:
        raise InferenceError(f"--max-seq-length {max_length}: must be at least 3 "
                             "([CLS] text [SEP])")
    if max_length > config.max_position_embeddings:
        raise InferenceError(f"--max-seq-length {max_length}: the model has only "
                             f"{config.max_position_embeddings} positions "
                             "(config.json max_position_embeddings)")
    return max_length


def _json_field(path: Path, name: str) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8")).get(name)
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return None


def warn_truncated(indices: list[int], max_length: int, what: str = "input",
                   names: Sequence[str] | None = None) -> None:
    """One warning listing (the first few of) the inputs that were cut; ``names[i]`` (e.g.
    ``FILE:LINE``) names input i when given, else its number counting from 1."""
    if not indices:
        return
    more = " …" if len(indices) > 8 else ""
    if names is not None:
        where = ", ".join(names[i] for i in indices[:8]) + more
    else:
        where = "numbers " + ", ".join(str(i + 1) for i in indices[:8]) + more + \
            ", counting from 1"
    warnings.warn(f"{len(indices)} {what}(s) longer than {max_length} tokens were truncated "
                  f"({where})", TruncationWarning, stacklevel=3)


def warn_empty(indices: list[int], what: str = "input") -> None:
    """One warning about empty inputs (they are kept, so outputs stay aligned)."""
    if not indices:
        return
    shown = ", ".join(str(i + 1) for i in indices[:8]) + (" …" if len(indices) > 8 else "")
    warnings.warn(f"{len(indices)} empty {what}(s) (numbers {shown}, counting from 1): each "
                  "is encoded as '[CLS] [SEP]' so that outputs stay aligned with inputs",
                  UserWarning, stacklevel=3)
