"""The model behind the HTTP server: request checking, limits, and batching of
concurrent requests (the HTTP layer is ``server.py``).

Requests are checked on the handler's thread (fields, sizes, token lengths), then queued;
one worker thread owns the model and runs together whatever requests of the same kind
arrived within a few milliseconds of each other, up to ``max_batch_size`` texts. The
model thus never runs on two threads at once, and concurrent clients share batches.
"""

from __future__ import annotations

import concurrent.futures
import os
import queue
import re
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field

from bertforge.inference.classify import TextClassifier, is_sequence_classifier
from bertforge.inference.common import check_max_length, default_max_length, resolve_device
from bertforge.inference.embed import (
    POOLINGS,
    Embedder,
    encoder_from_checkpoint,
    sentence_transformers_defaults,
)
from bertforge.inference.fill_mask import FillMask, has_mlm_head, mlm_head_from_checkpoint
from bertforge.interop.checkpoint import Checkpoint, load_state, read_checkpoint
from bertforge.model.task_heads import BertForSequenceClassification
from bertforge.tokenization import load_tokenizer


class RequestError(ValueError):
    """A request the server refuses: HTTP ``status`` and a message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class ServerLimits:
    """Bounds on what one request may ask. Sizes: bytes, texts, tokens, seconds."""

    max_body_bytes: int = 1_000_000
    max_batch_size: int = 64
    max_seq_length: int | None = None  # None: the model's (256 for all-MiniLM-L6-v2)
    max_top_k: int = 50
    batch_wait_s: float = 0.005  # how long the worker waits for more requests to batch
    timeout_s: float = 120.0  # a request waiting longer than this gets 503


@dataclass
class _Job:
    kind: str
    options: tuple
    texts: list[str]
    pairs: list[str] | None = None
    future: Future = field(default_factory=Future)


class MicroBatcher:
    """One worker thread runs ``run(kind, options, texts, pairs) -> results`` (one result
    per text) over queued jobs, merging jobs with the same kind and options."""

    def __init__(self, run: Callable[..., list], max_batch: int, wait_s: float) -> None:
        self.run = run
        self.max_batch = max_batch
        self.wait_s = wait_s
        self.jobs: queue.Queue[_Job | None] = queue.Queue()
        self.batches_run = 0
        self.worker = threading.Thread(target=self._loop, name="bertforge-batcher", daemon=True)
        self.worker.start()

    def submit(self, kind: str, options: tuple, texts: list[str],
               pairs: list[str] | None = None, timeout: float | None = None) -> list:
        """Queue one request and wait for its results (raises what the model raised)."""
        job = _Job(kind, options, texts, pairs)
        self.jobs.put(job)
        return job.future.result(timeout=timeout)

    def close(self) -> None:
        self.jobs.put(None)
        self.worker.join(timeout=10)

    def _loop(self) -> None:
        while True:
            first = self.jobs.get()
            if first is None:
                return
            batch, stop = self._gather(first)
            for group in _group(batch):
                self._run_group(group)
            if stop:
                return

    def _gather(self, first: _Job) -> tuple[list[_Job], bool]:
        """The first job and whatever else arrives within ``wait_s``, until ``max_batch``
        texts are gathered (the last job may overshoot; the model batches them anyway)."""
        batch, size = [first], len(first.texts)
        deadline = time.monotonic() + self.wait_s
        while size < self.max_batch:
            try:
                job = self.jobs.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if job is None:
                return batch, True
            batch.append(job)
            size += len(job.texts)
        return batch, False

    def _run_group(self, group: list[_Job]) -> None:
        """Run merged; if that fails, run each job alone so only the bad one fails."""
        first = group[0]
        texts = [t for job in group for t in job.texts]
        pairs = None if first.pairs is None else [p for job in group for p in job.pairs]
        try:
            results = self.run(first.kind, first.options, texts, pairs)
            self.batches_run += 1
        except Exception as err:  # handed to the waiting request thread(s)
            if len(group) == 1:
                first.future.set_exception(err)
                return
            for job in group:
                _settle(job, lambda job=job: self.run(job.kind, job.options, job.texts,
                                                      job.pairs))
            return
        start = 0
        for job in group:
            job.future.set_result(results[start:start + len(job.texts)])
            start += len(job.texts)


def _group(jobs: list[_Job]) -> list[list[_Job]]:
    """Jobs that can share one model call: same kind, options, and pairs-or-not."""
    groups: dict[tuple, list[_Job]] = {}
    for job in jobs:
        groups.setdefault((job.kind, job.options, job.pairs is None), []).append(job)
    return list(groups.values())


def _settle(job: _Job, compute: Callable[[], list]) -> None:
    try:
        job.future.set_result(compute())
    except Exception as err:  # handed to the waiting request thread
        job.future.set_exception(err)


class InferenceService:
    """Everything one model directory can do: embeddings always; fill-mask when it has the
    masked-LM head; predictions when it is a sequence classifier. Loads the weights once."""

    def __init__(self, model_dir: str | os.PathLike, device: str | None = "cpu",
                 limits: ServerLimits | None = None) -> None:
        self.model_dir = str(model_dir)
        self.limits = limits or ServerLimits()
        self.device = resolve_device(device)
        ckpt = read_checkpoint(model_dir)
        self.config = ckpt.config
        self.tokenizer = load_tokenizer(model_dir)
        self.max_length = self._max_length()
        self.classifier = self._classifier(ckpt)
        encoder = (self.classifier.model.bert if self.classifier is not None
                   else encoder_from_checkpoint(ckpt, add_pooler=False).to(self.device))
        pooling, normalize = sentence_transformers_defaults(model_dir)
        self.embedder = Embedder(encoder, self.tokenizer, self.max_length, pooling or "mean",
                                 normalize, self.device)
        self.fill_mask = (FillMask(encoder, mlm_head_from_checkpoint(ckpt).to(self.device),
                                   self.tokenizer, self.max_length, self.device)
                          if has_mlm_head(ckpt) else None)
        self.batcher = MicroBatcher(self._run, self.limits.max_batch_size,
                                    self.limits.batch_wait_s)

    def _max_length(self) -> int:
        return check_max_length(self.limits.max_seq_length, self.config,
                                default_max_length(self.model_dir, self.config))

    def _classifier(self, ckpt: Checkpoint) -> TextClassifier | None:
        if not is_sequence_classifier(ckpt):
            return None
        model = BertForSequenceClassification(ckpt.config)
        load_state(model, ckpt, strict=True)
        return TextClassifier(model.eval().to(self.device), self.tokenizer, self.max_length,
                              self.device)

    def close(self) -> None:
        self.batcher.close()

    # ------------------------------------------------------------ descriptions
    @property
    def endpoints(self) -> list[str]:
        out = ["/embed"]
        if self.fill_mask is not None:
            out.append("/fill-mask")
        if self.classifier is not None:
            out.append("/predict")
        return out

    def check_available(self, path: str) -> None:
        """404 naming what the model lacks when ``path`` is not one of its endpoints."""
        if path in self.endpoints:
            return
        if path == "/fill-mask":
            raise RequestError(404, f"{self.model_dir} has no masked-LM head, so /fill-mask "
                                    "is not available; see GET /info for what is")
        raise RequestError(404, f"{self.model_dir} is not a fine-tuned sequence classifier, "
                                f"so {path} is not available; see GET /info")

    def info(self) -> dict:
        c = self.config
        return {"model": self.model_dir, "architectures": c.extra.get("architectures"),
                "hidden_size": c.hidden_size, "num_hidden_layers": c.num_hidden_layers,
                "vocab_size": c.vocab_size, "max_seq_length": self.max_length,
                "device": str(self.device), "endpoints": self.endpoints,
                "embedding": {"pooling": self.embedder.pooling,
                              "normalize": self.embedder.normalize},
                "labels": self.classifier.labels if self.classifier else None,
                "limits": asdict(self.limits)}

    # ------------------------------------------------------------ requests
    def embed(self, body: dict) -> dict:
        _only(body, {"text", "texts", "pooling", "normalize", "truncate"})
        texts = self._texts(body)
        pooling = _choice(body, "pooling", POOLINGS, self.embedder.pooling)
        normalize = _bool(body, "normalize", self.embedder.normalize)
        truncated = self._check_lengths(texts, None, _bool(body, "truncate", False))
        vectors = self._submit("embed", (pooling, normalize), texts)
        return {"embeddings": vectors, "dimension": self.embedder.dimension,
                "pooling": pooling, "normalize": normalize, "truncated": truncated}

    def fill(self, body: dict) -> dict:
        self.check_available("/fill-mask")
        _only(body, {"text", "texts", "top_k"})
        texts = self._texts(body)
        top_k = _int(body, "top_k", 5, 1, self.limits.max_top_k)
        self._check_lengths(texts, None, False, can_truncate=False)
        for i, text in enumerate(texts):
            if self.tokenizer.mask_id not in self.tokenizer.tokenize_ids([text])[0]:
                raise RequestError(400, f"texts[{i}] has no [MASK] token; write [MASK] where "
                                        "a word should be predicted")
        return {"results": self._submit("fill-mask", (top_k,), texts)}

    def predict(self, body: dict) -> dict:
        self.check_available("/predict")
        _only(body, {"text", "texts", "pair", "pairs", "truncate"})
        texts = self._texts(body)
        pairs = self._pairs(body, len(texts))
        truncated = self._check_lengths(texts, pairs, _bool(body, "truncate", False))
        return {"predictions": self._submit("predict", (), texts, pairs),
                "truncated": truncated}

    def _texts(self, body: dict) -> list[str]:
        if ("text" in body) == ("texts" in body):
            raise RequestError(400, "give exactly one of 'text' (a string) or 'texts' (a list "
                                    "of strings)")
        texts = [body["text"]] if "text" in body else body["texts"]
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise RequestError(400, "'texts' must be a list of strings ('text' a string)")
        if len(texts) > self.limits.max_batch_size:
            raise RequestError(413, f"{len(texts)} texts in one request; the limit is "
                                    f"{self.limits.max_batch_size}: split the request")
        _unicode_only(texts, "texts")
        return texts

    def _pairs(self, body: dict, n: int) -> list[str] | None:
        if "pair" in body and "pairs" in body:
            raise RequestError(400, "give at most one of 'pair' and 'pairs'")
        if "pair" not in body and "pairs" not in body:
            return None
        pairs = [body["pair"]] if "pair" in body else body["pairs"]
        if not isinstance(pairs, list) or not all(isinstance(p, str) for p in pairs):
            raise RequestError(400, "'pairs' must be a list of strings ('pair' a string)")
        if len(pairs) != n:
            raise RequestError(400, f"{n} texts but {len(pairs)} pairs")
        _unicode_only(pairs, "pairs")
        return pairs

    def _check_lengths(self, texts: list[str], pairs: list[str] | None,
                       truncate: bool, can_truncate: bool = True) -> list[int]:
        """Indices of over-long inputs: 413 unless the request allows truncation
        (``can_truncate`` False: the endpoint has no ``truncate`` field to suggest)."""
        firsts = self.tokenizer.tokenize_ids(texts)
        seconds = self.tokenizer.tokenize_ids(pairs) if pairs is not None else None
        long = []
        for i, ids in enumerate(firsts):
            n = len(ids) + 2 + (len(seconds[i]) + 1 if seconds is not None else 0)
            if n > self.max_length:
                if not truncate:
                    advice = ("shorten it, or send \"truncate\": true to cut it"
                              if can_truncate else "shorten it")
                    raise RequestError(413, f"texts[{i}] is {n} tokens long; the limit is "
                                            f"{self.max_length}: {advice}")
                long.append(i)
        return long

    def _submit(self, kind: str, options: tuple, texts: list[str],
                pairs: list[str] | None = None) -> list:
        if not texts:
            return []
        try:
            return self.batcher.submit(kind, options, texts, pairs, self.limits.timeout_s)
        except concurrent.futures.TimeoutError:  # not the builtin one before 3.11
            raise RequestError(503, "the server is busy; try again later") from None

    def _run(self, kind: str, options: tuple, texts: list[str],
             pairs: list[str] | None) -> list:
        """On the worker thread: one merged batch through the model."""
        with warnings.catch_warnings():  # truncation is reported in the response instead
            warnings.simplefilter("ignore")
            if kind == "embed":
                pooling, normalize = options
                embedder = Embedder(self.embedder.model, self.tokenizer, self.max_length,
                                    pooling, normalize, self.device)
                return embedder.encode(texts, pairs, batch_size=self.limits.max_batch_size,
                                       progress=False).tolist()
            if kind == "fill-mask":
                found = self.fill_mask(texts, top_k=options[0])
                return [[[p.to_dict() for p in mask] for mask in text] for text in found]
            return self.classifier(texts, pairs, batch_size=self.limits.max_batch_size)


# ------------------------------------------------------------------ field checks
_SURROGATE = re.compile("[\ud800-\udfff]")


def _unicode_only(values: list[str], name: str) -> None:
    """400 for a lone surrogate (JSON allows ``"\\ud800"``; no tokenizer can encode it)."""
    for i, value in enumerate(values):
        bad = _SURROGATE.search(value)
        if bad:
            raise RequestError(400, f"{name}[{i}] holds a lone surrogate code point "
                                    f"(U+{ord(bad.group()):04X}) at character {bad.start()}; "
                                    "send valid Unicode text")


def _only(body: dict, allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise RequestError(400, f"unknown field(s) {', '.join(map(repr, unknown))}; "
                                f"allowed: {', '.join(sorted(allowed))}")


def _bool(body: dict, name: str, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise RequestError(400, f"'{name}' must be true or false")
    return value


def _int(body: dict, name: str, default: int, low: int, high: int) -> int:
    value = body.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise RequestError(400, f"'{name}' must be an integer")
    if not low <= value <= high:
        raise RequestError(400, f"'{name}' must be between {low} and {high}, got {value}")
    return value


def _choice(body: dict, name: str, choices: tuple[str, ...], default: str) -> str:
    value = body.get(name, default)
    if value not in choices:
        raise RequestError(400, f"'{name}' must be one of {', '.join(choices)}")
    return value
