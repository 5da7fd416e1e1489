"""Sentence embeddings: pool the last layer over real tokens, optionally L2-normalise.

``cls`` takes the [CLS] token's last hidden state, ``mean`` averages the real tokens (the
sentence-transformers recipe of all-MiniLM-L6-v2), ``max`` takes the per-feature maximum.

Legend: N = inputs, B = batch size, S = tokens, H = hidden size.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from bertforge.inference.batching import (
    as_list,
    check_pairs,
    chunks,
    encode_inputs,
    iter_batches,
    progress_bar,
)
from bertforge.inference.common import (
    InferenceError,
    check_max_length,
    default_max_length,
    resolve_device,
    warn_empty,
    warn_truncated,
)
from bertforge.interop.checkpoint import Checkpoint, load_state, read_checkpoint
from bertforge.model import BertModel
from bertforge.tokenization import BertTokenizer, load_tokenizer

POOLINGS = ("cls", "mean", "max")
OUTPUT_FORMATS = (".npy", ".safetensors", ".jsonl")


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """[B, S, H] hidden states and [B, S] mask (1 = real token) -> [B, H]."""
    if pooling == "cls":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # [B, S, 1]
    if pooling == "mean":
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
    if pooling == "max":
        return hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).amax(1)
    raise InferenceError(f"--pooling {pooling!r}: choose one of {', '.join(POOLINGS)}")


def sentence_transformers_defaults(model_dir: str | os.PathLike) -> tuple[str | None, bool]:
    """(pooling, normalize) declared by a sentence-transformers directory (``modules.json``,
    ``1_Pooling/config.json``); (None, False) for a plain BERT directory."""
    folder = Path(model_dir)
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None, False
    pooling, normalize = None, False
    for module in modules if isinstance(modules, list) else []:
        kind = str(module.get("type", ""))
        if kind.endswith("Normalize"):
            normalize = True
        elif kind.endswith("Pooling"):
            pooling = _pooling_mode(folder / str(module.get("path", "")) / "config.json")
    return pooling, normalize


def _pooling_mode(path: Path) -> str | None:
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    for mode, key in (("mean", "pooling_mode_mean_tokens"), ("cls", "pooling_mode_cls_token"),
                      ("max", "pooling_mode_max_tokens")):
        if cfg.get(key):
            return mode
    return None


class Embedder:
    """Text -> [N, H] float32 sentence embeddings, in input order.

    >>> emb = Embedder.from_pretrained("all-MiniLM-L6-v2/")    # doctest: +SKIP
    >>> vectors = emb(["A man is eating food."])                # [1, 384]
    """

    def __init__(self, model: BertModel, tokenizer: BertTokenizer, max_length: int,
                 pooling: str = "mean", normalize: bool = False,
                 device: torch.device | None = None) -> None:
        if pooling not in POOLINGS:
            raise InferenceError(f"pooling {pooling!r}: choose one of {', '.join(POOLINGS)}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.pooling = pooling
        self.normalize = normalize
        self.device = device or next(model.parameters()).device

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, pooling: str | None = None,
                        normalize: bool | None = None, device: str | None = "cpu",
                        max_length: int | None = None) -> Embedder:
        """Load a model directory. ``pooling``/``normalize`` None: what a sentence-transformers
        directory declares, else mean pooling without normalisation."""
        dev = resolve_device(device)
        model = load_encoder(path, add_pooler=False).to(dev)
        st_pooling, st_normalize = sentence_transformers_defaults(path)
        limit = check_max_length(max_length, model.config, default_max_length(path, model.config))
        return cls(model, load_tokenizer(path), limit, pooling or st_pooling or "mean",
                   st_normalize if normalize is None else normalize, dev)

    @property
    def dimension(self) -> int:
        return self.model.config.hidden_size

    def __call__(self, texts: str | Iterable[str], batch_size: int = 32,
                 progress: bool | None = None) -> np.ndarray:
        """[N, H] float32 embeddings, row i for input i."""
        return self.encode(texts, batch_size=batch_size, progress=progress)

    def encode(self, texts: str | Iterable[str], pairs: str | Iterable[str] | None = None,
               batch_size: int = 32, progress: bool | None = None) -> np.ndarray:
        """[N, H] float32 embeddings of ``texts`` (or of ``text [SEP] pair`` inputs; one
        pair per text, a single string being one)."""
        texts = as_list(texts)
        pairs = check_pairs(texts, pairs)
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for start, block in self.iter_encode(texts, pairs, batch_size, progress):
            out[start:start + len(block)] = block
        return out

    def iter_encode(self, texts: str | Iterable[str], pairs: str | Iterable[str] | None = None,
                    batch_size: int = 32, progress: bool | None = None
                    ) -> Iterator[tuple[int, np.ndarray]]:
        """(start, [n, H] block) pieces in input order, so that huge inputs can stream."""
        texts = as_list(texts)
        pairs = check_pairs(texts, pairs)
        warn_empty([i for i, t in enumerate(texts) if not t.strip()])
        bar = progress_bar(len(texts), "embed", progress)
        truncated: list[int] = []
        try:
            for part in chunks(len(texts)):
                block, cut = self._encode_chunk(texts[part.start:part.stop],
                                                None if pairs is None else
                                                pairs[part.start:part.stop], batch_size, bar)
                truncated += [part.start + i for i in cut]
                yield part.start, block
        finally:
            bar.close()
        warn_truncated(truncated, self.max_length)

    @torch.inference_mode()
    def _encode_chunk(self, texts: list[str], pairs: list[str] | None, batch_size: int,
                      bar: tqdm) -> tuple[np.ndarray, list[int]]:
        encodings, truncated = encode_inputs(self.tokenizer, texts, pairs, self.max_length)
        out = torch.empty(len(texts), self.dimension, dtype=torch.float32)
        for batch in iter_batches(encodings, batch_size, self.tokenizer.pad_id, self.device):
            hidden = self.model(batch.input_ids, batch.token_type_ids,
                                batch.attention_mask).last_hidden_state  # [B, S, H]
            vectors = pool(hidden, batch.attention_mask, self.pooling).float()
            if self.normalize:
                vectors = F.normalize(vectors, dim=-1)
            out[batch.indices] = vectors.cpu()
            bar.update(len(batch.indices))
        return out.numpy(), truncated


def load_encoder(path: str | os.PathLike, add_pooler: bool = True) -> BertModel:
    """The encoder of any checkpoint directory (pre-training, task or bare), in eval mode;
    heads are ignored. Weights the checkpoint lacks are an error, not random."""
    return encoder_from_checkpoint(read_checkpoint(path), add_pooler)


def encoder_from_checkpoint(ckpt: Checkpoint, add_pooler: bool = True) -> BertModel:
    """The encoder of a checkpoint read into memory; without a pooler when ``add_pooler`` is
    False or the checkpoint has none (BertForMaskedLM saves none)."""
    pooled = add_pooler and any(k.startswith("bert.pooler.") for k in ckpt.state)
    model = BertModel(ckpt.config, add_pooler=pooled)
    load_state(model, ckpt, strict=True)
    return model.eval()


# ------------------------------------------------------------------ writing
def check_output_path(path: str | os.PathLike) -> Path:
    """The output file, its format known from the suffix."""
    out = Path(path)
    if out.suffix not in OUTPUT_FORMATS:
        raise InferenceError(f"--out {out}: unknown format '{out.suffix}'; use a name ending "
                             f"in {', '.join(OUTPUT_FORMATS)}")
    if out.parent and not out.parent.exists():
        raise FileNotFoundError(f"--out {out}: directory {out.parent} does not exist")
    return out


def write_embeddings(path: str | os.PathLike, embeddings: np.ndarray,
                     texts: list[str] | None = None, metadata: dict | None = None) -> Path:
    """Write [N, H] embeddings as ``.npy``, ``.safetensors`` (tensor ``embeddings`` plus
    string metadata) or ``.jsonl`` (``{"index", "text", "embedding"}`` per line)."""
    out = check_output_path(path)
    if out.suffix == ".npy":
        np.save(out, embeddings)
    elif out.suffix == ".safetensors":
        from safetensors.numpy import save_file
        meta = {k: str(v) for k, v in (metadata or {}).items()}
        save_file({"embeddings": np.ascontiguousarray(embeddings)}, str(out), metadata=meta)
    else:
        with open(out, "w", encoding="utf-8") as fh:
            for i, row in enumerate(embeddings):
                record = {"index": i, "embedding": row.tolist()}
                if texts is not None:
                    record["text"] = texts[i]
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    return out
