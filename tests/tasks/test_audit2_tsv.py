"""`finetune classify` on a TSV in GLUE's layout: a '"' is text, as in GLUE's files and
Google's run_classifier (csv without quoting). csv's default quoting refused a TSV
made of 400 MRPC rows ("more fields than the header's 3; quote fields holding the
delimiter": a sentence opening a quotation ran on into the next fields) and dropped the
quotes of a field that started with one."""

from __future__ import annotations

import csv
from pathlib import Path

from _helpers import need_data

from bertforge.tasks.classify import Columns, read_classification
from bertforge.tasks.common import TaskDataError


def _mrpc_rows(n: int) -> list[dict]:
    path = need_data("glue", "MRPC", "train.tsv")
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))[:n]


def test_tsv_of_mrpc_rows_reads_every_text_as_written(tmp_path: Path) -> None:
    rows = _mrpc_rows(400)
    assert sum(r["#1 String"].startswith('"') for r in rows) > 10  # the case at issue
    path = tmp_path / "mrpc.tsv"
    path.write_text("s1\ts2\tlabel\n" + "".join(
        f"{r['#1 String']}\t{r['#2 String']}\t{r['Quality']}\n" for r in rows),
        encoding="utf-8")
    examples = read_classification(path, Columns("s1", "s2", "label"))
    assert [(e.text_a, e.text_b, e.label) for e in examples] == [
        (r["#1 String"], r["#2 String"], r["Quality"]) for r in rows]


def test_tsv_with_a_tab_too_many_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text("text\tlabel\nfine\tpos\na\ttab\tneg\n", encoding="utf-8")
    try:
        read_classification(path, Columns("text", label="label"))
    except TaskDataError as err:
        message = str(err)
        assert message.startswith(f"{path}:3:") and "hold a tab" in message[len(str(path)):]
    else:
        raise AssertionError("a row with an extra field was accepted")
