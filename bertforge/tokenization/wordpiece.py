"""BERT's WordPiece tokenizer with exact BERT semantics, on the Rust ``tokenizers`` engine.

The rules (Devlin et al.'s ``tokenization.py``):
1. clean: drop NUL, U+FFFD and control characters; every whitespace character -> space;
2. put spaces around CJK ideographs (so Chinese becomes one token per character);
3. optionally lower-case and strip accents (NFD, then drop category Mn);
4. split on whitespace and on punctuation (ASCII 33-47, 58-64, 91-96, 123-126 and Unicode P*);
5. greedy longest-match-first WordPiece with ``##`` continuations; a word longer than
   ``max_input_chars_per_word`` characters, or one that cannot be covered, becomes [UNK].

Google's code uses 200 as that limit and Hugging Face's 100; a Google ``vocab.txt`` gets
200, a Hugging Face ``tokenizer.json`` keeps the limit written in it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
GOOGLE_MAX_CHARS_PER_WORD = 200

Truncation = Literal["longest_first", "only_first", "only_second"] | None
TRUNCATIONS = ("longest_first", "only_first", "only_second", None)
PADDINGS = ("longest", "max_length")


class TokenizerError(ValueError):
    """A vocabulary or tokenizer file is missing or wrong; the message names the file."""


class Encoding:
    """One encoded input: ``[CLS] A [SEP]`` or ``[CLS] A [SEP] B [SEP]`` (a thin view of
    the Rust engine's encoding; fields are read on access).

    ``offsets`` are (start, end) character offsets into the original text of the segment
    the token came from (``sequence_ids`` says which: 0 = A, 1 = B, None = special).
    """

    __slots__ = ("_enc",)

    def __init__(self, rust_encoding: object) -> None:
        self._enc = rust_encoding

    ids = property(lambda self: self._enc.ids, doc="token ids, list[int]")
    type_ids = property(lambda self: self._enc.type_ids, doc="segment ids (0 = A, 1 = B)")
    tokens = property(lambda self: self._enc.tokens, doc="WordPiece tokens")
    offsets = property(lambda self: self._enc.offsets, doc="(start, end) character offsets")
    attention_mask = property(lambda self: self._enc.attention_mask)
    special_tokens_mask = property(lambda self: self._enc.special_tokens_mask)
    word_ids = property(lambda self: self._enc.word_ids, doc="word index per token or None")
    sequence_ids = property(lambda self: self._enc.sequence_ids, doc="0, 1 or None")

    def __len__(self) -> int:
        return len(self._enc.ids)

    def __repr__(self) -> str:
        return f"Encoding(tokens={self.tokens!r})"


@dataclass
class BatchEncoding:
    """A padded batch: arrays are int64 [B, S]; ``encodings`` keep tokens and offsets."""

    input_ids: np.ndarray
    token_type_ids: np.ndarray
    attention_mask: np.ndarray
    encodings: list[Encoding]

    def __len__(self) -> int:
        return len(self.encodings)


class BertTokenizer:
    """WordPiece tokenizer. Build with ``from_vocab`` or ``load_tokenizer(path)``."""

    def __init__(self, backend: Tokenizer, lowercase: bool, source: str = "<memory>") -> None:
        # A tokenizer.json saved by transformers may carry the engine's own truncation and
        # padding (all-MiniLM-L6-v2's: 128 tokens, padded to 128). bertforge truncates and
        # pads itself, and code that calls the engine directly (the corpus encoder) needs
        # every token: with them left on, `data create` kept 128 ids per batch of text.
        backend.no_truncation()
        backend.no_padding()
        self.backend = backend
        self.lowercase = lowercase
        self.source = source
        self.vocab: dict[str, int] = backend.get_vocab(with_added_tokens=False)
        self._inv = {i: t for t, i in self.vocab.items()}
        if "[UNK]" not in self.vocab:
            raise TokenizerError(f"{source}: the vocabulary has no [UNK] token")

    # ------------------------------------------------------------ construction
    @classmethod
    def from_vocab(cls, vocab: Sequence[str] | dict[str, int], lowercase: bool = True,
                   strip_accents: bool | None = None, tokenize_chinese_chars: bool = True,
                   max_input_chars_per_word: int = GOOGLE_MAX_CHARS_PER_WORD,
                   source: str = "<memory>") -> BertTokenizer:
        """A tokenizer from an ordered token list (line i = id i) or a token->id dict."""
        if not isinstance(vocab, dict):
            vocab = {tok: i for i, tok in enumerate(vocab)}  # a repeated token keeps its last id
        if "[UNK]" not in vocab:
            raise TokenizerError(f"{source}: the vocabulary has no [UNK] token")
        backend = Tokenizer(WordPiece(vocab, unk_token="[UNK]",
                                      max_input_chars_per_word=max_input_chars_per_word))
        backend.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=tokenize_chinese_chars,
            strip_accents=strip_accents, lowercase=lowercase)
        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        backend.decoder = decoders.WordPiece(prefix="##")
        _add_specials(backend, vocab)
        return cls(backend, lowercase, source)

    # ------------------------------------------------------------------ ids
    def token_id(self, token: str) -> int:
        """The id of ``token``; a clear error when the vocabulary lacks it."""
        try:
            return self.vocab[token]
        except KeyError:
            raise TokenizerError(f"{self.source}: the vocabulary has no {token} token") from None

    @property
    def pad_id(self) -> int:
        return self.vocab.get("[PAD]", 0)

    @property
    def cls_id(self) -> int:
        return self.token_id("[CLS]")

    @property
    def sep_id(self) -> int:
        return self.token_id("[SEP]")

    @property
    def mask_id(self) -> int:
        return self.token_id("[MASK]")

    @property
    def unk_id(self) -> int:
        return self.vocab["[UNK]"]

    @property
    def vocab_size(self) -> int:
        return max(self.vocab.values()) + 1

    def special_ids(self) -> set[int]:
        """Ids of the special tokens present ([PAD] [UNK] [CLS] [SEP] [MASK])."""
        return {self.vocab[t] for t in SPECIAL_TOKENS if t in self.vocab}

    def convert_tokens_to_ids(self, tokens: Sequence[str]) -> list[int]:
        return [self.vocab.get(t, self.unk_id) for t in tokens]

    def convert_ids_to_tokens(self, ids: Sequence[int]) -> list[str]:
        return [self._inv.get(int(i), "[UNK]") for i in ids]

    # ------------------------------------------------------------- encoding
    def tokenize(self, text: str) -> list[str]:
        """WordPiece tokens of ``text``, no special tokens added."""
        self.backend.no_truncation()
        self.backend.no_padding()
        return self.backend.encode(text, add_special_tokens=False).tokens

    def tokenize_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, no special tokens, in parallel (the fast path for corpora)."""
        self.backend.no_truncation()
        self.backend.no_padding()
        return [e.ids for e in self.backend.encode_batch(list(texts), add_special_tokens=False)]

    def encode(self, text: str, pair: str | None = None, max_length: int | None = None,
               truncation: Truncation = "longest_first") -> Encoding:
        """``[CLS] text [SEP] (pair [SEP])`` with ids, segment ids, tokens and offsets; an
        empty ``pair`` is none."""
        return self.encode_each([text], None if pair is None else [pair], max_length,
                                truncation)[0][0]

    def encode_batch(self, texts: str | Iterable[str], pairs: str | Iterable[str] | None = None,
                     max_length: int | None = None, truncation: Truncation = "longest_first",
                     padding: Literal["longest", "max_length", True] = "longest"
                     ) -> BatchEncoding:
        """Encode many inputs in parallel and pad them into int64 [B, S] arrays.
        The ``encodings`` are unpadded. A single string is a batch of one input.
        ``padding=True`` (transformers' spelling) is ``"longest"``."""
        if padding is True:
            padding = "longest"
        if padding not in PADDINGS:
            raise ValueError(f"padding {padding!r}: choose one of {PADDINGS}")
        if padding == "max_length" and max_length is None:
            raise ValueError("padding='max_length' needs max_length")
        encodings, _ = self.encode_each(texts, pairs, max_length, truncation)
        width = max((len(e) for e in encodings), default=0)
        if padding == "max_length":
            width = max(width, max_length or 0)
        ids = np.full((len(encodings), width), self.pad_id, dtype=np.int64)
        type_ids = np.zeros_like(ids)
        mask = np.zeros_like(ids)
        for row, enc in enumerate(encodings):
            n = len(enc)
            ids[row, :n], type_ids[row, :n], mask[row, :n] = enc.ids, enc.type_ids, 1
        return BatchEncoding(ids, type_ids, mask, encodings)

    def encode_each(self, texts: str | Iterable[str], pairs: str | Iterable[str] | None = None,
                    max_length: int | None = None, truncation: Truncation = "longest_first"
                    ) -> tuple[list[Encoding], list[int]]:
        """Unpadded encodings of every input, and the positions of the inputs that had to be
        cut to ``max_length``. ``texts`` and ``pairs`` are strings or iterables of strings
        (a single string is one input, never a sequence of characters).

        Everything is encoded in one parallel call; inputs over ``max_length`` are then
        re-encoded segment by segment, cut here and joined with the special tokens. The
        Rust engine's own truncation is not used: on a long pair it builds every
        combination of overflowing windows and can exhaust memory."""
        if truncation not in TRUNCATIONS:
            raise ValueError(f"truncation {truncation!r}: choose one of {TRUNCATIONS}")
        texts = [texts] if isinstance(texts, str) else list(texts)
        if pairs is not None:
            pairs = [pairs] if isinstance(pairs, str) else list(pairs)
            if len(pairs) != len(texts):
                raise ValueError(f"{len(texts)} texts but {len(pairs)} pairs")
        self.backend.no_truncation()
        self.backend.no_padding()
        # an empty (or None) second segment is no second segment, as transformers'
        # tokenizer(text, "") and Google's `if example.text_b:` have it: [CLS] A [SEP]
        inputs = texts if pairs is None else [
            (t, p) if p else t for t, p in zip(texts, pairs, strict=True)]
        with _rust_errors():
            encoded = self.backend.encode_batch(inputs)
        out = [Encoding(e) for e in encoded]
        if max_length is None or truncation is None:
            return out, []
        cut = [i for i, enc in enumerate(encoded) if len(enc.ids) > max_length]
        for i in cut:  # only the inputs that are too long are redone
            out[i] = self._truncated(texts[i], pairs[i] or None if pairs is not None else None,
                                     max_length, truncation)
        return out, cut

    def _truncated(self, text: str, pair: str | None, max_length: int,
                   truncation: str) -> Encoding:
        with _rust_errors():
            a = self.backend.encode(text, add_special_tokens=False)
            b = None if pair is None else self.backend.encode(pair, add_special_tokens=False)
        _truncate_pair(a, b, max_length - (3 if b is not None else 2), truncation)
        return Encoding(self.backend.post_process(a, b, add_special_tokens=True))


    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        """Ids back to text (``##`` pieces joined; lower-casing is not undone)."""
        return self.backend.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    # ----------------------------------------------------------------- saving
    def save(self, path: str | os.PathLike) -> None:
        """Write ``vocab.txt``, ``tokenizer.json`` and ``tokenizer_config.json`` into ``path``."""
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        by_id = sorted(self.vocab.items(), key=lambda kv: kv[1])
        (out / "vocab.txt").write_text("".join(t + "\n" for t, _ in by_id), encoding="utf-8")
        self.backend.save(str(out / "tokenizer.json"))
        config = {"do_lower_case": self.lowercase, "tokenizer_class": "BertTokenizer",
                  "model_max_length": 512, "unk_token": "[UNK]", "sep_token": "[SEP]",
                  "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]"}
        (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n",
                                                   encoding="utf-8")

    def fingerprint(self) -> str:
        """sha256 of the vocabulary and normalisation settings (tags data built with it)."""
        h = hashlib.sha256()
        for tok, i in sorted(self.vocab.items(), key=lambda kv: kv[1]):
            h.update(f"{i}\t{tok}\n".encode())
        h.update(json.dumps(json.loads(self.backend.normalizer.__getstate__())
                            if self.backend.normalizer else None, sort_keys=True).encode())
        return h.hexdigest()


@contextmanager
def _rust_errors() -> Iterator[None]:
    """Turn the Rust engine's bare exceptions into TokenizerError."""
    try:
        yield
    except TypeError as err:
        raise TokenizerError(f"texts must be str: {err}") from None
    except Exception as err:  # tokenizers raises plain Exception
        raise TokenizerError(f"tokenizer failed: {err}") from None


def _truncate_pair(a: object, b: object | None, budget: int, truncation: str) -> None:
    """Cut the segments (in place) so that their tokens fit ``budget``.

    ``longest_first`` removes one token at a time from the longer segment (from the second
    on a tie), as Google's ``_truncate_seq_pair`` does (transformers' Rust path breaks
    ties towards the first segment, its Python path as Google); ``only_first``/``only_second`` cut
    only that segment and refuse when it cannot absorb the whole excess."""
    n_a, n_b = len(a.ids), len(b.ids) if b is not None else 0
    excess = n_a + n_b - budget
    if excess <= 0:
        return
    if budget < 0:
        raise TokenizerError("max_length is too small to hold the special tokens")
    if truncation == "longest_first":
        # closed form of the one-at-a-time loop: level the longer down, then alternate
        # (each tie takes from the second segment first)
        gap = abs(n_a - n_b)
        level = min(excess, gap)
        if n_a > n_b:
            n_a -= level
        else:
            n_b -= level
        rest = excess - level
        n_b -= rest - rest // 2
        n_a -= rest // 2
    else:
        cut_first = truncation == "only_first" or b is None
        room = n_a if cut_first else n_b
        if excess >= room:  # as transformers: a segment may not be cut to nothing
            raise TokenizerError(
                f"cannot truncate to the maximum length with '{truncation}': the segment "
                "that may not be cut is already too long; use 'longest_first' or a larger "
                "max_length")
        n_a, n_b = (n_a - excess, n_b) if cut_first else (n_a, n_b - excess)
    a.truncate(n_a)
    if b is not None:
        b.truncate(n_b)


def _add_specials(backend: Tokenizer, vocab: dict[str, int]) -> None:
    """Register the special tokens (so "[MASK]" typed in text stays one token) and the
    ``[CLS] A [SEP] B [SEP]`` template with segment ids 0 / 1."""
    present = [t for t in SPECIAL_TOKENS if t in vocab]
    backend.add_special_tokens(present)
    if "[CLS]" in vocab and "[SEP]" in vocab:
        cls_id, sep_id = vocab["[CLS]"], vocab["[SEP]"]
        backend.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A:0 [SEP]:0 $B:1 [SEP]:1",
            special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
