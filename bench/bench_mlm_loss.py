"""The pre-training MLM loss on the CPU: ``masked_lm_loss`` (one softmax pass) against
``F.cross_entropy`` + argmax accuracy, alone and inside the pre-training step.

    python bench/bench_mlm_loss.py                      # [640, 8000] logits, forward + backward
    python bench/bench_mlm_loss.py --data SHARDS --tokenizer TOK   # + in the training step

The in-step figure alternates the two losses every ``--steps`` steps in one process for
``--rounds`` rounds (a noisy machine then slows both alike) and prints each variant's
median and fastest round. Run with the demo's thread policy
(``OMP_WAIT_POLICY=ACTIVE GOMP_SPINCOUNT=10000``) to time the demo's step.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from bertforge.runtime import tune_allocator
from bertforge.training import pretrain_objectives as po

Loss = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def plain(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What the step computed before: F.cross_entropy and an argmax accuracy."""
    valid = labels != po.IGNORE_INDEX
    loss = F.cross_entropy(logits, labels, ignore_index=po.IGNORE_INDEX, reduction="sum")
    return loss, (logits.detach().argmax(-1) == labels)[valid].sum()


VARIANTS: dict[str, Loss] = {"fused softmax pass": po.masked_lm_loss, "cross_entropy+argmax": plain}


def alone(rows: int, vocab: int, repeat: int) -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(rows, vocab, generator=gen).requires_grad_()
    labels = torch.randint(0, vocab, (rows,), generator=gen)
    labels[::9] = po.IGNORE_INDEX
    for name, fn in [*VARIANTS.items(), *VARIANTS.items()]:  # twice: the first warms up
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            loss, _ = fn(logits, labels)
            loss.backward()
            times.append(time.perf_counter() - start)
            logits.grad = None
        print(f"[{rows}, {vocab}] {name}: median {statistics.median(times) * 1e3:.2f} ms "
              f"forward + backward")


def in_step(data: str, tokenizer: str, batch: int, steps: int, rounds: int) -> None:
    from bertforge.training.distributed import init_distributed
    from bertforge.training.pretrain import PreTrainer
    from bertforge.training.pretrain_config import PretrainConfig

    with tempfile.TemporaryDirectory() as out:
        cfg = PretrainConfig(data=data, tokenizer=tokenizer, out=out, preset="tiny",
                             batch_size=batch, max_steps=10**6, warmup_steps=200, lr=2e-3,
                             save_every=10**9, tensorboard=False, progress=False,
                             masked_lm_prob=0.3, max_predictions_per_seq=20, dropout=0.0)
        cfg.check()
        trainer = PreTrainer(cfg, init_distributed("cpu"), torch.device("cpu"))
        for _ in range(20):
            trainer.train_step()
        times: dict[str, list[float]] = {name: [] for name in VARIANTS}
        try:
            for _ in range(rounds):
                for name, fn in VARIANTS.items():
                    po.masked_lm_loss = fn
                    start = time.perf_counter()
                    for _ in range(steps):
                        trainer.train_step()
                    times[name].append((time.perf_counter() - start) * 1e3 / steps)
        finally:
            po.masked_lm_loss = VARIANTS["fused softmax pass"]
    for name, ms in times.items():
        print(f"tiny, batch {batch}, demo recipe: {name}: median {statistics.median(ms):.1f} "
              f"ms/step, fastest round {min(ms):.1f} ({rounds} rounds of {steps} steps)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=640)
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--data", help="pre-training shards (e.g. the demo's work/shards_train)")
    parser.add_argument("--tokenizer", help="their tokenizer directory")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    tune_allocator()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    alone(args.rows, args.vocab, args.repeat)
    if args.data:
        in_step(args.data, args.tokenizer, args.batch_size, args.steps, args.rounds)


if __name__ == "__main__":
    main()
