"""Reading documents and sentences: formats, piece boundaries, bad bytes, binary files."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from bertforge.pretraining.reader import ReadStats, iter_pieces, split_sentences


def test_english_sentences():
    text = ('Mr. Woodhouse sat down. "Is it true?" she asked. He said no! It cost $3.50 '
            "in 1815. See e.g. the notes. J. R. Smith came.")
    assert split_sentences(text) == ["Mr. Woodhouse sat down.", '"Is it true?" she asked.',
                                     "He said no!", "It cost $3.50 in 1815.",
                                     "See e.g. the notes.", "J. R. Smith came."]


def test_chinese_sentences():
    text = "他说：“你来了。”我不知道。真的吗？好！……后来呢"
    assert split_sentences(text) == ["他说：“你来了。”", "我不知道。", "真的吗？", "好！……",
                                     "后来呢"]


def _docs(pieces) -> dict[int, str]:
    out: dict[int, str] = {}
    for p in pieces:
        out[p.doc] = out.get(p.doc, "") + p.text
    return out


def test_blank_line_documents_across_piece_boundaries(tmp_path: Path):
    docs = [f"sentence {d} {i}." * (1 + d % 3) for d in range(40) for i in range(1)]
    text = "".join(f"{d}\nline two of {i}\n\n \n" for i, d in enumerate(docs))
    path = tmp_path / "a.txt"
    path.write_text(text)
    big = _docs(iter_pieces([path], "sentences", "blank-line", ReadStats()))
    small = _docs(iter_pieces([path], "sentences", "blank-line", ReadStats(), piece_bytes=7))
    assert len(big) == 40
    norm = {k: v.split() for k, v in big.items()}
    assert {k: v.split() for k, v in small.items()} == norm


def test_file_documents_jsonl_gzip(tmp_path: Path):
    (tmp_path / "a.txt").write_text("one. two.\n\nthree.\n")
    (tmp_path / "b.txt").write_text("four.\n")
    with gzip.open(tmp_path / "c.jsonl.gz", "wt") as fh:
        fh.write(json.dumps({"text": "five."}) + "\n\n" + json.dumps({"text": "six."}) + "\n")
    stats = ReadStats()
    docs = _docs(iter_pieces([tmp_path / "a.txt", tmp_path / "b.txt"], "text", "file", stats))
    assert list(docs) == [0, 1]
    pieces = list(iter_pieces([tmp_path / "c.jsonl.gz"], "jsonl", "blank-line", stats))
    assert pieces[0].doc == 0 and pieces[0].text.count("five") == 1


def test_invalid_utf8_counted_and_binary_skipped(tmp_path: Path):
    (tmp_path / "bad.txt").write_bytes(b"good line\nbad \xff\xfe line\nok\n")
    (tmp_path / "bin.dat").write_bytes(b"\x00\x01\x02" * 100)
    stats = ReadStats()
    docs = _docs(iter_pieces([tmp_path / "bad.txt", tmp_path / "bin.dat"], "sentences",
                             "blank-line", stats))
    assert stats.replaced_lines == 1 and stats.binary_files == 1
    assert "\ufffd" in docs[0]
    assert any("bin.dat" in w for w in stats.warnings)


def test_very_long_line_is_read_in_parts(tmp_path: Path):
    (tmp_path / "long.txt").write_text("word " * 50_000 + "\nend\n")
    stats = ReadStats()
    docs = _docs(iter_pieces([tmp_path / "long.txt"], "sentences", "blank-line", stats,
                             piece_bytes=10_000))
    assert stats.long_lines > 0
    assert docs[0].split() == ["word"] * 50_000 + ["end"]
