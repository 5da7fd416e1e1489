"""Loading tokenizers from disk and training new WordPiece vocabularies."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from tokenizers import Tokenizer, trainers

from bertforge.tokenization.wordpiece import (
    GOOGLE_MAX_CHARS_PER_WORD,
    SPECIAL_TOKENS,
    BertTokenizer,
    TokenizerError,
    _add_specials,
)


def read_utf8_lines(path: str | os.PathLike, error: type[Exception] = TokenizerError
                    ) -> list[str]:
    """The lines of a UTF-8 text file: no line endings, no byte-order mark, and a final
    newline adds no line. Invalid UTF-8 raises ``error`` as ``FILE:LINE:COLUMN: …``."""
    path = Path(path)
    if path.is_dir():
        raise error(f"{path}: is a directory; give a text file (one input per line)")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: input file not found")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise error(f"{path}:{line}:{column}: not valid UTF-8 (byte 0x{data[err.start]:02x});"
                    " re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None
    lines = text.removeprefix("\ufeff").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def read_vocab(path: str | os.PathLike) -> list[str]:
    """Google's ``vocab.txt``: one token per line, line number = id (whitespace stripped)."""
    path = Path(path)
    if not path.is_file():
        raise TokenizerError(f"{path}: vocabulary file not found")
    tokens = [line.strip() for line in read_utf8_lines(path)]
    if not tokens:
        raise TokenizerError(f"{path}: the vocabulary is empty")
    if "[UNK]" not in tokens:
        raise TokenizerError(f"{path}: the vocabulary has no [UNK] token; is this a BERT vocab?")
    return tokens


def guess_lowercase(tokens: Iterable[str]) -> bool:
    """Guess whether a vocabulary is uncased: fewer than 1% of its ordinary tokens hold an
    upper-case letter (bert-base-uncased has 2 such of 30,522, ``ℝ``; the cased one 8,368)."""
    ordinary = [t for t in tokens if not (t.startswith("[") and t.endswith("]"))]
    upper = sum(any(ch.isupper() for ch in t) for t in ordinary)
    return upper < 0.01 * max(len(ordinary), 1)


def _read_tokenizer_config(folder: Path) -> dict:
    cfg_path = folder / "tokenizer_config.json"
    if not cfg_path.is_file():
        return {}
    try:
        return json.loads(cfg_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise TokenizerError(f"{cfg_path}: not valid JSON ({err})") from None


def _load_tokenizer_json(path: Path, lowercase: bool | None) -> BertTokenizer:
    try:
        backend = Tokenizer.from_file(str(path))
    except Exception as err:  # the Rust side raises plain Exception with its own text
        raise TokenizerError(f"{path}: cannot read this tokenizer.json ({err})") from None
    state = json.loads(backend.model.__getstate__())
    if state.get("type") != "WordPiece":
        raise TokenizerError(f"{path}: a {state.get('type')} tokenizer, not WordPiece; "
                             "bertforge reads BERT (WordPiece) tokenizers")
    norm = json.loads(backend.normalizer.__getstate__()) if backend.normalizer else {}
    file_lower = bool(norm.get("lowercase", False))
    if lowercase is not None and lowercase != file_lower:
        vocab = backend.get_vocab(with_added_tokens=False)
        return BertTokenizer.from_vocab(vocab, lowercase=lowercase, source=str(path),
                                        max_input_chars_per_word=state.get(
                                            "max_input_chars_per_word", 100))
    _add_specials(backend, backend.get_vocab(with_added_tokens=False))
    return BertTokenizer(backend, file_lower, source=str(path))


def load_tokenizer(path: str | os.PathLike, lowercase: bool | None = None) -> BertTokenizer:
    """Load a BERT tokenizer from a directory or file.

    ``path`` may be a directory with ``tokenizer.json`` (Hugging Face) or ``vocab.txt``
    (Google; ``tokenizer_config.json``'s ``do_lower_case`` is honoured), or either file.
    ``lowercase=None`` takes the setting from the files, else guesses it from the vocab.
    """
    path = Path(path)
    if not path.exists():
        raise TokenizerError(f"{path}: no such file or directory")
    folder = path if path.is_dir() else path.parent
    if path.is_file() and path.suffix == ".json":
        return _load_tokenizer_json(path, lowercase)
    if path.is_dir() and (path / "tokenizer.json").is_file():
        return _load_tokenizer_json(path / "tokenizer.json", lowercase)
    vocab_path = path if path.is_file() else path / "vocab.txt"
    if not vocab_path.is_file():
        raise TokenizerError(f"{path}: found neither tokenizer.json nor vocab.txt")
    tokens = read_vocab(vocab_path)
    if lowercase is None:
        lowercase = _read_tokenizer_config(folder).get("do_lower_case")
    if lowercase is None:
        lowercase = guess_lowercase(tokens)
    return BertTokenizer.from_vocab(tokens, lowercase=bool(lowercase), source=str(vocab_path),
                                    max_input_chars_per_word=GOOGLE_MAX_CHARS_PER_WORD)


def iter_text_lines(files: Iterable[str | os.PathLike], counter: dict | None = None
                    ) -> Iterator[str]:
    """Lines of UTF-8 text files (``.gz`` too); invalid bytes become U+FFFD and are counted
    in ``counter["replaced_lines"]``."""
    for name in files:
        path = Path(name)
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as fh:
            for raw in fh:
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    line = raw.decode("utf-8", errors="replace")
                    if counter is not None:
                        counter["replaced_lines"] = counter.get("replaced_lines", 0) + 1
                yield line


def train_wordpiece(files: Iterable[str | os.PathLike], vocab_size: int, lowercase: bool = True,
                    min_frequency: int = 2, limit_alphabet: int | None = None,
                    show_progress: bool = True) -> BertTokenizer:
    """Learn a WordPiece vocabulary of ``vocab_size`` tokens from text files.

    Ids 0-4 are [PAD] [UNK] [CLS] [SEP] [MASK], then the single characters, the
    ``##`` single characters (both in code-point order) and the merged pieces in the order
    they were learnt; the same BERT normalisation and pre-tokenisation as encoding uses
    are applied while counting.

    The same corpus always gives the same vocabulary, ids included. ``tokenizers``' trainer
    numbers the ``##`` characters in hash-map order, and breaks ties between equally
    frequent merges by those numbers, so two trainings differed in ~150 ids of 4,000 and
    could differ in the tokens themselves (huggingface/tokenizers#1794). A first, cheap
    pass (no merges) finds the ``##`` characters; the real training then receives them
    in sorted order ahead of everything else, where their numbers are fixed.

    ``limit_alphabet`` keeps only that many of the most frequent characters (the rest
    become [UNK]); by default as many as the vocabulary has room for, at least 1,000.
    ``tokenizers``' own default of 1,000 turned 787 of the 1,787 characters of three
    chapters of a Chinese novel into [UNK] and left a 3,000-token vocabulary at 1,005.
    """
    files = [Path(f) for f in files]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise TokenizerError(f"corpus file not found: {', '.join(missing[:5])}")
    if vocab_size <= len(SPECIAL_TOKENS):
        raise TokenizerError(f"vocab size {vocab_size} leaves no room beyond the special tokens")
    if limit_alphabet is None:
        limit_alphabet = max(1000, vocab_size - len(SPECIAL_TOKENS))

    def train(first: list[str], size: int) -> dict[str, int]:
        backend = BertTokenizer.from_vocab(list(SPECIAL_TOKENS), lowercase=lowercase).backend
        trainer = trainers.WordPieceTrainer(
            vocab_size=size, min_frequency=min_frequency, limit_alphabet=limit_alphabet,
            special_tokens=first, continuing_subword_prefix="##", show_progress=show_progress)
        backend.train_from_iterator(iter_text_lines(files), trainer=trainer)
        return backend.get_vocab(with_added_tokens=False)

    alphabet = train(list(SPECIAL_TOKENS), 0)  # characters only: no merge is learnt
    continuing = sorted(t for t in alphabet if t.startswith("##") and len(t) == 3)
    vocab = train([*SPECIAL_TOKENS, *continuing], vocab_size)
    if len(vocab) <= len(SPECIAL_TOKENS):
        raise TokenizerError("the corpus produced no tokens: are the files empty?")
    rest = sorted(vocab, key=vocab.get)[len(SPECIAL_TOKENS) + len(continuing):]
    singles = [t for t in rest if len(t) == 1]
    tokens = [*SPECIAL_TOKENS, *singles, *continuing, *rest[len(singles):]]
    return BertTokenizer.from_vocab(tokens, lowercase=lowercase, source="trained")
