"""``create_pretraining_data``: files -> document store -> instances -> shard directory.

Two passes, both spread over ``workers`` processes with results written in a fixed order:

1. read the files in pieces (``reader``), split sentences and tokenise them
   (``docstore.tokenize_pieces``) and append them to a memory-mapped document store, so
   the corpus never has to fit in memory;
2. cut the stored documents into blocks of about ``block_tokens`` tokens; each block
   draws its instances and masks from its own random stream,
   ``SeedSequence(seed, spawn_key=(shard_index, block))``, which makes the output the same
   byte for byte whatever the number of workers.

With ``num_shards`` K and ``shard_index`` I, only documents whose reading-order index is
I mod K are used (NotNext B segments are drawn among them), so K machines can each build
one part of a data set; ``ShardDataset`` reads a folder of such parts as one.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from bertforge.pretraining.docstore import DocStore, DocStoreWriter, tokenize_pieces
from bertforge.pretraining.encoder import CachedEncoder
from bertforge.pretraining.instances import (
    InstanceSpans,
    PairRule,
    document_spans,
    materialize,
)
from bertforge.pretraining.masking import MaskingRule, draw_masks
from bertforge.pretraining.npyio import smallest_uint
from bertforge.pretraining.packing import pack
from bertforge.pretraining.reader import DOC_SEPS, FORMATS, Piece, ReadStats, iter_pieces
from bertforge.pretraining.shards import ShardWriter
from bertforge.tokenization import BertTokenizer

FORMAT_VERSION = 1
MASKING = ("static", "dynamic")


class OutputExistsError(ValueError):
    """The output directory already holds files."""


@dataclass
class CreateConfig:
    """Every parameter of data creation (the CLI's flags; defaults as in BERT).

    ``dupe_factor`` None means 10 for static masking and 1 for dynamic masking. ``pack``
    (MLM only, ``objective="none"``) fills each row with several segments (``packing``).
    """

    max_seq_length: int = 128
    short_seq_prob: float = 0.1
    masked_lm_prob: float = 0.15
    max_predictions_per_seq: int = 20
    whole_word_mask: bool = False
    masking: str = "static"
    dupe_factor: int | None = None
    objective: str = "nsp"
    pack: bool = False
    seed: int = 12345
    input_format: str = "sentences"
    doc_sep: str = "blank-line"
    jsonl_field: str = "text"
    num_shards: int = 1
    shard_index: int = 0
    block_tokens: int = 1 << 18
    piece_bytes: int = 1 << 22

    def resolved(self) -> CreateConfig:
        """A copy with ``dupe_factor`` filled in, after checking every value."""
        out = replace(self, dupe_factor=self.dupe_factor or (10 if self.masking == "static"
                                                             else 1))
        out.check()
        return out

    def check(self) -> None:
        """Raise ValueError naming the parameter when a value is out of range."""
        self.pair_rule().check()
        for name, value, allowed in (("masking", self.masking, MASKING),
                                     ("input_format", self.input_format, FORMATS),
                                     ("doc_sep", self.doc_sep, DOC_SEPS)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        if self.dupe_factor is not None and self.dupe_factor < 1:
            raise ValueError(f"dupe_factor must be at least 1, got {self.dupe_factor}")
        if not 0 <= self.shard_index < self.num_shards:
            raise ValueError(f"shard_index must be in [0, num_shards={self.num_shards}), got "
                             f"{self.shard_index}")
        if self.pack and self.objective != "none":
            raise ValueError(f"pack needs objective 'none' (MLM only), got {self.objective!r}: "
                             "a sentence objective needs one pair per row")
        if self.max_seq_length > 65535:
            raise ValueError(f"max_seq_length {self.max_seq_length} is over 65535")

    def pair_rule(self) -> PairRule:
        return PairRule(self.max_seq_length, self.short_seq_prob, self.objective)

    def masking_rule(self, tokenizer: BertTokenizer) -> MaskingRule:
        rule = MaskingRule.from_tokenizer(tokenizer, self.masked_lm_prob,
                                          self.max_predictions_per_seq, self.whole_word_mask)
        rule.check()
        return rule


@dataclass
class _Shared:
    """What every worker needs; sent once per process."""

    tokenizer_json: str
    lowercase: bool
    source: str
    config: CreateConfig
    store_dir: str
    objective_ids: tuple[int, int] = (0, 0)  # [CLS], [SEP]
    state: dict[str, Any] = field(default_factory=dict)


_WORKER: _Shared | None = None


def _init_worker(shared: _Shared) -> None:
    global _WORKER
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one process = one core
    _WORKER = shared


def _worker_tokenizer(shared: _Shared) -> BertTokenizer:
    if "tokenizer" not in shared.state:
        from tokenizers import Tokenizer

        backend = Tokenizer.from_str(shared.tokenizer_json)
        shared.state["tokenizer"] = BertTokenizer(backend, shared.lowercase, shared.source)
    return shared.state["tokenizer"]


def _tokenize_task(pieces: list[Piece]) -> Any:
    shared = _WORKER
    if "encoder" not in shared.state:
        shared.state["encoder"] = CachedEncoder(_worker_tokenizer(shared))
    cfg = shared.config
    return tokenize_pieces(pieces, cfg.input_format, shared.state["encoder"],
                           cfg.pair_rule().max_num_tokens, cfg.jsonl_field,
                           cfg.num_shards, cfg.shard_index)


def _block_task(task: tuple[int, int, int]) -> dict[str, np.ndarray]:
    """Instances (and static masks) of one block of stored documents."""
    shared = _WORKER
    block, doc_lo, doc_hi = task
    if "store" not in shared.state:
        shared.state["store"] = DocStore(shared.store_dir)
        shared.state["rule"] = shared.config.masking_rule(_worker_tokenizer(shared))
    store, rule, cfg = shared.state["store"], shared.state["rule"], shared.config
    rng = np.random.default_rng(np.random.SeedSequence(cfg.seed,
                                                       spawn_key=(cfg.shard_index, block)))
    spans = document_spans(store, doc_lo, doc_hi, cfg.dupe_factor, cfg.pair_rule(), rng)
    cls_id, sep_id = shared.objective_ids
    if cfg.pack:
        return _packed_block(spans, store, (cls_id, sep_id), rule, cfg, rng)
    mat = materialize(spans, store.tokens, cls_id, sep_id, cfg.objective == "none")
    masks = draw_masks(mat.input_ids, mat.offsets, rule, rng) if cfg.masking == "static" \
        else None
    return {"mat": mat, "labels": spans.label, "masks": masks,
            "a_doc": store.doc_ids[spans.a_doc], "b_doc": store.doc_ids[spans.b_doc]}


def _packed_block(spans: InstanceSpans, store: DocStore, specials: tuple[int, int],
                  rule: MaskingRule, cfg: CreateConfig, rng: np.random.Generator) -> dict:
    """Like ``_block_task``'s result, for rows packed with several segments."""
    packed = pack(spans, store.tokens, *specials, cfg.max_seq_length)
    packed.segment_doc = store.doc_ids[packed.segment_doc]
    mat, seg = packed.mat, packed.segment_offsets
    masks = draw_masks(mat.input_ids, mat.offsets, rule, rng) if cfg.masking == "static" \
        else None
    return {"mat": mat, "labels": np.full(len(seg) - 1, -1, dtype=np.int8), "masks": masks,
            "a_doc": packed.segment_doc[seg[:-1]], "b_doc": packed.segment_doc[seg[1:] - 1],
            "packed": packed}


def _ordered_map(fn: Callable, tasks: Iterable, pool: Any, window: int) -> Iterator:
    """``map(fn, tasks)`` in order, at most ``window`` tasks in flight (memory stays flat)."""
    if pool is None:
        yield from map(fn, tasks)
        return
    pending: deque = deque()
    for task in tasks:
        pending.append(pool.apply_async(fn, (task,)))
        if len(pending) >= window:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()


def _piece_batches(pieces: Iterator[Piece], config: CreateConfig) -> Iterator[list[Piece]]:
    """Pieces grouped into tasks of about ``piece_bytes`` characters (documents owned by
    this shard only, except JSONL pieces, which the worker filters)."""
    batch, size = [], 0
    for piece in pieces:
        if (config.input_format != "jsonl"
                and piece.doc % config.num_shards != config.shard_index):
            continue
        batch.append(piece)
        size += len(piece.text)
        if size >= config.piece_bytes:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _blocks(store: DocStore, block_tokens: int) -> list[tuple[int, int, int]]:
    """(block, first doc, end doc): documents grouped by where their tokens start."""
    first_token = np.asarray(store.sentence_offsets)[np.asarray(store.doc_offsets)[:-1]]
    key = first_token // block_tokens
    cuts = np.flatnonzero(np.diff(key)) + 1
    bounds = np.concatenate([[0], cuts, [len(store)]]).tolist()
    return [(b, lo, hi) for b, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:],
                                                         strict=True))]


def create_pretraining_data(files: Sequence[str | os.PathLike], tokenizer: BertTokenizer,
                            out_dir: str | os.PathLike, config: CreateConfig | None = None,
                            workers: int = 1, progress: bool = False,
                            keep_docstore: bool = False) -> dict:
    """Build a shard directory at ``out_dir`` from text ``files``; returns its meta.

    ``workers`` processes share the work (1: in this process); the output does not
    depend on it. ``progress`` shows tqdm bars on stderr. The document store is written
    to ``out_dir/docstore`` and removed at the end unless ``keep_docstore``.
    Raises ValueError (or a subclass) with a one-line message for bad input.
    """
    config = (config or CreateConfig()).resolved()
    files = [Path(f) for f in files]
    _check_inputs(files, tokenizer, config, workers)
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputExistsError(f"{out}: exists and is not an empty directory; choose a new "
                                "--out or remove it")
    try:
        return _create(files, tokenizer, out, config, workers, progress, keep_docstore)
    except BaseException:
        _remove_partial(out)  # it was empty or absent: never leave half a data set
        raise


def _remove_partial(out: Path) -> None:
    if out.is_dir():
        for child in out.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()


def _create(files: list[Path], tokenizer: BertTokenizer, out: Path, config: CreateConfig,
            workers: int, progress: bool, keep_docstore: bool) -> dict:
    shared = _Shared(tokenizer.backend.to_str(), tokenizer.lowercase, tokenizer.source,
                     config, str(out / "docstore"), (tokenizer.cls_id, tokenizer.sep_id))
    stats = ReadStats()
    saved = os.environ.get("TOKENIZERS_PARALLELISM")
    pool = _start_pool(workers, shared)
    if pool is None:
        shared.state["tokenizer"] = tokenizer
    try:
        store_info, extra = _build_store(files, tokenizer, shared, pool, workers, stats,
                                         progress)
        counts = _build_instances(tokenizer, shared, pool, workers, progress, out)
    finally:
        if pool is not None:
            pool.terminate()
        _restore_env(saved)
    meta = _meta(files, tokenizer, config, stats, store_info, extra, counts)
    counts["writer"].close(meta)
    if not keep_docstore:
        shutil.rmtree(out / "docstore", ignore_errors=True)
    return meta


def _check_inputs(files: list[Path], tokenizer: BertTokenizer, config: CreateConfig,
                  workers: int) -> None:
    if not files:
        raise ValueError("no input files; give text files, directories or globs")
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"{missing[0]}: no such file")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    config.masking_rule(tokenizer)  # [CLS]/[SEP]/[MASK] present, values in range


def _start_pool(workers: int, shared: _Shared) -> Any:
    if workers == 1:
        _init_worker(shared)
        return None
    ctx = multiprocessing.get_context("spawn")
    return ctx.Pool(workers, initializer=_init_worker, initargs=(shared,))


def _restore_env(saved: str | None) -> None:
    global _WORKER
    _WORKER = None
    if saved is None:
        os.environ.pop("TOKENIZERS_PARALLELISM", None)
    else:
        os.environ["TOKENIZERS_PARALLELISM"] = saved


def _build_store(files: list[Path], tokenizer: BertTokenizer, shared: _Shared, pool: Any,
                 workers: int, stats: ReadStats, progress: bool) -> tuple[dict, dict]:
    """Pass 1: tokenise every document into the document store."""
    from tqdm import tqdm

    config = shared.config
    writer = DocStoreWriter(shared.store_dir, smallest_uint(tokenizer.vocab_size - 1))
    extra = {"long_sentences": 0, "bad_json_lines": 0}
    total = sum(f.stat().st_size for f in files)
    bar = tqdm(total=total, unit="B", unit_scale=True, desc="tokenize", disable=not progress,
               dynamic_ncols=True, smoothing=0.1)
    pieces = iter_pieces(files, config.input_format, config.doc_sep, stats, config.piece_bytes)
    batches = _piece_batches(pieces, config)
    for result in _ordered_map(_tokenize_task, batches, pool, 2 * workers):
        writer.add(result)
        extra["long_sentences"] += result.long_sentences
        extra["bad_json_lines"] += result.bad_json
        for message in result.warnings:
            stats.warn(message)
        bar.update(min(stats.bytes, total) - bar.n)
        bar.set_postfix(docs=writer.n_docs, tokens=writer.n_tokens, refresh=False)
    bar.close()
    info = writer.close()
    if info["documents"] == 0:
        raise ValueError(_empty_message(files, stats, config))
    return info, extra


def _empty_message(files: list[Path], stats: ReadStats, config: CreateConfig) -> str:
    where = str(files[0]) if len(files) == 1 else f"{files[0]} and {len(files) - 1} more"
    why = [f"{stats.bytes} bytes read"]
    if stats.binary_files:
        why.append(f"{stats.binary_files} binary file(s) skipped")
    if config.num_shards > 1:
        why.append(f"shard {config.shard_index} of {config.num_shards}")
    return (f"{where}: no text to build instances from ({', '.join(why)}); check the paths "
            f"and --input-format {config.input_format}")


def _build_instances(tokenizer: BertTokenizer, shared: _Shared, pool: Any, workers: int,
                     progress: bool, out: Path) -> dict:
    """Pass 2: instances and masks of each block, written in block order."""
    from tqdm import tqdm

    config = shared.config
    store = DocStore(shared.store_dir)
    blocks = _blocks(store, config.block_tokens)
    writer = ShardWriter(out, smallest_uint(tokenizer.vocab_size - 1),
                         smallest_uint(config.max_seq_length), config.masking == "static",
                         config.pack)
    labels = np.zeros(3, dtype=np.int64)  # counts of -1, 0, 1
    bar = tqdm(total=len(store), unit="doc", desc="instances", disable=not progress,
               dynamic_ncols=True)
    for (_, lo, hi), res in zip(blocks, _ordered_map(_block_task, blocks, pool, 2 * workers),
                                strict=True):
        writer.add(res["mat"], res["labels"], res["a_doc"], res["b_doc"], res["masks"],
                   res.get("packed"))
        labels += np.bincount(res["labels"].astype(np.int64) + 1, minlength=3)
        bar.update(hi - lo)
        bar.set_postfix(instances=writer.n_instances, refresh=False)
    bar.close()
    if writer.n_instances == 0:
        raise ValueError("the documents gave no instances (every sentence too short for "
                         f"--objective {config.objective}?)")
    return {"writer": writer, "labels": labels.tolist(), "blocks": len(blocks)}


def _meta(files: list[Path], tokenizer: BertTokenizer, config: CreateConfig, stats: ReadStats,
          store: dict, extra: dict, counts: dict) -> dict:
    writer = counts["writer"]
    none, is_next, not_next = counts["labels"]
    return {
        "format_version": FORMAT_VERSION,
        "tokenizer": {"source": tokenizer.source, "fingerprint": tokenizer.fingerprint(),
                      "vocab_size": tokenizer.vocab_size, "lowercase": tokenizer.lowercase,
                      "cls_id": tokenizer.cls_id, "sep_id": tokenizer.sep_id,
                      "mask_id": tokenizer.mask_id, "pad_id": tokenizer.pad_id},
        "parameters": asdict(config),
        "inputs": [str(f) for f in files],
        "counts": {"instances": writer.n_instances, "tokens": writer.n_tokens,
                   "masked_tokens": writer.n_masked, "is_next": is_next, "not_next": not_next,
                   "no_label": none, "blocks": counts["blocks"],
                   "documents": store["documents"], "sentences": store["sentences"],
                   "corpus_tokens": store["tokens"],
                   **({"segments": writer.n_segments} if config.pack else {})},
        "reading": {"files": stats.files, "bytes": stats.bytes,
                    "replaced_utf8_lines": stats.replaced_lines,
                    "binary_files_skipped": stats.binary_files,
                    "long_lines_split": stats.long_lines,
                    "long_sentences_split": extra["long_sentences"],
                    "empty_documents": store["empty_documents"],
                    "bad_json_lines": extra["bad_json_lines"], "warnings": stats.warnings},
        "dtypes": {"input_ids": str(smallest_uint(tokenizer.vocab_size - 1)),
                   "positions": str(smallest_uint(config.max_seq_length))},
    }
