"""``bertforge data create|inspect|export`` end to end, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import UNCASED, WIKITEXT, ZH, needs_data

from bertforge.cli.main import main
from bertforge.pretraining import ShardDataset

pytestmark = needs_data


def _create(*args: str) -> list[str]:
    return ["data", "create", "--tokenizer", str(UNCASED), "--quiet", *args]


def test_create_inspect_export(books_small, tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(_create("--input", str(books_small), "--out", str(out), "--dupe-factor", "2",
                        "--max-seq-length", "64", "--workers", "2")) == 0
    assert "instances" in capsys.readouterr().out
    ds = ShardDataset(out)
    assert ds.meta["parameters"]["max_seq_length"] == 64 and len(ds) > 1000
    assert main(["data", "inspect", str(out), "--num", "2"]) == 0
    text = capsys.readouterr().out
    assert "not_next_share" in text and "\u2192" in text and "[CLS]" in text
    jsonl = tmp_path / "x.jsonl"
    assert main(["data", "export", str(out), "--out", str(jsonl), "--limit", "5"]) == 0
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(rows) == 5
    assert set(rows[0]) == {"input_ids", "token_type_ids", "masked_positions", "masked_labels",
                            "next_sentence_label", "a_doc", "b_doc"}
    assert rows[0]["input_ids"] == ds[0]["input_ids"].tolist()


def test_text_and_wikitext_formats_and_yaml(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("input_format: text\ndoc_sep: file\nmasking: dynamic\nseed: 5\n")
    zh_files = sorted(ZH.glob("*.txt"))[:6]
    out = tmp_path / "zh"
    args = ["data", "create", "--config", str(config), "--tokenizer",
            str(UNCASED.parent / "bert_chinese_vocab.txt"), "--out", str(out), "--quiet",
            "--input", *map(str, zh_files)]
    assert main(args) == 0
    ds = ShardDataset(out)
    assert ds.meta["counts"]["documents"] == 6 and ds.meta["parameters"]["masking"] == "dynamic"
    out2 = tmp_path / "wiki"
    assert main(_create("--input", str(WIKITEXT / "test.txt"), "--out", str(out2),
                        "--input-format", "text", "--dupe-factor", "1")) == 0
    assert ShardDataset(out2).meta["counts"]["documents"] > 100
    capsys.readouterr()


def _error(args: list[str], capsys) -> str:
    assert main(args) == 2
    return capsys.readouterr().err


def test_empty_corpus_is_a_clear_error(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n  \n")
    err = _error(_create("--input", str(empty), "--out", str(tmp_path / "o")), capsys)
    assert "empty.txt" in err and "no text" in err


def test_tokenizer_without_mask_names_the_file(books_small, tmp_path, capsys):
    vocab = tmp_path / "vocab.txt"
    lines = [t for t in UNCASED.read_text(encoding="utf-8").splitlines() if t != "[MASK]"]
    vocab.write_text("\n".join(lines) + "\n", encoding="utf-8")
    err = _error(["data", "create", "--tokenizer", str(vocab), "--input", str(books_small),
                  "--out", str(tmp_path / "o"), "--quiet"], capsys)
    assert str(vocab) in err and "[MASK]" in err


def test_bad_bytes_binary_and_tiny_documents(tmp_path, capsys):
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "a.txt").write_bytes(b"First doc \xff\xfe here.\nSecond line.\n\nOnly one.\n\n"
                                   b"\n\nThird doc.\nMore.\n" + b"x " * 5000 + b"\n")
    (corpus / "b.bin").write_bytes(b"\x00\x00binary" * 50)
    out = tmp_path / "o"
    # the folder alone gives a.txt only (its .txt files); the binary file named explicitly
    assert main(_create("--input", str(corpus), str(corpus / "b.bin"), "--out", str(out),
                        "--dupe-factor", "3")) == 0
    err = capsys.readouterr().err
    assert "invalid UTF-8" in err and "binary" in err
    reading = ShardDataset(out).meta["reading"]
    assert reading["replaced_utf8_lines"] == 1 and reading["binary_files_skipped"] == 1
    assert reading["long_sentences_split"] == 1
    assert ShardDataset(out).meta["counts"]["documents"] == 3


@pytest.mark.parametrize("extra,needle", [
    (["--max-seq-length", "3"], "max_seq_length"),
    (["--masked-lm-prob", "1.5"], "masked_lm_prob"),
    (["--shard-index", "3", "--num-shards", "2"], "shard_index"),
])
def test_bad_values(books_small, tmp_path, capsys, extra, needle):
    err = _error(_create("--input", str(books_small), "--out", str(tmp_path / "o"), *extra),
                 capsys)
    assert needle in err


def test_single_document_nsp_and_missing_paths(tmp_path, capsys):
    one = tmp_path / "one.txt"
    one.write_text("A sentence.\nAnother one.\n")
    err = _error(_create("--input", str(one), "--out", str(tmp_path / "o")), capsys)
    assert "at least 2 documents" in err
    assert main(_create("--input", str(one), "--out", str(tmp_path / "o2"),
                        "--objective", "sop")) == 0
    err = _error(_create("--input", str(tmp_path / "nope*.txt"), "--out", str(tmp_path / "o3")),
                 capsys)
    assert "nope" in err
    err = _error(["data", "inspect", str(tmp_path / "missing")], capsys)
    assert "missing" in err
    out_existing = tmp_path / "o2"
    err = _error(_create("--input", str(one), "--out", str(out_existing)), capsys)
    assert "not an empty directory" in err
    assert Path(out_existing / "meta.json").is_file()
