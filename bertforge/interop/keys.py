"""Checkpoint name tables, one per format (DESIGN rule 7: the mapping is data).

Our canonical names are those of ``BertForPreTraining`` (``bert.*`` for the encoder,
``mlm.*``, ``nsp.*`` for the heads, ``head.*`` for task heads). ``{}`` stands for a layer
index. A value of ``None`` marks a key that the other format has and we drop.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

# ours -> Hugging Face transformers (BertForPreTraining / BertFor* naming)
HF_KEYS: dict[str, str] = {
    "bert.embeddings.word_embeddings.weight": "bert.embeddings.word_embeddings.weight",
    "bert.embeddings.position_embeddings.weight": "bert.embeddings.position_embeddings.weight",
    "bert.embeddings.token_type_embeddings.weight":
        "bert.embeddings.token_type_embeddings.weight",
    "bert.embeddings.norm.weight": "bert.embeddings.LayerNorm.weight",
    "bert.embeddings.norm.bias": "bert.embeddings.LayerNorm.bias",
    **{f"bert.layers.{{}}.attn.{ours}.{p}": f"bert.encoder.layer.{{}}.attention.{hf}.{p}"
       for ours, hf in (("q", "self.query"), ("k", "self.key"), ("v", "self.value"),
                        ("o", "output.dense"))
       for p in ("weight", "bias")},
    **{f"bert.layers.{{}}.{ours}.{p}": f"bert.encoder.layer.{{}}.{hf}.{p}"
       for ours, hf in (("attn_norm", "attention.output.LayerNorm"),
                        ("ffn.up", "intermediate.dense"), ("ffn.down", "output.dense"),
                        ("ffn_norm", "output.LayerNorm"))
       for p in ("weight", "bias")},
    "bert.pooler.dense.weight": "bert.pooler.dense.weight",
    "bert.pooler.dense.bias": "bert.pooler.dense.bias",
    "mlm.dense.weight": "cls.predictions.transform.dense.weight",
    "mlm.dense.bias": "cls.predictions.transform.dense.bias",
    "mlm.norm.weight": "cls.predictions.transform.LayerNorm.weight",
    "mlm.norm.bias": "cls.predictions.transform.LayerNorm.bias",
    "mlm.bias": "cls.predictions.bias",
    "nsp.weight": "cls.seq_relationship.weight",
    "nsp.bias": "cls.seq_relationship.bias",
    # task heads (sequence/token classification, question answering, multiple choice)
    "head.classifier.weight": "classifier.weight",
    "head.classifier.bias": "classifier.bias",
    "head.qa.weight": "qa_outputs.weight",
    "head.qa.bias": "qa_outputs.bias",
}
# Hugging Face keys we drop: the decoder is tied to the word embeddings (and its bias to
# cls.predictions.bias); position_ids is a buffer that old versions saved.
HF_DROPPED = ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias",
              "bert.embeddings.position_ids")
# Old PyTorch BERT ports named LayerNorm parameters gamma/beta.
HF_LEGACY_SUFFIXES = {".gamma": ".weight", ".beta": ".bias"}

# ours -> Google's TensorFlow names. Dense kernels are stored [in, out] (transposed);
# cls/seq_relationship/output_weights is stored [2, H] like ours (not transposed).
GOOGLE_KEYS: dict[str, str] = {
    "bert.embeddings.word_embeddings.weight": "bert/embeddings/word_embeddings",
    "bert.embeddings.position_embeddings.weight": "bert/embeddings/position_embeddings",
    "bert.embeddings.token_type_embeddings.weight": "bert/embeddings/token_type_embeddings",
    "bert.embeddings.norm.weight": "bert/embeddings/LayerNorm/gamma",
    "bert.embeddings.norm.bias": "bert/embeddings/LayerNorm/beta",
    **{f"bert.layers.{{}}.{ours}.{p}": f"bert/encoder/layer_{{}}/{g}/{gp}"
       for ours, g in (("attn.q", "attention/self/query"), ("attn.k", "attention/self/key"),
                       ("attn.v", "attention/self/value"), ("attn.o", "attention/output/dense"),
                       ("ffn.up", "intermediate/dense"), ("ffn.down", "output/dense"))
       for p, gp in (("weight", "kernel"), ("bias", "bias"))},
    **{f"bert.layers.{{}}.{ours}.{p}": f"bert/encoder/layer_{{}}/{g}/LayerNorm/{gp}"
       for ours, g in (("attn_norm", "attention/output"), ("ffn_norm", "output"))
       for p, gp in (("weight", "gamma"), ("bias", "beta"))},
    "bert.pooler.dense.weight": "bert/pooler/dense/kernel",
    "bert.pooler.dense.bias": "bert/pooler/dense/bias",
    "mlm.dense.weight": "cls/predictions/transform/dense/kernel",
    "mlm.dense.bias": "cls/predictions/transform/dense/bias",
    "mlm.norm.weight": "cls/predictions/transform/LayerNorm/gamma",
    "mlm.norm.bias": "cls/predictions/transform/LayerNorm/beta",
    "mlm.bias": "cls/predictions/output_bias",
    "nsp.weight": "cls/seq_relationship/output_weights",
    "nsp.bias": "cls/seq_relationship/output_bias",
    "head.classifier.weight": "output_weights",  # run_classifier.py's head, [labels, H]
    "head.classifier.bias": "output_bias",
    "head.qa.weight": "cls/squad/output_weights",  # run_squad.py's head, [2, H]
    "head.qa.bias": "cls/squad/output_bias",
}
# Google variables we drop: optimiser slots and the step counter.
GOOGLE_DROPPED_PATTERNS = (r".*/adam_[mv]$", r"^global_step$", r".*/Adam(_1)?$")


def google_is_transposed(google_name: str) -> bool:
    """Dense kernels are [in, out] in TensorFlow and [out, in] in torch."""
    return google_name.endswith("/kernel")


class KeyTable:
    """A templated name table applied in either direction."""

    def __init__(self, table: Mapping[str, str]) -> None:
        self.forward = _compile(table)
        self.backward = _compile({v: k for k, v in table.items()})

    def to_theirs(self, key: str) -> str | None:
        return _apply(self.forward, key)

    def to_ours(self, key: str) -> str | None:
        return _apply(self.backward, key)


def _compile(table: Mapping[str, str]) -> list[tuple[re.Pattern[str], str]]:
    out = []
    for src, dst in table.items():
        pattern = re.compile("^" + re.escape(src).replace(r"\{\}", r"(\d+)") + "$")
        out.append((pattern, dst))
    return out


def _apply(compiled: list[tuple[re.Pattern[str], str]], key: str) -> str | None:
    for pattern, dst in compiled:
        match = pattern.match(key)
        if match:
            return dst.format(*match.groups())
    return None


HF_TABLE = KeyTable(HF_KEYS)
GOOGLE_TABLE = KeyTable(GOOGLE_KEYS)


def is_dropped(key: str, patterns: Iterable[str]) -> bool:
    return any(re.match(p, key) for p in patterns)
