"""Feature extraction (the paper's feature-based approach, section 5.3): per-token hidden
states of chosen layers, as Google's ``extract_features.py`` writes them or in a compact
binary form for large inputs.

Layer indices follow Google: they count the L encoder layers (the embedding output is not
one of them), ``-1`` is the last layer, ``0`` the first. ``combine`` merges the chosen
layers per token: ``none`` keeps them apart [T, K, H], ``concat`` [T, K*H], ``sum`` and
``mean`` [T, H].

Legend: T = tokens of one input (with [CLS]/[SEP]), K = chosen layers, H = hidden size,
B = batch size, S = padded length.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from bertforge.inference.batching import (
    as_list,
    check_pairs,
    chunks,
    encode_inputs,
    iter_batches,
)
from bertforge.inference.common import (
    InferenceError,
    check_max_length,
    default_max_length,
    resolve_device,
    split_pairs,
    warn_empty,
    warn_truncated,
)
from bertforge.inference.embed import load_encoder
from bertforge.model import BertModel
from bertforge.tokenization import BertTokenizer, load_tokenizer

COMBINES = ("none", "concat", "sum", "mean")
INDEX_FORMAT = "bertforge-features/1"


@dataclass
class TokenFeatures:
    """The features of one input: ``values`` is [T, K, H] (combine none) or [T, D]."""

    index: int
    tokens: list[str]
    values: np.ndarray


def parse_layers(spec: str | Sequence[int], num_layers: int) -> list[int]:
    """``"-1,-2,-3,-4"`` or ``"all"`` -> Google-style layer indices, checked against L."""
    if isinstance(spec, str):
        if spec.strip() == "all":
            return list(range(-1, -num_layers - 1, -1))
        try:
            layers = [int(part) for part in spec.split(",") if part.strip()]
        except ValueError:
            raise InferenceError(f"--layers {spec!r}: expected comma-separated integers such "
                                 "as -1,-2,-3,-4, or 'all'") from None
    else:
        layers = [int(x) for x in spec]
    if not layers:
        raise InferenceError("--layers: no layer given; e.g. --layers -1,-2,-3,-4")
    for layer in layers:
        if not -num_layers <= layer < num_layers:
            raise InferenceError(f"--layers: layer {layer} does not exist in a {num_layers}-"
                                 f"layer model; use -{num_layers}..-1 or 0..{num_layers - 1}")
    return layers


def hidden_state_index(layer: int, num_layers: int) -> int:
    """Google's encoder-layer index -> position in ``hidden_states`` (embeddings first)."""
    return layer + 1 if layer >= 0 else num_layers + 1 + layer


def combine_layers(stack: torch.Tensor, combine: str) -> torch.Tensor:
    """[K, ..., H] chosen layers -> [..., K, H] (none), [..., K*H] (concat) or [..., H]."""
    if combine == "none":
        return stack.movedim(0, -2)
    if combine == "concat":
        return torch.cat(list(stack), dim=-1)
    if combine == "sum":
        return stack.sum(0)
    if combine == "mean":
        return stack.mean(0)
    raise InferenceError(f"--combine {combine!r}: choose one of {', '.join(COMBINES)}")


class FeatureExtractor:
    """Per-token features of chosen layers, in input order.

    >>> fx = FeatureExtractor.from_pretrained("bert-base-uncased/")         # doctest: +SKIP
    >>> next(fx.extract(["Hello world ||| Bye"], layers="-1,-2")).values.shape  # [T, 2, H]
    """

    def __init__(self, model: BertModel, tokenizer: BertTokenizer, max_length: int,
                 device: torch.device | None = None) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.device = device or next(model.parameters()).device

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str | None = "cpu",
                        max_length: int | None = None) -> FeatureExtractor:
        dev = resolve_device(device)
        model = load_encoder(path, add_pooler=False).to(dev)
        limit = check_max_length(max_length, model.config, default_max_length(path, model.config))
        return cls(model, load_tokenizer(path), limit, dev)

    @property
    def num_layers(self) -> int:
        return self.model.config.num_hidden_layers

    def feature_width(self, layers: Sequence[int], combine: str) -> tuple[int, ...]:
        """Trailing shape of one token's features: (K, H), (K*H,) or (H,)."""
        h, k = self.model.config.hidden_size, len(layers)
        return {"none": (k, h), "concat": (k * h,)}.get(combine, (h,))

    def token_counts(self, texts: list[str], pairs: list[str] | None) -> list[int]:
        """Tokens per input after truncation, [CLS]/[SEP] included (a cheap first pass)."""
        counts: list[int] = []
        for part in chunks(len(texts)):
            encodings, _ = encode_inputs(self.tokenizer, texts[part.start:part.stop],
                                         None if pairs is None else pairs[part.start:part.stop],
                                         self.max_length)
            counts += [len(e) for e in encodings]
        return counts

    def __call__(self, texts: str | Iterable[str], pairs: str | Iterable[str] | None = None,
                 layers: str | Sequence[int] = "-1,-2,-3,-4", combine: str = "none",
                 batch_size: int = 32) -> list[TokenFeatures]:
        """Every input's :class:`TokenFeatures` as a list (``extract`` streams them)."""
        return list(self.extract(texts, pairs, layers, combine, batch_size))

    def extract(self, texts: str | Iterable[str], pairs: str | Iterable[str] | None = None,
                layers: str | Sequence[int] = "-1,-2,-3,-4", combine: str = "none",
                batch_size: int = 32, chunk_size: int = 256, progress: tqdm | None = None
                ) -> Iterator[TokenFeatures]:
        """One :class:`TokenFeatures` per input, in input order; without ``pairs``, a text
        ``A ||| B`` is a sentence pair (Google's convention). Inputs are sorted by
        length within windows of ``chunk_size`` (which bounds the memory held)."""
        texts = as_list(texts)
        texts, pairs = split_pairs(texts) if pairs is None else (texts, check_pairs(texts, pairs))
        chosen = parse_layers(layers, self.num_layers)
        if combine not in COMBINES:
            raise InferenceError(f"--combine {combine!r}: choose one of {', '.join(COMBINES)}")
        # empty: nothing in either segment (` ||| B` is a pair with an empty first one)
        warn_empty([i for i, t in enumerate(texts) if not t.strip()
                    and (pairs is None or not (pairs[i] or "").strip())])
        truncated: list[int] = []
        for part in chunks(len(texts), chunk_size):
            sub_pairs = None if pairs is None else pairs[part.start:part.stop]
            found, cut = self._extract_chunk(texts[part.start:part.stop], sub_pairs, chosen,
                                             combine, batch_size, progress)
            truncated += [part.start + i for i in cut]
            for i, (tokens, values) in enumerate(found):
                yield TokenFeatures(part.start + i, tokens, values)
        warn_truncated(truncated, self.max_length)

    @torch.inference_mode()
    def _extract_chunk(self, texts: list[str], pairs: list[str] | None, layers: list[int],
                       combine: str, batch_size: int, progress: tqdm | None
                       ) -> tuple[list[tuple[list[str], np.ndarray]], list[int]]:
        encodings, truncated = encode_inputs(self.tokenizer, texts, pairs, self.max_length)
        picks = [hidden_state_index(k, self.num_layers) for k in layers]
        found: list = [None] * len(texts)
        for batch in iter_batches(encodings, batch_size, self.tokenizer.pad_id, self.device):
            out = self.model(batch.input_ids, batch.token_type_ids, batch.attention_mask,
                             output_hidden_states=True)
            stack = torch.stack([out.hidden_states[p] for p in picks])  # [K, B, S, H]
            merged = combine_layers(stack, combine).float().cpu().numpy()  # [B, S, ...]
            for row, i in enumerate(batch.indices):
                n = len(encodings[i])
                found[i] = (encodings[i].tokens, merged[row, :n])
            if progress is not None:
                progress.update(len(batch.indices))
        return found, truncated


# ------------------------------------------------------------------ writing
def google_record(features: TokenFeatures, layers: Sequence[int], combine: str) -> dict:
    """The ``extract_features.py`` JSON object of one input (values rounded to 6 places).
    With ``combine`` other than none, each token has one entry whose ``index`` is the list
    of combined layers and whose ``combine`` names the operation."""
    values = np.round(features.values.astype(np.float64), 6)
    out = []
    for t, token in enumerate(features.tokens):
        if combine == "none":
            entries = [{"index": layer, "values": values[t, j].tolist()}
                       for j, layer in enumerate(layers)]
        else:
            entries = [{"index": list(layers), "combine": combine, "values": values[t].tolist()}]
        out.append({"token": token, "layers": entries})
    return {"linex_index": features.index, "features": out}


def write_jsonl(path: str | os.PathLike, stream: Iterable[TokenFeatures],
                layers: Sequence[int], combine: str) -> int:
    """Google's JSONL, one object per input line; returns the number of lines written."""
    n = 0
    with open(path, "w", encoding="utf-8") as fh:
        for features in stream:
            fh.write(json.dumps(google_record(features, layers, combine),
                                ensure_ascii=False) + "\n")
            n += 1
    return n


def index_path(path: str | os.PathLike) -> Path:
    """``features.npy`` -> ``features.index.json``."""
    path = Path(path)
    return path.with_name(path.stem + ".index.json")


def write_binary(path: str | os.PathLike, stream: Iterable[TokenFeatures], counts: list[int],
                 width: tuple[int, ...], layers: Sequence[int], combine: str,
                 dtype: str = "float32", model: str = "") -> Path:
    """All tokens' features in one memory-mapped ``.npy`` [total tokens, *width], written as
    they come, plus ``<name>.index.json``: per input its ``start``/``end`` rows and tokens."""
    starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.dtype(dtype),
                                      shape=(int(starts[-1]), *width))
    tokens: list[list[str]] = [[] for _ in counts]
    for features in stream:
        i = features.index
        array[starts[i]:starts[i + 1]] = features.values
        tokens[i] = features.tokens
    array.flush()
    del array
    index = {"format": INDEX_FORMAT, "features": Path(path).name, "model": model,
             "layers": list(layers), "combine": combine, "dtype": dtype,
             "shape": [int(starts[-1]), *width],
             "lines": [{"linex_index": i, "start": int(starts[i]), "end": int(starts[i + 1]),
                        "tokens": tokens[i]} for i in range(len(counts))]}
    out = index_path(path)
    out.write_text(json.dumps(index, ensure_ascii=False) + "\n", encoding="utf-8")
    return out


def read_binary(path: str | os.PathLike) -> tuple[np.ndarray, dict]:
    """(memory-mapped features [total tokens, ...], index) of a ``write_binary`` output.
    Line i's features are ``array[lines[i]["start"]:lines[i]["end"]]``."""
    idx_file = index_path(path)
    if not idx_file.is_file():
        raise FileNotFoundError(f"{idx_file}: the index of {path} is missing")
    index = json.loads(idx_file.read_text(encoding="utf-8"))
    if index.get("format") != INDEX_FORMAT:
        raise InferenceError(f"{idx_file}: not a {INDEX_FORMAT} index")
    return np.load(path, mmap_mode="r"), index
