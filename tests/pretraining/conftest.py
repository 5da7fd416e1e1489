"""Shared fixtures: real text from ../shared/data, converted and built once per session."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bertforge.pretraining import CreateConfig, ShardDataset, create_pretraining_data
from bertforge.pretraining.reader import split_sentences
from bertforge.tokenization import load_tokenizer

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
BOOKS = DATA / "corpus-en-books"
ZH = DATA / "corpus-zh-classics"
WIKITEXT = DATA / "wikitext2"
UNCASED = DATA / "vocab" / "bert_uncased_en_vocab.txt"
CHINESE = DATA / "vocab" / "bert_chinese_vocab.txt"

needs_data = pytest.mark.skipif(not BOOKS.is_dir(), reason=f"real data not found at {DATA} "
                                "(see the project README: tests read ../shared/data)")


def book_files(limit_bytes: int) -> list[Path]:
    """Books from several authors, in a fixed order, up to about ``limit_bytes``."""
    out, size = [], 0
    by_author = [sorted(d.glob("*.txt")) for d in sorted(BOOKS.iterdir()) if d.is_dir()]
    for row in zip(*by_author, strict=False):
        for path in row:
            if size >= limit_bytes:
                return out
            out.append(path)
            size += path.stat().st_size
    return out


def to_sentence_lines(files: list[Path], out: Path) -> Path:
    """Google's format: one sentence per line, a blank line between books."""
    docs = []
    for f in files:
        text = f.read_text(encoding="utf-8", errors="replace").replace("\r\n", "\n")
        sentences = []
        for para in re.split(r"\n\s*\n", text):
            sentences += split_sentences(para.replace("\n", " "))
        docs.append("\n".join(sentences))
    out.write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    return out


@pytest.fixture(scope="session")
def uncased():
    if not UNCASED.is_file():
        pytest.skip(f"{UNCASED} not found")
    return load_tokenizer(UNCASED)


@pytest.fixture(scope="session")
def books_small(tmp_path_factory) -> Path:
    """About 2.5 MB of books (10+ documents) in Google's format."""
    if not BOOKS.is_dir():
        pytest.skip(f"real data not found at {DATA}")
    return to_sentence_lines(book_files(2_500_000), tmp_path_factory.mktemp("books") / "s.txt")


@pytest.fixture(scope="session")
def books_large(tmp_path_factory) -> Path:
    """About 6 MB of books: enough for over 100k masked tokens at dupe factor 1."""
    if not BOOKS.is_dir():
        pytest.skip(f"real data not found at {DATA}")
    return to_sentence_lines(book_files(6_000_000), tmp_path_factory.mktemp("booksl") / "s.txt")


@pytest.fixture(scope="session")
def static_ds(books_large, uncased, tmp_path_factory) -> ShardDataset:
    out = tmp_path_factory.mktemp("static") / "ds"
    create_pretraining_data([books_large], uncased, out, CreateConfig(dupe_factor=1, seed=7))
    return ShardDataset(out)


@pytest.fixture(scope="session")
def dynamic_ds(books_small, uncased, tmp_path_factory) -> ShardDataset:
    """Unmasked instances, with the document store kept for checking pairs."""
    out = tmp_path_factory.mktemp("dynamic") / "ds"
    create_pretraining_data([books_small], uncased, out,
                            CreateConfig(masking="dynamic", seed=3), keep_docstore=True)
    return ShardDataset(out)
