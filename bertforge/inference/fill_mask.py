"""Fill-mask: the masked-LM head's top-k tokens and probabilities at every [MASK].

The head runs only at the masked positions (M of them in a batch), never over the whole
sequence. Legend: B = batch, S = tokens, H = hidden size, M = masks in the batch,
V = vocabulary size, K = top-k.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import torch

from bertforge.inference.batching import (
    Batch,
    as_list,
    encode_inputs,
    iter_batches,
)
from bertforge.inference.common import (
    InferenceError,
    check_max_length,
    default_max_length,
    resolve_device,
    warn_truncated,
)
from bertforge.inference.embed import encoder_from_checkpoint
from bertforge.interop.checkpoint import Checkpoint, CheckpointError, read_checkpoint
from bertforge.model import BertModel
from bertforge.model.heads import MLMHead
from bertforge.tokenization import BertTokenizer, Encoding, load_tokenizer

MASK = "[MASK]"


@dataclass
class MaskPrediction:
    """One candidate for one [MASK]: ``score`` is its softmax probability over the
    vocabulary; ``sequence`` is the input with this [MASK] filled in (decoded)."""

    token: str
    token_id: int
    score: float
    sequence: str

    def to_dict(self) -> dict:
        return asdict(self)


def has_mlm_head(ckpt: Checkpoint) -> bool:
    """Whether the checkpoint carries masked-LM head weights (``mlm.*``)."""
    return any(key.startswith("mlm.") for key in ckpt.state)


def load_mlm(path: str | os.PathLike) -> tuple[BertModel, MLMHead]:
    """The encoder and the masked-LM head of a checkpoint directory, in eval mode; a clear
    error when the directory has no MLM head (e.g. a sentence-embedding model)."""
    ckpt = read_checkpoint(path)
    return encoder_from_checkpoint(ckpt, add_pooler=False), mlm_head_from_checkpoint(ckpt)


def mlm_head_from_checkpoint(ckpt: Checkpoint) -> MLMHead:
    """The masked-LM head of a checkpoint read into memory, in eval mode."""
    if not has_mlm_head(ckpt):
        raise CheckpointError(
            f"{ckpt.source}: this checkpoint has no masked-LM head (no cls.predictions.* / "
            "mlm.* weights), so it cannot fill masks; use a pre-training checkpoint "
            "(BertForPreTraining or BertForMaskedLM)")
    head = MLMHead(ckpt.config)
    state = {k.removeprefix("mlm."): v for k, v in ckpt.state.items() if k.startswith("mlm.")}
    try:
        head.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"{ckpt.source}: the masked-LM head does not fit config.json "
                              f"({err})") from None
    return head.eval()


class FillMask:
    """Predict the tokens hidden behind [MASK].

    >>> fill = FillMask.from_pretrained("my-bert/")                     # doctest: +SKIP
    >>> fill("The capital of France is [MASK].", top_k=3)[0][0][0].token
    """

    def __init__(self, encoder: BertModel, head: MLMHead, tokenizer: BertTokenizer,
                 max_length: int, device: torch.device | None = None) -> None:
        self.encoder = encoder.eval()
        self.head = head.eval()
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.device = device or next(encoder.parameters()).device
        self.mask_id = tokenizer.mask_id

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str | None = "cpu",
                        max_length: int | None = None) -> FillMask:
        dev = resolve_device(device)
        encoder, head = load_mlm(path)
        limit = check_max_length(max_length, encoder.config,
                                 default_max_length(path, encoder.config))
        return cls(encoder.to(dev), head.to(dev), load_tokenizer(path), limit, dev)

    def __call__(self, texts: str | Iterable[str], top_k: int = 5, batch_size: int = 32,
                 names: Sequence[str] | None = None) -> list[list[list[MaskPrediction]]]:
        """For each text, for each [MASK] (left to right), the ``top_k`` best candidates.
        ``names[i]`` (e.g. ``FILE:LINE``) names text i in errors and warnings; by default
        "input i", counting from 1."""
        texts = as_list(texts)
        if names is not None and len(names) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(names)} names")
        names = names if names is not None else [f"input {i + 1}" for i in range(len(texts))]
        if not 1 <= top_k <= self.tokenizer.vocab_size:
            raise InferenceError(f"top_k {top_k}: must be between 1 and the vocabulary size "
                                 f"({self.tokenizer.vocab_size})")
        encodings, truncated = encode_inputs(self.tokenizer, texts, None, self.max_length)
        self._check_masks(texts, encodings, truncated, names)
        warn_truncated(truncated, self.max_length, names=names)
        results: list[list[list[MaskPrediction]]] = [[] for _ in texts]
        with torch.inference_mode():
            for batch in iter_batches(encodings, batch_size, self.tokenizer.pad_id, self.device):
                for row, preds in self._predict(batch, top_k).items():
                    results[batch.indices[row]] = preds
        return results

    def _check_masks(self, texts: list[str], encodings: list[Encoding],
                     truncated: list[int], names: Sequence[str]) -> None:
        for i, (text, enc) in enumerate(zip(texts, encodings, strict=True)):
            if self.mask_id in enc.ids:
                continue
            if MASK in text and i in truncated:
                raise InferenceError(f"{names[i]}: its [MASK] lies beyond the first "
                                     f"{self.max_length} tokens and was cut off; shorten it")
            raise InferenceError(f"{names[i]}: no {MASK} token in {_clip(text)!r}; write "
                                 f"{MASK} where a word should be predicted")

    def _predict(self, batch: Batch, top_k: int) -> dict[int, list[list[MaskPrediction]]]:
        """Run one batch; {row: per-mask candidate lists}."""
        hidden = self.encoder(batch.input_ids, batch.token_type_ids,
                              batch.attention_mask).last_hidden_state  # [B, S, H]
        where = batch.input_ids == self.mask_id  # [B, S]
        logits = self.head(hidden[where], self.encoder.embeddings.word_embeddings.weight)
        probs = logits.float().softmax(-1)  # [M, V]
        scores, ids = probs.topk(top_k, dim=-1)  # [M, K]
        rows, cols = where.nonzero(as_tuple=True)  # M row / column pairs, row-major order
        out: dict[int, list[list[MaskPrediction]]] = {}
        for m, (row, col) in enumerate(zip(rows.tolist(), cols.tolist(), strict=True)):
            seq = batch.input_ids[row, :int(batch.lengths[row])].tolist()
            out.setdefault(row, []).append(
                self._candidates(seq, col, ids[m].tolist(), scores[m].tolist()))
        return out

    def _candidates(self, seq: list[int], col: int, ids: list[int], scores: list[float]
                    ) -> list[MaskPrediction]:
        tokens = self.tokenizer.convert_ids_to_tokens(ids)
        out = []
        for token, token_id, score in zip(tokens, ids, scores, strict=True):
            filled = seq[:col] + [token_id] + seq[col + 1:]
            out.append(MaskPrediction(token, token_id, score, self._decode(filled)))
        return out

    def _decode(self, ids: list[int]) -> str:
        """The text of ``ids`` without [CLS], [SEP], [PAD] and [UNK], but with the other
        [MASK]s of the input kept (as transformers' fill-mask shows them): dropping them
        would turn "I [MASK] you [MASK] much" into "I love you much"."""
        drop = self.tokenizer.special_ids() - {self.mask_id}
        return self.tokenizer.decode([i for i in ids if i not in drop],
                                     skip_special_tokens=False)


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
