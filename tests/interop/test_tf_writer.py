"""Writing Google's TensorFlow checkpoints: the writer against TensorFlow's own bytes.

``tests/fixtures/google_tiny`` was written by TensorFlow 2.21's ``SaveV2``; the writer must
give the same two files from the same tensors. (``scripts/check_tf_writer.py`` also had
TensorFlow read a 6,000-tensor multi-block checkpoint and a ``mini`` BERT written here, and
write both itself: identical bytes. TensorFlow is not a dependency, so that check is not a
test.)
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from _helpers import tiny_config

from bertforge.cli.main import main
from bertforge.interop.checkpoint import CheckpointError, save_google
from bertforge.interop.tf_bundle import (
    _FOOTER_SIZE,
    _block_entries,
    _read_block,
    _read_handle,
    list_variables,
    read_checkpoint,
)
from bertforge.interop.tf_writer import write_checkpoint
from bertforge.model import BertModel

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "google_tiny"


def test_the_fixture_written_again_is_tensorflows_bytes(tmp_path):
    arrays = read_checkpoint(FIXTURE / "bert_model.ckpt")
    assert arrays["global_step"].dtype == np.int64  # not only float32
    write_checkpoint(tmp_path / "bert_model.ckpt", arrays)
    for suffix in (".index", ".data-00000-of-00001"):
        ours = (tmp_path / f"bert_model.ckpt{suffix}").read_bytes()
        assert ours == (FIXTURE / f"bert_model.ckpt{suffix}").read_bytes(), suffix
    assert not list(tmp_path.glob("*.tmp"))


def _data_blocks(index_file: Path) -> int:
    data = index_file.read_bytes()
    footer = data[-_FOOTER_SIZE:]
    _, _, pos = _read_handle(footer, 0, "footer")
    offset, size, _ = _read_handle(footer, pos, "footer")
    return len(_block_entries(_read_block(data, offset, size, "index"), "index"))


def test_many_tensors_of_every_dtype_read_back(tmp_path):
    rng = np.random.default_rng(1)
    dtypes = ("float32", "float64", "float16", "int8", "int16", "int32", "int64", "uint8",
              "uint16", "bool", "complex64")
    arrays = {}
    for i in range(5000):  # long names: an index over 256 KiB, so several data blocks
        dtype = dtypes[i % len(dtypes)]
        values = rng.normal(size=tuple(rng.integers(1, 4, size=i % 4))) * 30
        arrays[f"scope/block_{i}/a_fairly_long_variable_name_{dtype}"] = (
            values > 0 if dtype == "bool" else values.astype(dtype))
    write_checkpoint(tmp_path / "ckpt", arrays)
    assert _data_blocks(tmp_path / "ckpt.index") >= 2
    back = read_checkpoint(tmp_path / "ckpt")
    assert back.keys() == arrays.keys()
    for name, array in arrays.items():
        assert back[name].dtype == array.dtype and back[name].shape == array.shape, name
        assert back[name].tobytes() == array.tobytes(), name
    with pytest.raises(ValueError, match="empty"):
        write_checkpoint(tmp_path / "bad", {"": np.zeros(2)})


def test_minilm_exports_to_google_and_comes_back_the_same(minilm_dir, tmp_path):
    google, back = tmp_path / "google", tmp_path / "back"
    assert main(["convert", "--from", str(minilm_dir), "--to", str(google),
                 "--format", "google"]) == 0
    assert {"bert_config.json", "vocab.txt", "bert_model.ckpt.index",
            "bert_model.ckpt.data-00000-of-00001"} <= {p.name for p in google.iterdir()}
    config = json.loads((google / "bert_config.json").read_text())
    assert len(config) == 11 and config["hidden_size"] == 384
    names = list_variables(google / "bert_model.ckpt")
    # Google's names and layout: kernels [in, out]
    assert names["bert/encoder/layer_0/intermediate/dense/kernel"] == ("float32", (384, 1536))
    assert names["bert/embeddings/word_embeddings"] == ("float32", (30522, 384))
    original = BertModel.from_pretrained(str(minilm_dir)).eval()
    exported = BertModel.from_pretrained(str(google)).eval()
    for (k, a), (j, b) in zip(original.state_dict().items(), exported.state_dict().items(),
                              strict=True):
        assert k == j and torch.equal(a, b), k
    assert main(["convert", "--from", str(google), "--to", str(back)]) == 0
    transformers = pytest.importorskip("transformers")
    theirs = transformers.BertModel.from_pretrained(back).eval()
    ids = torch.tensor([[101, 7592, 2088, 2003, 1037, 3899, 102]])
    with torch.no_grad():
        torch.testing.assert_close(theirs(ids).last_hidden_state,
                                   original(ids).last_hidden_state, rtol=0, atol=1e-5)


def test_task_heads_take_googles_run_script_names(tmp_path):
    from bertforge.model.task_heads import BertForQuestionAnswering, BertForSequenceClassification

    config = tiny_config(id2label={0: "a", 1: "b", 2: "c"})
    save_google(BertForSequenceClassification(config), tmp_path / "cls")
    names = list_variables(tmp_path / "cls" / "bert_model.ckpt")
    assert names["output_weights"] == ("float32", (3, 32))  # run_classifier.py: [labels, H]
    assert names["bert/pooler/dense/kernel"] == ("float32", (32, 32))
    save_google(BertForQuestionAnswering(tiny_config()), tmp_path / "qa")
    assert list_variables(tmp_path / "qa" / "bert_model.ckpt")["cls/squad/output_weights"] == (
        "float32", (2, 32))


def test_what_google_cannot_hold_is_named(tmp_path):
    from bertforge.model.task_heads import BertFeatureTagger

    tagger = BertFeatureTagger(tiny_config(id2label={0: "O", 1: "B-PER"}))
    with pytest.raises(CheckpointError, match="no Google TensorFlow name"):
        save_google(tagger, tmp_path / "tagger")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        save_google(BertModel(tiny_config(layer_norm_eps=1e-5)), tmp_path / "eps")
    assert any("1e-12" in str(w.message) for w in seen)
