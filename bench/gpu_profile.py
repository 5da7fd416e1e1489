"""Where a pre-training step's time goes: torch.profiler over a few steps of ours and of
transformers on the benchmark's batches (``bertforge bench``'s real data and step).

Prints, per model: wall time per step, the device's busy time per step (the sum of its
kernels' times; much below the wall time means the host cannot launch work fast enough)
and the kernels that take the most device time.

    python bench/gpu_profile.py --preset base --seq-len 128 --batch-size 256 \
        --data-dir gpu_data --vocab gpu_data/vocab/bert_uncased_en_vocab.txt
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from bertforge.cli.bench import _step_fns, _sync, make_batches, model_pair
from bertforge.tokenization import load_tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="base")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--data-dir", default="gpu_data")
    parser.add_argument("--vocab", default="gpu_data/vocab/bert_uncased_en_vocab.txt")
    parser.add_argument("--rows", type=int, default=18, help="kernels listed per model")
    args = parser.parse_args()

    tok = load_tokenizer(Path(args.vocab))
    ours, theirs = model_pair(args.preset, tok.vocab_size, args.seq_len, args.device,
                              training=True)
    batches = make_batches(tok, "pretrain", args.seq_len, args.batch_size, 3 + args.steps, 0,
                           Path(args.data_dir))
    batches = [{k: v.to(args.device) for k, v in b.items()} for b in batches]
    steps = dict(zip(("bertforge", "transformers"),
                     _step_fns("pretrain", ours, theirs, args.device), strict=True))
    kind = args.device.split(":")[0]
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if kind == "cuda" else [])
    for name, step in steps.items():
        for b in batches[:3]:
            with torch.autocast(kind, dtype=torch.bfloat16):
                step(b)
        _sync(args.device)
        with profile(activities=activities) as prof:
            start = time.perf_counter()
            for b in batches[3:]:
                with torch.autocast(kind, dtype=torch.bfloat16):
                    step(b)
            _sync(args.device)
            wall = (time.perf_counter() - start) / args.steps
        events = prof.key_averages()
        busy = sum(e.self_device_time_total for e in events) / 1e3 / args.steps  # ms
        print(f"== {name}: {wall * 1e3:.1f} ms per step wall, device busy {busy:.1f} ms "
              f"({busy / (wall * 1e3):.0%})")
        print(events.table(sort_by="self_device_time_total", row_limit=args.rows,
                           max_name_column_width=60))


if __name__ == "__main__":
    main()
