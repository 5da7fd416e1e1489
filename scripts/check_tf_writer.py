"""Check ``bertforge.interop.tf_writer`` against real TensorFlow, once, outside the tests.

Two steps, two interpreters (TensorFlow lives only in a throwaway virtualenv; bertforge
never depends on it):

    .venv/bin/python scripts/check_tf_writer.py write /tmp/tfcheck   # bertforge writes
    /tmp/tfenv/bin/python scripts/check_tf_writer.py check /tmp/tfcheck  # TF reads

``write`` makes two checkpoints with bertforge's writer and saves the arrays it wrote
beside them (``expected.npz``): ``many/ckpt``, 6,000 small tensors of ten dtypes and ranks
0-3 (an index of over 256 KiB, so several data blocks and index-block separators), and
``bert/`` (``bertforge convert --format google`` of a random ``mini`` BertForPreTraining).
``check`` loads both with ``tf.train.load_checkpoint`` and compares every tensor (names,
dtypes, shapes, values bit for bit), then has TensorFlow's ``SaveV2`` write the same
tensors and compares the files byte for byte; it prints what it found and exits non-zero
on any difference.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

DTYPES = ("float32", "float64", "float16", "int8", "int16", "int32", "int64", "uint8",
          "uint16", "bool")


def write(root: Path) -> None:
    import torch

    from bertforge.config import preset
    from bertforge.interop.checkpoint import save_google
    from bertforge.interop.tf_writer import write_checkpoint
    from bertforge.model import BertForPreTraining

    rng = np.random.default_rng(0)
    arrays = {}
    for i in range(6000):
        dtype = DTYPES[i % len(DTYPES)]
        shape = tuple(int(d) for d in rng.integers(1, 5, size=i % 4))
        values = rng.normal(size=shape) * 50
        arrays[f"scope_{i % 7}/encoder/transformer_block_{i}/sublayer/{dtype}_variable"] = (
            values > 0 if dtype == "bool" else values.astype(dtype))
    (root / "many").mkdir(parents=True, exist_ok=True)
    write_checkpoint(root / "many" / "ckpt", arrays)
    np.savez(root / "many" / "expected.npz", **{k.replace("/", "|"): v
                                                 for k, v in arrays.items()})
    torch.manual_seed(0)
    model = BertForPreTraining(preset("mini", vocab_size=1000))
    prefix = save_google(model, root / "bert")
    from bertforge.interop.tf_bundle import read_checkpoint
    np.savez(root / "bert" / "expected.npz",
             **{k.replace("/", "|"): v for k, v in read_checkpoint(prefix).items()})
    print(f"wrote {root / 'many'} ({len(arrays)} tensors) and {root / 'bert'}")


def check(root: Path) -> int:
    import tensorflow as tf

    failures = 0
    for name, prefix in (("many", root / "many" / "ckpt"), ("bert", root / "bert" /
                                                             "bert_model.ckpt")):
        expected = {k.replace("|", "/"): v for k, v in
                    np.load(prefix.parent / "expected.npz").items()}
        reader = tf.train.load_checkpoint(str(prefix))
        shapes = reader.get_variable_to_shape_map()
        dtypes = reader.get_variable_to_dtype_map()
        bad = sorted(set(shapes) ^ set(expected))
        for key, want in expected.items():
            if key not in shapes:
                continue
            got = reader.get_tensor(key)
            if (dtypes[key].as_numpy_dtype != want.dtype or got.shape != want.shape
                    or got.tobytes() != want.tobytes()):
                bad.append(key)
        failures += len(bad)
        listed = ": " + ", ".join(bad[:5]) if bad else ""
        print(f"{name}: TensorFlow {tf.__version__} read {len(shapes)} tensors; "
              f"{len(expected)} written; {len(bad)} differ{listed}")
        # TensorFlow's own SaveV2 of the same tensors: the same bytes?
        theirs = prefix.parent / "tf_saved" / prefix.name
        names = sorted(expected)
        tf.raw_ops.SaveV2(prefix=str(theirs), tensor_names=names,
                          shape_and_slices=[""] * len(names),
                          tensors=[tf.constant(expected[k]) for k in names])
        for suffix in (".index", ".data-00000-of-00001"):
            same = (Path(f"{prefix}{suffix}").read_bytes()
                    == Path(f"{theirs}{suffix}").read_bytes())
            failures += not same
            print(f"{name}: {prefix.name}{suffix} {'identical to' if same else 'DIFFERS from'} "
                  "TensorFlow's SaveV2 of the same tensors")
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("write", "check"):
        sys.exit(__doc__)
    target = Path(sys.argv[2])
    if sys.argv[1] == "write":
        write(target)
    else:
        sys.exit(check(target))
