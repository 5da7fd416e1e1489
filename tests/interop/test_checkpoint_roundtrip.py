"""Checkpoints: what we save loads in transformers and what transformers saves loads in
ours (no missing/unexpected keys, same outputs); the key tables round-trip; bad files
fail with one clear message naming the file."""

from __future__ import annotations

import json
import re

import pytest
import torch
from _helpers import tiny_config
from safetensors.torch import load_file, save_file

from bertforge.config import ConfigError
from bertforge.interop.checkpoint import CheckpointError, read_checkpoint
from bertforge.interop.keys import GOOGLE_KEYS, GOOGLE_TABLE, HF_KEYS, HF_TABLE
from bertforge.model import BertForPreTraining, BertModel

transformers = pytest.importorskip("transformers")


def inputs() -> dict[str, torch.Tensor]:
    ids = torch.tensor([[2, 17, 33, 45, 3, 60, 61, 3], [2, 8, 9, 3, 22, 3, 0, 0]])
    return dict(input_ids=ids, token_type_ids=(torch.arange(8) > 4).long().expand(2, -1),
                attention_mask=(ids != 0).long())


def expand(template: str, layers: int) -> list[str]:
    return [template.format(i) for i in range(layers)] if "{}" in template else [template]


@pytest.mark.parametrize("table,keys", [(HF_TABLE, HF_KEYS), (GOOGLE_TABLE, GOOGLE_KEYS)],
                         ids=["hf", "google"])
def test_key_table_round_trips(table, keys):
    for template in keys:
        for key in expand(template, 3):
            theirs = table.to_theirs(key)
            assert theirs is not None and "{}" not in theirs
            assert table.to_ours(theirs) == key


def test_key_tables_cover_every_parameter():
    model = BertForPreTraining(tiny_config())
    for key in model.state_dict():
        assert HF_TABLE.to_theirs(key), key
        assert GOOGLE_TABLE.to_theirs(key), key


def test_ours_to_transformers_no_missing_keys_same_outputs(tmp_path):
    torch.manual_seed(0)
    ours = BertForPreTraining(tiny_config()).eval()
    ours.save_pretrained(str(tmp_path))
    theirs, info = transformers.BertForPreTraining.from_pretrained(
        tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert not info["mismatched_keys"]
    theirs.eval()
    real = inputs()["attention_mask"].bool()
    with torch.no_grad():
        a, b = ours(**inputs()), theirs(**inputs())
    torch.testing.assert_close(a.prediction_logits[real], b.prediction_logits[real])
    torch.testing.assert_close(a.seq_relationship_logits, b.seq_relationship_logits)
    # the same tensor names transformers itself writes
    theirs.save_pretrained(tmp_path / "hf")
    assert set(load_file(tmp_path / "model.safetensors")) == set(
        load_file(tmp_path / "hf" / "model.safetensors"))


def test_transformers_to_ours(tmp_path):
    cfg = transformers.BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=4, intermediate_size=37,
                                  max_position_embeddings=64)
    torch.manual_seed(1)
    theirs = transformers.BertForPreTraining(cfg).eval()
    theirs.save_pretrained(tmp_path)
    ours = BertForPreTraining.from_pretrained(str(tmp_path))
    assert not ours.training
    real = inputs()["attention_mask"].bool()
    with torch.no_grad():
        a, b = ours(**inputs()), theirs(**inputs())
    torch.testing.assert_close(a.prediction_logits[real], b.prediction_logits[real])
    # a bare BertModel from the same pre-training checkpoint, and from a BertModel save
    encoder = BertModel.from_pretrained(str(tmp_path))
    theirs.bert.save_pretrained(tmp_path / "bare")
    bare = BertModel.from_pretrained(str(tmp_path / "bare"))
    with torch.no_grad():
        want = theirs.bert(**inputs()).last_hidden_state[real]
        torch.testing.assert_close(encoder(**inputs()).last_hidden_state[real], want)
        torch.testing.assert_close(bare(**inputs()).last_hidden_state[real], want)


def test_pytorch_model_bin_and_legacy_gamma_beta_names(tmp_path):
    torch.manual_seed(2)
    ours = BertModel(tiny_config()).eval()
    ours.save_pretrained(str(tmp_path / "src"))
    state = load_file(tmp_path / "src" / "model.safetensors")
    legacy = {re.sub(r"LayerNorm\.weight$", "LayerNorm.gamma",
                     re.sub(r"LayerNorm\.bias$", "LayerNorm.beta", k)): v
              for k, v in state.items()}
    (tmp_path / "bin").mkdir()
    torch.save(legacy, tmp_path / "bin" / "pytorch_model.bin")
    (tmp_path / "bin" / "config.json").write_text((tmp_path / "src" / "config.json").read_text())
    loaded = BertModel.from_pretrained(str(tmp_path / "bin"), strict=True)
    for key, value in ours.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_pickled_object_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    (tmp_path / "config.json").write_text(json.dumps(tiny_config().to_dict()))
    torch.save({"x": Evil()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="weights-only"):
        BertModel.from_pretrained(str(tmp_path))


def saved(tmp_path):
    torch.manual_seed(0)
    BertModel(tiny_config()).save_pretrained(str(tmp_path))
    return tmp_path


def test_truncated_safetensors_names_the_file(tmp_path):
    path = saved(tmp_path) / "model.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*truncated"):
        BertModel.from_pretrained(str(tmp_path))


def test_missing_and_malformed_config(tmp_path):
    folder = saved(tmp_path)
    (folder / "config.json").write_text('{"hidden_size": 32,\n "oops"')
    with pytest.raises(ConfigError, match=r"config\.json: line 2"):
        BertModel.from_pretrained(str(folder))
    (folder / "config.json").unlink()
    with pytest.raises(CheckpointError, match="no checkpoint found"):
        BertModel.from_pretrained(str(folder))
    with pytest.raises(CheckpointError, match="not a directory"):
        BertModel.from_pretrained(str(folder / "nope"))


def test_config_errors_name_the_field(tmp_path):
    folder = saved(tmp_path)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["num_attention_heads"] = 5
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="not divisible by num_attention_heads"):
        BertModel.from_pretrained(str(folder))


def test_vocab_size_disagreeing_with_embeddings(tmp_path):
    folder = saved(tmp_path)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["vocab_size"] = 120
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="word_embeddings.*vocab_size"):
        BertModel.from_pretrained(str(folder))


def test_vocab_file_longer_than_embeddings(tmp_path):
    folder = saved(tmp_path)
    (folder / "vocab.txt").write_text("".join(f"tok{i}\n" for i in range(150)))
    with pytest.raises(CheckpointError, match=r"vocab\.txt: 150 tokens"):
        BertModel.from_pretrained(str(folder))


def test_wrong_shape_tensor(tmp_path):
    folder = saved(tmp_path)
    state = load_file(folder / "model.safetensors")
    state["encoder.layer.1.intermediate.dense.weight"] = torch.zeros(36, 32)
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"layers\.1\.ffn\.up\.weight.*\[36, 32\]"):
        BertModel.from_pretrained(str(folder))


def test_unknown_tensors_are_reported_not_fatal(tmp_path):
    folder = saved(tmp_path)
    state = load_file(folder / "model.safetensors")
    state["some.other.thing"] = torch.zeros(2)
    save_file(state, str(folder / "model.safetensors"))
    assert read_checkpoint(folder).unexpected == ["bert.some.other.thing"]
