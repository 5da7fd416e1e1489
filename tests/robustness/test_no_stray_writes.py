"""No output outside the chosen output: representative commands (data create, pretrain,
finetune classify, embed, fill-mask, convert) run in a fresh process whose working
directory is an empty folder, with ``HOME`` and ``TMPDIR`` pointing to empty folders too
(caches and temporary files would land there) and every input in its own folder. After
each command, the only new or changed files in all of these are under that command's
``--out``."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from _helpers import need_data, tiny_config

ROOT = Path(__file__).resolve().parents[2]

# Runs in the child process: each command through bertforge's main(), a snapshot of the
# watched folder (file -> size and mtime; folders by name) before and after it.
DRIVER = r"""
import json, os, sys
from pathlib import Path
from bertforge.cli.main import main

def snapshot(root):
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            st = path.lstat()  # a folder counts when it appears, not when it fills up
            found[str(path)] = "dir" if path.is_dir() else (st.st_size, st.st_mtime_ns)
    return found

watched, commands = sys.argv[1], json.loads(sys.argv[2])
report = []
for name, argv, out in commands:
    before = snapshot(watched)
    code = main(argv)
    after = snapshot(watched)
    touched = [p for p in after if before.get(p) != after[p]]
    gone = [p for p in before if p not in after]
    stray = [p for p in touched + gone
             if not (out and (p == out or p.startswith(out + os.sep)))]
    report.append({"name": name, "code": code, "stray": sorted(stray),
                   "wrote": len(touched)})
print("REPORT " + json.dumps(report))
"""


def _inputs(folder: Path) -> dict[str, Path]:
    """Real text, a tokenizer, a model config, a tiny masked-LM model, classification CSVs,
    a tiny encoder, and a legacy pickled pytorch_model.bin."""
    from bertforge.model import BertForPreTraining
    from bertforge.model.task_heads import BertForSequenceClassification
    from bertforge.tokenization import train_wordpiece

    book = need_data("corpus-en-books", "Carroll_Lewis", "a-tangled-tale.txt")
    text = book.read_text(encoding="utf-8")[:60_000]
    (folder / "book.txt").write_text(text, encoding="utf-8")
    tok = train_wordpiece([folder / "book.txt"], 600, show_progress=False)
    tok.save(folder / "tok")
    config = tiny_config(vocab_size=tok.vocab_size)
    (folder / "model.json").write_text(json.dumps(config.to_dict()))
    torch.manual_seed(0)
    BertForPreTraining(config).save_pretrained(str(folder / "mlm"))
    tok.save(folder / "mlm")
    BertForSequenceClassification(config).bert.save_pretrained(str(folder / "encoder"))
    tok.save(folder / "encoder")
    sentences = [" ".join(s.replace(",", " ").split()) for s in text.split(".")
                 if len(s.split()) > 3]
    for name, part in (("train", sentences[:24]), ("dev", sentences[24:32])):
        rows = [f"{s},{'yes' if i % 2 else 'no'}" for i, s in enumerate(part)]
        (folder / f"{name}.csv").write_text("text,label\n" + "\n".join(rows) + "\n")
    (folder / "lines.txt").write_text("\n".join(sentences[:5]) + "\n")
    legacy = folder / "legacy"
    legacy.mkdir()
    (legacy / "config.json").write_text(json.dumps(config.to_dict()))
    from safetensors.torch import load_file
    weights = load_file(folder / "mlm" / "model.safetensors")
    torch.save({"state_dict": weights, "args": argparse.Namespace(lr=1e-4)},
               legacy / "pytorch_model.bin")
    return {"book": folder / "book.txt", "tok": folder / "tok", "model": folder / "model.json",
            "mlm": folder / "mlm", "encoder": folder / "encoder",
            "train": folder / "train.csv", "dev": folder / "dev.csv",
            "lines": folder / "lines.txt", "legacy": legacy}


def _commands(i: dict[str, Path], outs: Path) -> list[tuple[str, list[str], str | None]]:
    o = {name: str(outs / name) for name in ("shards", "pretrain", "finetune", "converted")}
    return [
        ("data create", ["data", "create", "--input", str(i["book"]), "--tokenizer",
                         str(i["tok"]), "--out", o["shards"], "--input-format", "text",
                         "--max-seq-length", "64", "--masking", "dynamic", "--quiet"],
         o["shards"]),
        ("pretrain", ["pretrain", "--data", o["shards"], "--tokenizer", str(i["tok"]),
                      "--model-config", str(i["model"]), "--out", o["pretrain"],
                      "--max-steps", "3", "--batch-size", "4", "--save-every", "2",
                      "--warmup-steps", "1", "--device", "cpu", "--threads", "1", "--quiet"],
         o["pretrain"]),
        ("finetune classify", ["finetune", "classify", "--train", str(i["train"]), "--dev",
                               str(i["dev"]), "--model", str(i["encoder"]), "--out",
                               o["finetune"], "--epochs", "1", "--batch-size", "8",
                               "--max-length", "32", "--save-every", "2", "--quiet"],
         o["finetune"]),
        ("embed", ["embed", "--model", str(i["mlm"]), "--input", str(i["lines"]), "--out",
                   str(outs / "embeddings.npy"), "--device", "cpu", "--no-progress"],
         str(outs / "embeddings.npy")),
        ("fill-mask", ["fill-mask", "--model", str(i["mlm"]), "--device", "cpu",
                       "the [MASK] of the story ."], None),  # prints only
        ("convert", ["convert", "--from", str(i["legacy"]), "--to", o["converted"],
                     "--allow-pickle"], o["converted"]),
    ]


def test_commands_write_only_under_their_output(tmp_path: Path) -> None:
    for name in ("inputs", "cwd", "home", "tmp", "outs"):
        (tmp_path / name).mkdir()
    inputs = _inputs(tmp_path / "inputs")
    commands = _commands(inputs, tmp_path / "outs")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("XDG_", "HF_", "TORCH", "MPL", "TRANSFORMERS", "PYTHONPYC"))}
    env |= {"HOME": str(tmp_path / "home"), "TMPDIR": str(tmp_path / "tmp"),
            "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run([sys.executable, "-c", DRIVER, str(tmp_path), json.dumps(commands)],
                          cwd=tmp_path / "cwd", env=env, capture_output=True, text=True,
                          timeout=300)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("REPORT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    report = json.loads(lines[0][len("REPORT "):])
    assert [r["name"] for r in report] == [c[0] for c in commands]
    for r in report:
        assert r["code"] == 0, (r, proc.stderr[-3000:])
        assert r["stray"] == [], f"{r['name']} wrote outside its --out: {r['stray']}"
        assert r["wrote"] > 0 or r["name"] == "fill-mask"
    assert "the [MASK] of the story ." in proc.stdout  # fill-mask printed its answer
    assert "unpickling" in proc.stderr  # convert --allow-pickle said what it did
    assert [p for d in ("cwd", "home", "tmp") for p in (tmp_path / d).iterdir()] == []
