"""The pre-training loop end to end on real text: loss goes down, logs, checkpoints,
curves, bad input, non-finite losses, and ten steps against transformers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from _helpers import need_data

from bertforge.training import pretrain as pretrain_module
from bertforge.training.pretrain import NonFiniteLossError, pretrain
from bertforge.training.pretrain_config import PretrainConfig, PretrainConfigError
from bertforge.training.pretrain_data import DataMismatch
from bertforge.training.tracking import read_metrics

BOOKS = ("corpus-en-books", "Carroll_Lewis")
TEXTS = ("alice-s-adventures-in-wonderland.txt", "a-tangled-tale.txt")
HELDOUT = ("eight-or-nine-wise-words-about-letter-writing.txt", "feeding-the-mind.txt")
MICRO_MODEL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                   intermediate_size=64, max_position_embeddings=64)


def build_corpus(root: Path, masking: str = "dynamic") -> dict[str, Path]:
    """A 1000-token vocabulary, training shards (length 64) and held-out static shards
    from ~0.45 MB of Lewis Carroll; plus a micro model config."""
    from bertforge.pretraining import CreateConfig, create_pretraining_data
    from bertforge.tokenization import train_wordpiece

    books = need_data(*BOOKS)
    tok = train_wordpiece([books / t for t in TEXTS], 1000, lowercase=True)
    tok.save(root / "tok")
    cfg = CreateConfig(max_seq_length=64, masking=masking, input_format="text",
                       doc_sep="file", dupe_factor=1)
    create_pretraining_data([books / t for t in TEXTS], tok, root / "train", cfg)
    create_pretraining_data([books / t for t in HELDOUT], tok, root / "eval",
                            CreateConfig(max_seq_length=64, masking="static",
                                         input_format="text", doc_sep="file", dupe_factor=1))
    model = {**MICRO_MODEL, "vocab_size": tok.vocab_size, "hidden_dropout_prob": 0.1,
             "attention_probs_dropout_prob": 0.1}
    (root / "model.json").write_text(json.dumps(model))
    return {"tok": root / "tok", "train": root / "train", "eval": root / "eval",
            "model": root / "model.json"}


def run_config(corpus: dict[str, Path], out: Path, **changes) -> PretrainConfig:
    base = dict(data=str(corpus["train"]), eval_data=str(corpus["eval"]),
                tokenizer=str(corpus["tok"]), model_config=str(corpus["model"]), out=str(out),
                max_steps=30, batch_size=16, lr=3e-3, warmup_steps=3, log_every=5,
                eval_every=15, eval_batches=4, save_every=15, progress=False,
                tensorboard=False, device="cpu", threads=1)
    return PretrainConfig(**{**base, **changes})


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    return build_corpus(tmp_path_factory.mktemp("corpus"))


def test_tiny_run_learns_and_leaves_everything(corpus, tmp_path):
    result = pretrain(run_config(corpus, tmp_path / "run", max_steps=40, eval_every=20))
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in records] == [5, 10, 15, 20, 25, 30, 35, 40]
    for key in ("step", "tokens", "loss", "mlm_loss", "nsp_loss", "lr"):
        assert all(key in r for r in records), key
    assert [r["step"] for r in records if "eval_mlm_acc" in r] == [20, 40]
    assert records[-1]["mlm_loss"] < records[0]["mlm_loss"] - 0.5  # from ~6.9 (ln 1000)
    evals = [r["eval_mlm_loss"] for r in records if "eval_mlm_loss" in r]
    assert evals[1] < evals[0] < records[0]["mlm_loss"] - 0.4  # held-out text too
    assert records[-1]["eval_mlm_acc"] > 0.02  # chance is 0.001
    assert records[-1]["tokens"] > records[0]["tokens"] > 0
    out = tmp_path / "run"
    assert (out / "curves.png").stat().st_size > 1000
    assert sorted(p.name for p in out.glob("checkpoint-*")) == [  # every 15, and the end
        "checkpoint-15", "checkpoint-30", "checkpoint-40"]
    assert result.step == 40 and (out / "final" / "vocab.txt").is_file()
    transformers = pytest.importorskip("transformers")
    theirs = transformers.BertForPreTraining.from_pretrained(out / "final")
    assert theirs.config.vocab_size == json.loads(corpus["model"].read_text())["vocab_size"]


def test_against_transformers_ten_steps(corpus, tmp_path):
    """Same initial weights, same batches, AdamW + linear schedule: the same losses."""
    transformers = pytest.importorskip("transformers")
    from bertforge.model import BertForPreTraining
    from bertforge.training.distributed import DistInfo
    from bertforge.training.pretrain_data import BatchStream, build_collator, open_shards
    from bertforge.training.pretrain_objectives import IGNORE_INDEX

    init = tmp_path / "init"
    config = json.loads(corpus["model"].read_text())
    from bertforge.config import BertConfig

    torch.manual_seed(3)
    BertForPreTraining(BertConfig(**{**config, "hidden_dropout_prob": 0.0,
                                     "attention_probs_dropout_prob": 0.0})).save_pretrained(init)
    cfg = run_config(corpus, tmp_path / "run", init=str(init), model_config=None, max_steps=10,
                     log_every=1, eval_data=None, batch_size=8, save_every=100, seed=7)
    pretrain(cfg)
    ours = [r["loss"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl")]

    ref = transformers.BertForPreTraining.from_pretrained(init).train()
    decay = [p for n, p in ref.named_parameters() if p.ndim > 1 and not n.endswith("bias")]
    rest = [p for n, p in ref.named_parameters() if not (p.ndim > 1 and not n.endswith("bias"))]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                             {"params": rest, "weight_decay": 0.0}], lr=cfg.lr, eps=1e-6)
    sched = transformers.get_linear_schedule_with_warmup(opt, cfg.warmup_steps, cfg.max_steps)
    ds = open_shards(cfg.data)
    stream = BatchStream(ds, 8, 8, 1, DistInfo(), cfg.seed)
    from bertforge.tokenization import load_tokenizer

    collator = build_collator(ds.meta, cfg, load_tokenizer(corpus["tok"]), seed=cfg.seed)
    theirs = []
    for _ in range(10):
        b = collator(stream.next_step()[0])
        labels = torch.full_like(b["input_ids"], IGNORE_INDEX)
        keep = b["masked_labels"] != IGNORE_INDEX
        rows = torch.arange(len(labels)).unsqueeze(1).expand_as(keep)
        labels[rows[keep], b["masked_positions"][keep]] = b["masked_labels"][keep]
        out = ref(input_ids=b["input_ids"], token_type_ids=b["token_type_ids"],
                  attention_mask=b["attention_mask"], labels=labels,
                  next_sentence_label=b["next_sentence_label"])
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(ref.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        theirs.append(out.loss.item())
    assert ours == pytest.approx(theirs, rel=1e-4)


def test_non_finite_losses_are_skipped_then_abort(corpus, tmp_path, monkeypatch):
    real = pretrain_module.objective_sums
    calls = {"n": 0}

    def flaky(model, inputs, objective):
        calls["n"] += 1
        sums = real(model, inputs, objective)
        if calls["n"] in (3, 4) or calls["n"] > 8:  # two bad steps, then nothing but NaN
            sums.mlm_loss_sum = sums.mlm_loss_sum * float("nan")
            sums.stats[0] = float("nan")
        return sums

    monkeypatch.setattr(pretrain_module, "objective_sums", flaky)
    cfg = run_config(corpus, tmp_path / "run", max_steps=20, eval_data=None, max_nonfinite=3,
                     log_every=1)
    with pytest.raises(NonFiniteLossError, match="3 steps in a row"):
        pretrain(cfg)
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert records[-1]["skipped"] == 2 and all(math.isfinite(r["loss"]) for r in records)


def test_bad_input_gets_clear_messages(corpus, tmp_path):
    other = tmp_path / "other_tok"
    from bertforge.tokenization import load_tokenizer

    tok = load_tokenizer(corpus["tok"])
    vocab = sorted(tok.vocab, key=tok.vocab.get)
    (other).mkdir()
    (other / "vocab.txt").write_text("\n".join(vocab[:-1] + ["zzzz"]) + "\n")
    with pytest.raises(DataMismatch, match="fingerprint"):
        pretrain(run_config(corpus, tmp_path / "a", tokenizer=str(other)))
    with pytest.raises(DataMismatch, match="objective"):
        pretrain(run_config(corpus, tmp_path / "b", objective="mlm_sop"))
    with pytest.raises(PretrainConfigError, match="batch_size"):
        pretrain(run_config(corpus, tmp_path / "c", batch_size=10, micro_batch_size=4))
    with pytest.raises(PretrainConfigError, match="no model"):
        pretrain(run_config(corpus, tmp_path / "d", model_config=None))


def test_init_from_a_checkpoint_and_from_another_architecture(corpus, tmp_path):
    from bertforge.interop.checkpoint import CheckpointError

    pretrain(run_config(corpus, tmp_path / "a", max_steps=2, warmup_steps=1, eval_data=None))
    first = tmp_path / "a" / "final"
    result = pretrain(run_config(corpus, tmp_path / "b", model_config=None, init=str(first),
                                 max_steps=2, warmup_steps=1, eval_data=None, tokenizer=None))
    assert (result.final / "vocab.txt").is_file()  # the vocabulary came along from --init
    with pytest.raises(CheckpointError, match="shape"):
        pretrain(run_config(corpus, tmp_path / "c", model_config=None, preset="tiny",
                            init=str(first), max_steps=2, warmup_steps=1, eval_data=None))


def test_the_local_scheme_starts_pre_training_and_the_demo_control_from_one_set_of_weights(
        corpus, tmp_path):
    """--init-scheme local: the loop's model before its first step has the scheme's
    weights (key = query), and the demo's control rebuilt from the seed and the scheme is
    exactly that model: pre-trained and from-scratch fine-tuning start from the same
    point. The plain scheme keeps BERT's initialisation (key != query)."""
    from bertforge.cli.demo import make_random_init
    from bertforge.interop.checkpoint import save_pretrained
    from bertforge.tokenization import load_tokenizer
    from bertforge.training.distributed import init_distributed

    cfg = run_config(corpus, tmp_path / "run", init_scheme="local", seed=7)
    cfg.check()
    start = pretrain_module.PreTrainer(cfg, init_distributed("cpu"), torch.device("cpu")).model
    attn = start.bert.layers[1].attn
    assert torch.equal(attn.q.weight, attn.k.weight)
    save_pretrained(start, tmp_path / "start", tokenizer=load_tokenizer(corpus["tok"]))
    make_random_init(tmp_path / "start", tmp_path / "control", 7, "local")
    from safetensors.torch import load_file

    ours = load_file(tmp_path / "start" / "model.safetensors")
    control = load_file(tmp_path / "control" / "model.safetensors")
    assert ours.keys() == control.keys()
    for name, value in ours.items():
        assert torch.equal(value, control[name]), name
    plain = pretrain_module.PreTrainer(run_config(corpus, tmp_path / "plain", seed=7),
                                       init_distributed("cpu"), torch.device("cpu")).model
    assert not torch.equal(plain.bert.layers[1].attn.q.weight, plain.bert.layers[1].attn.k.weight)
    with pytest.raises(PretrainConfigError, match="init_scheme"):
        run_config(corpus, tmp_path / "bad", init_scheme="xavier").check()
