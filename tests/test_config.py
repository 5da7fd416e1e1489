"""BertConfig: validation, presets, the paper's parameter counts, JSON in both formats."""

from __future__ import annotations

import json

import pytest
import torch

from bertforge.config import (
    BertConfig,
    ConfigError,
    parameter_breakdown,
    preset,
    preset_names,
)
from bertforge.model import BertForPreTraining


def test_defaults_are_bert_base():
    c = BertConfig()
    assert (c.num_hidden_layers, c.hidden_size, c.num_attention_heads,
            c.intermediate_size, c.vocab_size) == (12, 768, 12, 3072, 30522)


@pytest.mark.parametrize("field,value,message", [
    ("num_attention_heads", 7, "not divisible"),
    ("hidden_size", 0, "hidden_size must be a positive integer"),
    ("num_hidden_layers", -1, "num_hidden_layers must be a positive integer"),
    ("hidden_dropout_prob", 1.5, "hidden_dropout_prob"),
    ("hidden_act", "swish2", "hidden_act"),
    ("vocab_size", "big", "vocab_size"),
])
def test_validation_names_the_field(field, value, message):
    with pytest.raises(ConfigError, match=message):
        BertConfig(**{field: value})


def test_google_grid_and_aliases():
    names = preset_names()
    grid = [n for n in names if n.startswith("L-")]
    assert len(grid) == 24
    for name in grid:
        c = preset(name)
        assert c.num_attention_heads == c.hidden_size // 64
        assert c.intermediate_size == 4 * c.hidden_size
        assert name == f"L-{c.num_hidden_layers}_H-{c.hidden_size}"
    assert preset("tiny") == preset("L-2_H-128")
    assert preset("mini") == preset("L-4_H-256")
    assert preset("small") == preset("L-4_H-512")
    assert preset("medium") == preset("L-8_H-512")
    large = preset("large")
    assert (large.num_hidden_layers, large.hidden_size, large.num_attention_heads) == (24, 1024, 16)
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        preset("huge")


def test_paper_parameter_counts():
    base = parameter_breakdown(preset("base"))["total_parameters"]
    large = parameter_breakdown(preset("large"))["total_parameters"]
    assert 108e6 < base < 111e6  # the paper's 110M
    assert 333e6 < large < 337e6  # the paper's 340M (335M counted exactly)
    h = 768
    assert parameter_breakdown(preset("base"))["attention_per_layer"] == 4 * h * h + 4 * h
    assert parameter_breakdown(preset("base"))["feed_forward_per_layer"] == 8 * h * h + 5 * h


@pytest.mark.parametrize("name", ["tiny", "mini", "base", "large"])
def test_breakdown_equals_the_real_model(name):
    with torch.device("meta"):  # no memory for the big ones
        model = BertForPreTraining(preset(name))
    counts = parameter_breakdown(preset(name))
    assert sum(p.numel() for p in model.parameters()) == counts["total_with_pretraining_heads"]
    assert sum(p.numel() for p in model.bert.parameters()) == counts["total_parameters"]


def test_json_round_trips_hf_and_google(tmp_path):
    c = preset("mini", vocab_size=5000, hidden_act="gelu_new")
    c.save(tmp_path / "config.json")
    c.save(tmp_path / "bert_config.json", google=True)
    assert BertConfig.from_json_file(tmp_path / "config.json") == c
    google = json.loads((tmp_path / "bert_config.json").read_text())
    assert len(google) == 11 and "model_type" not in google
    assert BertConfig.from_json_file(tmp_path / "bert_config.json") == c


def test_transformers_reads_our_config(tmp_path):
    transformers = pytest.importorskip("transformers")
    c = preset("tiny", vocab_size=777)
    c.save(tmp_path / "config.json")
    theirs = transformers.BertConfig.from_pretrained(tmp_path)
    assert (theirs.vocab_size, theirs.hidden_size, theirs.num_hidden_layers) == (777, 128, 2)


def test_bad_config_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        BertConfig.from_json_file(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="bad.json"):
        BertConfig.from_json_file(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="expected a JSON object"):
        BertConfig.from_json_file(bad)


def test_a_label_count_without_names_gives_transformers_names(tmp_path):
    transformers = pytest.importorskip("transformers")
    from bertforge.model.task_heads import BertForSequenceClassification

    data = {"vocab_size": 99, "hidden_size": 32, "num_hidden_layers": 1,
            "num_attention_heads": 4, "intermediate_size": 37, "num_labels": 3}
    ours = BertConfig.from_dict(data)
    theirs = transformers.BertConfig.from_dict(data)
    assert ours.num_labels == 3 == theirs.num_labels
    assert ours.id2label == theirs.id2label
    # a 3-label classifier saved by transformers with such a config loads with its head
    model = transformers.BertForSequenceClassification(theirs)
    model.save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**json.loads(
        (tmp_path / "config.json").read_text()), "num_labels": 3, "id2label": None}))
    loaded = BertForSequenceClassification.from_pretrained(str(tmp_path))
    assert loaded.head.classifier.out_features == 3
    assert torch.equal(loaded.head.classifier.weight, model.classifier.weight)


# ---------------------------------------------------------------- audit 5
def test_audit5_replace_gives_a_copy_that_owns_its_dicts():
    """Changing a replaced config's ``extra`` or ``id2label`` must not change the original
    (dataclasses.replace alone hands the same dict objects to both)."""
    original = BertConfig(id2label={0: "a", 1: "b"}, extra={"pooling": "mean"})
    copy_ = original.replace(num_hidden_layers=2)
    copy_.extra["pooling"] = "cls"
    copy_.id2label[2] = "c"
    assert original.extra == {"pooling": "mean"}
    assert original.id2label == {0: "a", 1: "b"}


def test_audit5_num_labels_override_as_transformers():
    transformers = pytest.importorskip("transformers")
    theirs = transformers.BertConfig(num_labels=3)
    ours = BertConfig().replace(num_labels=3)
    assert ours.num_labels == theirs.num_labels == 3
    assert ours.id2label == theirs.id2label
    assert preset("tiny", num_labels=5).num_labels == 5
    # the labels given win over a count
    assert BertConfig().replace(num_labels=3, id2label={0: "x"}).id2label == {0: "x"}


def test_audit5_unknown_fields_are_config_errors_naming_them():
    with pytest.raises(ConfigError, match="'hidden'"):
        BertConfig().replace(hidden=3)
    with pytest.raises(ConfigError, match="'vocab'"):
        preset("mini", vocab=100)


def test_audit5_string_label_ids_become_ints_as_in_transformers():
    transformers = pytest.importorskip("transformers")
    labels = {"0": "negative", "1": "positive"}
    assert BertConfig(id2label=labels).id2label == transformers.BertConfig(
        id2label=labels).id2label == {0: "negative", 1: "positive"}


@pytest.mark.parametrize("field, value", [
    ("hidden_dropout_prob", "0.1"), ("attention_probs_dropout_prob", "abc"),
    ("pad_token_id", None), ("initializer_range", "x"), ("problem_type", "classify"),
])
def test_audit5_wrong_values_are_config_errors(field, value):
    with pytest.raises(ConfigError, match=field):
        BertConfig(**{field: value})
