"""``bertforge bench``: ours against transformers on the same real batches, one process.

Both models get identical weights, identical batches (real text from ../shared/data with
its natural length distribution) and the same optimiser. Reported per model: real
(non-pad) tokens per second, peak memory, and model FLOPs utilisation (useful FLOPs of the
real tokens over the device's peak, the peak measured in this run with a large matmul in
the same precision). ``transformers`` is imported here only: it is the thing measured
against (the ``bench`` extra), never a dependency of the library.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mode", nargs="?", default="inference",
                        choices=["pretrain", "finetune", "inference"])
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per model")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--compile", action="store_true", help="torch.compile our model")
    parser.add_argument("--compile-mode", default=None,
                        choices=["default", "max-autotune", "max-autotune-no-cudagraphs",
                                 "reduce-overhead"],
                        help="torch.compile's mode (implies --compile); reduce-overhead "
                             "and max-autotune replay CUDA graphs")
    parser.add_argument("--fp32-norms", action="store_true",
                        help="our LayerNorms follow autocast's fp32 rule (an fp32 residual "
                             "stream, as transformers runs) instead of staying in bf16")
    parser.add_argument("--cold-shapes", action="store_true",
                        help="time each batch the first time it is run (a short job) "
                             "instead of after one untimed pass over them all (a long one)")
    parser.add_argument("--data-dir", default=str(DATA))
    parser.add_argument("--vocab", default=None, help="vocab.txt (default: bert uncased)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")


# ---------------------------------------------------------------- real batches
def _sentences(data: Path, mode: str, seq_len: int = 128) -> list[tuple[str, str | None]]:
    """Real inputs: book text cut into pre-training pairs long enough to fill ``seq_len``
    tokens (about 4.3 characters a token: two halves of 2.5 characters per position),
    or GLUE sentences."""
    if mode == "pretrain":
        books = sorted((data / "corpus-en-books").rglob("*.txt"))[:6]
        if not books:
            raise FileNotFoundError(f"{data}/corpus-en-books: no books found (need ../shared)")
        text = " ".join(b.read_text(encoding="utf-8", errors="replace") for b in books)
        half = max(400, seq_len * 5 // 2)
        return [(text[i:i + half], text[i + half:i + 2 * half])
                for i in range(0, len(text) - 2 * half, 2 * half)]
    rows = (data / "glue" / "MRPC" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
    sst = (data / "glue" / "SST-2" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
    pairs = [(r.split("\t")[3], r.split("\t")[4]) for r in rows]
    return pairs + [(r.split("\t")[0], None) for r in sst]


def make_batches(tok, mode: str, seq_len: int, batch_size: int, count: int,  # noqa: ANN001
                 seed: int, data: Path) -> list[dict]:
    """``count`` batches of real text; pre-training rows get the data issue's shape:
    10% shorter targets, 15% of tokens masked (at most 20 per row), NSP labels."""
    import numpy as np
    import torch

    rng = np.random.default_rng(seed)
    inputs = _sentences(data, mode, seq_len)
    order = rng.permutation(len(inputs))
    out = []
    for b in range(count):
        rows = [inputs[order[(b * batch_size + i) % len(inputs)]] for i in range(batch_size)]
        limit = [seq_len if mode != "pretrain" or rng.random() > 0.1 else
                 int(rng.integers(8, seq_len)) for _ in rows]
        encs = [tok.encode(a, p, max_length=n) for (a, p), n in zip(rows, limit, strict=True)]
        width = max(len(e) for e in encs)
        ids = np.zeros((batch_size, width), dtype=np.int64)
        types, mask = np.zeros_like(ids), np.zeros_like(ids)
        for i, e in enumerate(encs):
            ids[i, :len(e)], types[i, :len(e)], mask[i, :len(e)] = e.ids, e.type_ids, 1
        batch = {"input_ids": torch.from_numpy(ids), "token_type_ids": torch.from_numpy(types),
                 "attention_mask": torch.from_numpy(mask)}
        if mode == "pretrain":
            batch.update(_masks(encs, ids, tok, rng))
        elif mode == "finetune":
            batch["labels"] = torch.from_numpy(rng.integers(0, 2, batch_size))
        out.append(batch)
    return out


def _masks(encs, ids, tok, rng) -> dict:  # noqa: ANN001
    """Masks by the library's own rule (``draw_masks``: 15%, at most 20 per row, 80/10/10),
    in the batch layouts both models take: positions and labels for ours, full-width
    labels (-100 elsewhere) for transformers."""
    import numpy as np
    import torch

    from bertforge.pretraining.masking import MaskingRule, draw_masks

    lengths = [len(e) for e in encs]
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    flat = np.concatenate([np.asarray(e.ids, dtype=np.int64) for e in encs])
    draw = draw_masks(flat, offsets, MaskingRule.from_tokenizer(tok), rng)
    owner = np.repeat(np.arange(len(encs)), draw.counts)
    slot = np.arange(len(owner)) - np.repeat(np.cumsum(draw.counts) - draw.counts, draw.counts)
    pos = np.zeros((len(encs), int(draw.counts.max())), dtype=np.int64)
    lab = np.full(pos.shape, -100, dtype=np.int64)
    pos[owner, slot], lab[owner, slot] = draw.positions, draw.labels
    full = np.full(ids.shape, -100, dtype=np.int64)
    full[owner, draw.positions] = draw.labels
    masked = ids.copy()
    for i, n in enumerate(lengths):
        masked[i, :n] = draw.input_ids[offsets[i]:offsets[i + 1]]
    return {"input_ids": torch.from_numpy(masked), "masked_positions": torch.from_numpy(pos),
            "masked_labels": torch.from_numpy(lab), "full_labels": torch.from_numpy(full),
            "next_sentence_label": torch.from_numpy(rng.integers(0, 2, len(encs)))}


# ------------------------------------------------------------------- the steps
def _step_fns(mode: str, ours, theirs, device: str):  # noqa: ANN001, ANN202
    """(ours_step, theirs_step), each taking a batch already on the device."""
    import torch

    def opt(model):  # noqa: ANN001, ANN202 - both sides: Trainer's default, the fused kernel
        return torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)

    if mode == "inference":
        def infer(model):  # noqa: ANN001, ANN202
            def step(b):  # noqa: ANN001, ANN202
                with torch.inference_mode():
                    return model(input_ids=b["input_ids"], token_type_ids=b["token_type_ids"],
                                 attention_mask=b["attention_mask"]).last_hidden_state
            return step
        return infer(ours.bert), infer(theirs.bert)
    o_opt, t_opt = opt(ours), opt(theirs)

    def train(model, optimizer, loss_of):  # noqa: ANN001, ANN202
        def step(b):  # noqa: ANN001, ANN202
            loss = loss_of(model, b)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return loss
        return step

    common = ("input_ids", "token_type_ids", "attention_mask")
    if mode == "pretrain":
        def ours_loss(m, b):  # noqa: ANN001, ANN202
            return m(**{k: b[k] for k in common}, masked_positions=b["masked_positions"],
                     labels=b["masked_labels"], next_sentence_label=b["next_sentence_label"]).loss

        def theirs_loss(m, b):  # noqa: ANN001, ANN202
            return m(**{k: b[k] for k in common}, labels=b["full_labels"],
                     next_sentence_label=b["next_sentence_label"]).loss
    else:
        def ours_loss(m, b):  # noqa: ANN001, ANN202
            pooled = m.bert(**{k: b[k] for k in common}).pooler_output
            return torch.nn.functional.cross_entropy(m.nsp(pooled), b["labels"])

        def theirs_loss(m, b):  # noqa: ANN001, ANN202
            pooled = m.bert(**{k: b[k] for k in common}).pooler_output
            return torch.nn.functional.cross_entropy(m.cls.seq_relationship(pooled),
                                                     b["labels"])
    return train(ours, o_opt, ours_loss), train(theirs, t_opt, theirs_loss)


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed_interleaved(steps: dict[str, Callable], batches: list[dict], warmup: int,
                      device: str, autocast: Callable[[], object], prime: bool = False
                      ) -> dict[str, float]:
    """Seconds per model over the timed batches, the models taking turns batch by batch,
    so that a change in the machine's load hits both alike. With ``prime``, each timed
    batch is first run once untimed: every shape has then been met, as in a long run
    (on CUDA a new shape can cost a kernel plan or an autotuning pass)."""
    for b in batches[:warmup] + (batches[warmup:] if prime else []):
        for step in steps.values():
            with autocast():
                step(b)
    seconds = dict.fromkeys(steps, 0.0)
    for b in batches[warmup:]:
        for name, step in steps.items():
            _sync(device)
            start = time.perf_counter()
            with autocast():
                step(b)
            _sync(device)
            seconds[name] += time.perf_counter() - start
    return seconds


def peak_memory_mb(step: Callable, batches: list[dict], device: str,
                   autocast: Callable[[], object]) -> float:
    """Peak memory of a few steps: CUDA's allocator peak, or the RSS growth on CPU."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    with RssPeak() as rss:
        for b in batches:
            with autocast():
                step(b)
        _sync(device)
    return (torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda")
            else rss.growth_mb)


def peak_flops(device: str, dtype) -> float:  # noqa: ANN001
    """Measured peak: a large square matmul in the given precision (FLOP/s)."""
    import torch

    n = 8192 if device.startswith("cuda") else 1024
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    reps = 20 if device.startswith("cuda") else 5
    best = 0.0
    for _ in range(4):  # the best of several trials: the peak, not the average
        a @ b
        _sync(device)
        start = time.perf_counter()
        for _ in range(reps):
            a @ b
        _sync(device)
        best = max(best, 2 * n ** 3 * reps / (time.perf_counter() - start))
    return best


def fast_path_parity(ours, theirs, batch: dict, device: str) -> dict[str, float]:  # noqa: ANN001
    """Our encoder (the path it takes on that device: unpadded on the CPU when over 10% of
    the batch is padding, padded on CUDA) against transformers' on one benchmark batch, on
    the benchmark's device, dropout off: the largest absolute difference of the real
    tokens' last hidden states in fp32 (TF32 off), and in bf16 autocast the relative
    error ||ours - fp32 reference|| / ||reference|| of both (which should be alike)."""
    import torch

    was_training = ours.training, theirs.training
    ours.eval()
    theirs.eval()
    inputs = {k: batch[k] for k in ("input_ids", "token_type_ids", "attention_mask")}
    real = batch["attention_mask"].bool()
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.no_grad():
            ref = theirs.bert(**inputs).last_hidden_state[real].float()
            fp32 = ours.bert(**inputs).last_hidden_state[real].float()
            with torch.autocast(device.split(":")[0], dtype=torch.bfloat16):
                ours_bf16 = ours.bert(**inputs).last_hidden_state[real].float()
                theirs_bf16 = theirs.bert(**inputs).last_hidden_state[real].float()
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
        ours.train(was_training[0])
        theirs.train(was_training[1])
    norm = float(ref.norm())
    return {"fp32_max_abs_diff": float((fp32 - ref).abs().max()),
            "bf16_rel_error_ours": float((ours_bf16 - ref).norm()) / norm,
            "bf16_rel_error_transformers": float((theirs_bf16 - ref).norm()) / norm}


def useful_flops(config, batches: list[dict], mode: str) -> float:  # noqa: ANN001
    """FLOPs the algorithm needs for the real tokens: encoder matmuls + attention at each
    row's real length; the MLM head at masked positions; x3 for training."""
    h, i, n_layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    per_token = 2 * n_layers * (4 * h * h + 2 * h * i)
    total = 0.0
    for b in batches:
        lengths = b["attention_mask"].sum(1).tolist()
        total += sum(n * per_token + 4 * n_layers * n * n * h for n in lengths)
        if mode == "pretrain":
            masked = int((b["masked_labels"] != -100).sum())
            total += masked * 2 * (h * h + h * config.vocab_size)
    return total * (1 if mode == "inference" else 3)


def model_pair(preset_name: str, vocab_size: int, seq_len: int, device: str,
               training: bool, seed: int = 0):  # noqa: ANN201
    """(ours, transformers') ``BertForPreTraining`` with identical random weights (ours
    written and read back by theirs, SDPA attention), on ``device``, in train or eval mode."""
    import torch
    import transformers

    from bertforge.config import preset
    from bertforge.model import BertForPreTraining

    torch.manual_seed(seed)
    config = preset(preset_name, vocab_size=vocab_size,
                    max_position_embeddings=max(512, seq_len))
    ours = BertForPreTraining(config)
    with tempfile.TemporaryDirectory() as tmp:
        ours.save_pretrained(tmp)
        theirs = transformers.BertForPreTraining.from_pretrained(tmp, attn_implementation="sdpa")
    for m in (ours, theirs):
        m.to(device).train(training)
    return ours, theirs


def run(args: argparse.Namespace) -> int:
    import torch

    try:
        import transformers
    except ImportError:
        raise ValueError("bertforge bench compares against transformers: pip install "
                         "'bertforge[bench]'") from None
    from bertforge.inference.common import resolve_device
    from bertforge.tokenization import load_tokenizer
    from bertforge.training.precision import bf16_norms

    args.device = str(resolve_device(args.device))  # a one-line error where CUDA is absent

    data = Path(args.data_dir)
    vocab = Path(args.vocab) if args.vocab else data / "vocab" / "bert_uncased_en_vocab.txt"
    tok = load_tokenizer(vocab)
    ours, theirs = model_pair(args.preset, tok.vocab_size, args.seq_len, args.device,
                              training=args.mode != "inference", seed=args.seed)
    config = ours.config
    batches = make_batches(tok, args.mode, args.seq_len, args.batch_size,
                           args.warmup + args.steps, args.seed, data)
    batches = [{k: v.to(args.device) for k, v in b.items()} for b in batches]
    if not args.fp32_norms:  # as bertforge's training runs bf16 (the parity check too)
        bf16_norms(ours)
    ours_step, theirs_step = _step_fns(args.mode, ours, theirs, args.device)
    compiled = args.compile or args.compile_mode is not None
    if compiled:
        ours_step = torch.compile(ours_step, mode=args.compile_mode)
    bf16 = args.precision == "bf16"

    def autocast():  # noqa: ANN202
        return torch.autocast(args.device.split(":")[0], dtype=torch.bfloat16, enabled=bf16)

    parity = fast_path_parity(ours, theirs, batches[0], args.device)
    steps = {"bertforge": ours_step, "transformers": theirs_step}
    # memory first, on a fresh process heap, one model after the other
    memory = {name: peak_memory_mb(step, batches[:2], args.device, autocast)
              for name, step in steps.items()}
    seconds = timed_interleaved(steps, batches, args.warmup, args.device, autocast,
                                prime=not args.cold_shapes)
    results = {name: {"seconds": seconds[name], "peak_memory_mb": memory[name]}
               for name in steps}
    timed = batches[args.warmup:]
    real = sum(int(b["attention_mask"].sum()) for b in timed)
    peak = peak_flops(args.device, torch.bfloat16 if bf16 else torch.float32)
    flops = useful_flops(config, timed, args.mode)
    for r in results.values():
        r["real_tokens_per_s"] = real / r["seconds"]
        r["mfu"] = flops / r["seconds"] / peak
    report = {
        "mode": args.mode, "preset": args.preset, "seq_len": args.seq_len,
        "batch_size": args.batch_size, "steps": args.steps, "device": _device_name(args.device),
        "precision": args.precision, "compile": compiled,
        "compile_mode": args.compile_mode if compiled else None,
        "fp32_norms": args.fp32_norms,
        "cold_shapes": args.cold_shapes, "torch": torch.__version__,
        "transformers_version": transformers.__version__, "real_tokens": real,
        "pad_fraction": 1 - real / sum(b["attention_mask"].numel() for b in timed),
        "peak_tflops_measured": peak / 1e12, **{f"{k}": v for k, v in results.items()},
        "speedup": results["transformers"]["seconds"] / results["bertforge"]["seconds"],
        "parity": parity,
    }
    print(json.dumps(report, indent=2) if args.json else _table(report))
    return 0


class RssPeak:
    """On CPU: the peak growth of this process's resident memory while a model runs
    (sampled every 2 ms from /proc/self/statm), so two models in one process compare."""

    def __enter__(self) -> RssPeak:
        self.base = self.peak = _rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _rss_bytes())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.growth_mb = (self.peak - self.base) / 2**20


def _rss_bytes() -> int:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * resource.getpagesize()


def _device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip() + f" ({torch.get_num_threads()} threads)"
    except OSError:
        pass
    return platform.processor() or "cpu"


def _table(r: dict) -> str:
    lines = [f"bench {r['mode']} {r['preset']} len {r['seq_len']} batch {r['batch_size']} "
             f"on {r['device']} ({r['precision']}{', fp32 norms' if r['fp32_norms'] else ''}"
             f"{', compiled' if r['compile'] else ''}, torch {r['torch']}, transformers "
             f"{r['transformers_version']}); {r['real_tokens']} real tokens, "
             f"pad {r['pad_fraction']:.0%}"]
    for name in ("bertforge", "transformers"):
        x = r[name]
        lines.append(f"  {name:<12} {x['real_tokens_per_s']:>10.0f} real tok/s   "
                     f"MFU {x['mfu']:.1%}   peak mem {x['peak_memory_mb']:.0f} MB")
    lines.append(f"  speed-up: {r['speedup']:.2f}x")
    p = r["parity"]
    lines.append(f"  parity with transformers: fp32 max |diff| {p['fp32_max_abs_diff']:.1e}; "
                 f"bf16 relative error ours {p['bf16_rel_error_ours']:.1e}, transformers "
                 f"{p['bf16_rel_error_transformers']:.1e}")
    return "\n".join(lines)

