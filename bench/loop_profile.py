"""Where a ``bertforge pretrain`` step's time goes, the training loop's own step cut into
segments.

On an H100 the loop ran at 80% of the bare model step (339k against 425k real tok/s,
bench/RESULTS.md); on the CPU at 95%. This runs the loop's step
(``PreTrainer.train_step``) on real shards, first as the loop runs it (one device sync
at each end of the timed steps), then with a device sync around each segment so that
each gets its own time: fetching the instances (``BatchStream``), masking (the
collator), preparing the batch, the copy to the device, forward + backward, unscale +
clip (the host reads the gradient norm), the optimiser step, and the rest (the host's
own work between them).

    python bench/loop_profile.py --data SHARDS --tokenizer vocab.txt --preset base \
        --device cuda --precision bf16 --batch-size 256 --steps 30
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch

import bertforge.training.pretrain as loop
from bertforge.training.distributed import init_distributed
from bertforge.training.pretrain_config import PretrainConfig


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per pass")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as out:
        cfg = PretrainConfig(data=args.data, tokenizer=args.tokenizer, out=out,
                             preset=args.preset, device=args.device,
                             precision=args.precision, batch_size=args.batch_size,
                             max_steps=10**6, warmup_steps=10, lr=1e-4,
                             save_every=10**9, tensorboard=False, progress=False)
        cfg.check()
        device = loop.pick_device(cfg.device)
        trainer = loop.PreTrainer(cfg, init_distributed(device.type), device)
        report = profile(trainer, device, args.steps, args.warmup)
    report.update(preset=args.preset, device=str(device), precision=args.precision,
                  batch_size=args.batch_size, torch=torch.__version__)
    print(json.dumps(report, indent=2) if args.json else _table(report))


def profile(trainer: Any, device: torch.device, steps: int, warmup: int) -> dict[str, Any]:
    """Milliseconds per step: the loop's step unsynchronised, then each segment synced."""
    tokens = []

    def run(n: int) -> float:
        _sync(device)
        start = time.perf_counter()
        for _ in range(n):
            stats, _, _ = trainer.train_step()
            if stats is not None:
                tokens.append(float(stats[loop.STAT_NAMES.index("tokens")]))
        _sync(device)
        return (time.perf_counter() - start) * 1e3 / n

    run(warmup)
    tokens.clear()
    as_run = run(steps)
    real = sum(tokens) / max(1, len(tokens))
    spent: dict[str, float] = defaultdict(float)

    def timed(name: str, fn: Callable) -> Callable:
        def wrapper(*a: Any, **k: Any) -> Any:
            _sync(device)
            start = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                _sync(device)
                spent[name] += (time.perf_counter() - start) * 1e3
        return wrapper

    prepare = loop.prepare
    trainer.stream.next_step = timed("fetch instances", trainer.stream.next_step)
    trainer.collator = _CallTimed(timed("mask (collator)", trainer.collator), trainer.collator)
    loop.prepare = timed("prepare batch", loop.prepare)
    for name, attr in (("copy to device", "_to_device"), ("forward + backward",
                       "_forward_backward"), ("unscale + clip", "_unscale_and_clip"),
                       ("optimiser step", "_optimizer_step")):
        setattr(trainer, attr, timed(name, getattr(trainer, attr)))
    try:
        segmented = run(steps)
    finally:
        loop.prepare = prepare
    per_step = {k: v / steps for k, v in spent.items()}
    per_step["rest (host, between)"] = segmented - sum(per_step.values())
    return {"real_tokens_per_step": real, "step_ms_as_run": as_run,
            "real_tokens_per_s_as_run": real / as_run * 1e3, "step_ms_segmented": segmented,
            "segments_ms": per_step}


class _CallTimed:
    """``obj`` whose calls go through ``call`` (the loop also reads its ``state_dict``)."""

    def __init__(self, call: Callable, obj: Any) -> None:
        self._call, self._obj = call, obj

    def __call__(self, *a: Any, **k: Any) -> Any:
        return self._call(*a, **k)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._obj, name)


def _table(r: dict[str, Any]) -> str:
    lines = [f"loop step, {r['preset']} batch {r['batch_size']} on {r['device']} "
             f"({r['precision']}, torch {r['torch']}): {r['step_ms_as_run']:.1f} ms as run "
             f"({r['real_tokens_per_s_as_run']:,.0f} real tok/s); with a sync around each "
             f"segment {r['step_ms_segmented']:.1f} ms:"]
    for name, ms in r["segments_ms"].items():
        lines.append(f"  {name:<22} {ms:8.2f} ms  {ms / r['step_ms_segmented']:6.1%}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
