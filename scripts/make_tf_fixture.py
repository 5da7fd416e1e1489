"""Generate, once, a tiny BERT checkpoint in Google's exact TensorFlow format for the tests.

Writes into ``tests/fixtures/google_tiny/``:

- ``bert_model.ckpt.index`` and ``bert_model.ckpt.data-00000-of-00001``: written by
  TensorFlow's own ``SaveV2`` op (the op ``tf.compat.v1.train.Saver`` runs), so the bytes are
  exactly TF's tensor-bundle V2 format;
- ``bert_config.json``: Google's 11 fields, keys sorted as in Google's releases;
- ``vocab.txt``: a small consistent vocabulary (``vocab_size`` equals its line count);
- ``expected.safetensors``: the same arrays keyed by the TF variable names (float32, and
  ``global_step`` as int64), so tests can check the reader without TensorFlow.

The variables carry Google's names and shapes (kernels ``[in, out]``; ``cls/seq_relationship/
output_weights`` is ``[2, H]``, not transposed), the ``adam_m``/``adam_v`` slots of every
variable and an int64 ``global_step``, as a real pre-training checkpoint has. Values are random
normal (std 0.2, LayerNorm gammas around 1) from a fixed seed, so a missed transpose shows.

TensorFlow is used only here, from a throwaway virtualenv outside the repository; bertforge
never depends on it. To regenerate, from the repository root::

    python3 -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu numpy safetensors
    /tmp/tfenv/bin/python scripts/make_tf_fixture.py

(made with tensorflow-cpu 2.21.0, numpy 2.4.6, safetensors 0.8.0, Python 3.11). Pass
``--out DIR`` to write elsewhere.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

SEED = 20181031  # the day Google released BERT
STD = 0.2
PREFIX_NAME = "bert_model.ckpt"
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "google_tiny"

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = (
    "the a an and or of to in on at is was are be it he she they we you i this that with for "
    "from by not but as his her their my cat dog sat mat ran play read book bank river money "
    "walk talk happy sad good bad big small"
).split()
PIECES = ["##s", "##ed", "##ing", "##ly", "##er", "##est", "##y", "##n", "##t", "##e", "##a"]


def vocab() -> list[str]:
    """Special tokens, then whole words, then continuation pieces; no duplicates."""
    tokens = SPECIAL_TOKENS + WORDS + PIECES
    if len(set(tokens)) != len(tokens):
        raise ValueError("vocabulary has duplicate tokens")
    return tokens


def bert_config(vocab_size: int) -> dict[str, object]:
    """Google's bert_config.json fields for the tiny model (keys sorted as Google's are)."""
    config = {
        "attention_probs_dropout_prob": 0.1,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": 32,
        "initializer_range": 0.02,
        "intermediate_size": 64,
        "max_position_embeddings": 64,
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "type_vocab_size": 2,
        "vocab_size": vocab_size,
    }
    return dict(sorted(config.items()))


def variable_shapes(config: dict[str, object]) -> dict[str, tuple[int, ...]]:
    """Google's BERT variable names and shapes (modeling.py + run_pretraining.py heads)."""
    v, h = int(config["vocab_size"]), int(config["hidden_size"])
    i, p = int(config["intermediate_size"]), int(config["max_position_embeddings"])
    t = int(config["type_vocab_size"])
    shapes: dict[str, tuple[int, ...]] = {
        "bert/embeddings/word_embeddings": (v, h),
        "bert/embeddings/token_type_embeddings": (t, h),
        "bert/embeddings/position_embeddings": (p, h),
        "bert/embeddings/LayerNorm/gamma": (h,),
        "bert/embeddings/LayerNorm/beta": (h,),
    }
    for layer in range(int(config["num_hidden_layers"])):
        base = f"bert/encoder/layer_{layer}"
        for part in ("query", "key", "value"):
            shapes |= dense(f"{base}/attention/self/{part}", h, h)
        shapes |= dense(f"{base}/attention/output/dense", h, h)
        shapes |= layer_norm(f"{base}/attention/output/LayerNorm", h)
        shapes |= dense(f"{base}/intermediate/dense", h, i)
        shapes |= dense(f"{base}/output/dense", i, h)
        shapes |= layer_norm(f"{base}/output/LayerNorm", h)
    shapes |= dense("bert/pooler/dense", h, h)
    shapes |= dense("cls/predictions/transform/dense", h, h)
    shapes |= layer_norm("cls/predictions/transform/LayerNorm", h)
    shapes["cls/predictions/output_bias"] = (v,)
    shapes["cls/seq_relationship/output_weights"] = (2, h)  # [out, in]: Google's one exception
    shapes["cls/seq_relationship/output_bias"] = (2,)
    return shapes


def dense(scope: str, fan_in: int, fan_out: int) -> dict[str, tuple[int, ...]]:
    return {f"{scope}/kernel": (fan_in, fan_out), f"{scope}/bias": (fan_out,)}


def layer_norm(scope: str, width: int) -> dict[str, tuple[int, ...]]:
    return {f"{scope}/gamma": (width,), f"{scope}/beta": (width,)}


def make_arrays(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, np.ndarray]:
    """Weights, their Adam slots and global_step, as a pre-training checkpoint holds them."""
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    for name, shape in shapes.items():
        values = rng.normal(0.0, STD, shape)
        if name.endswith("LayerNorm/gamma"):
            values = 1.0 + 0.5 * values  # around 1, as trained gammas are
        arrays[name] = values.astype(np.float32)
    for name, shape in shapes.items():
        arrays[f"{name}/adam_m"] = rng.normal(0.0, 0.01, shape).astype(np.float32)
        arrays[f"{name}/adam_v"] = np.square(rng.normal(0.0, 0.01, shape)).astype(np.float32)
    arrays["global_step"] = np.array(1000, dtype=np.int64)
    return arrays


def save_with_tensorflow(prefix: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write a V2 checkpoint with TF's SaveV2 op, then read it back with TF to check it."""
    import tensorflow as tf

    names = sorted(arrays)
    tf.raw_ops.SaveV2(
        prefix=str(prefix),
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        tensors=[tf.constant(arrays[name]) for name in names],
    )
    reader = tf.train.load_checkpoint(str(prefix))
    stored = reader.get_variable_to_shape_map()
    if sorted(stored) != names:
        raise RuntimeError(f"{prefix}: TensorFlow reads back different variable names")
    for name in names:
        if not np.array_equal(reader.get_tensor(name), arrays[name]):
            raise RuntimeError(f"{prefix}: TensorFlow reads back different values for {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    args = parser.parse_args()
    from safetensors.numpy import save_file

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    tokens = vocab()
    config = bert_config(len(tokens))
    arrays = make_arrays(variable_shapes(config), SEED)
    (out / "vocab.txt").write_text("".join(f"{token}\n" for token in tokens), encoding="utf-8")
    (out / "bert_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    save_with_tensorflow(out / PREFIX_NAME, arrays)
    save_file(arrays, str(out / "expected.safetensors"))
    total = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    print(f"wrote {len(arrays)} tensors to {out} ({total / 1024:.0f} KiB in all)")


if __name__ == "__main__":
    main()
