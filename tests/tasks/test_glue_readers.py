"""GLUE readers on the real files (every task present here) and on small made-up samples
for the tasks too large to bring (MNLI, QQP)."""

from __future__ import annotations

from pathlib import Path

import pytest
from _helpers import need_data

from bertforge.tasks.common import TaskDataError
from bertforge.tasks.glue import GLUE, glue_task, read_glue, write_submission

# task -> split -> examples (the README's counts)
COUNTS = {"CoLA": {"train": 8551, "dev": 1043}, "SST-2": {"train": 67349, "dev": 872},
          "MRPC": {"train": 3668, "dev": 408}, "STS-B": {"train": 5749, "dev": 1500},
          "RTE": {"train": 2490, "dev": 277}, "WNLI": {"train": 635, "dev": 71},
          "QNLI": {"dev": 5463}}


@pytest.mark.parametrize("task", sorted(COUNTS))
def test_real_splits_read_completely_with_valid_labels(task: str) -> None:
    folder = need_data("glue", task)
    spec = GLUE[task]
    for split, count in COUNTS[task].items():
        examples = read_glue(folder, task, split)
        assert len(examples) == count
        assert all(e.text_a.strip() for e in examples)
        assert all((e.text_b is not None) == (spec.text_b is not None) for e in examples)
        if spec.is_regression:
            assert all(0.0 <= e.label <= 5.0 for e in examples)
        else:
            assert {e.label for e in examples} <= set(spec.labels)


@pytest.mark.parametrize("task", ["CoLA", "SST-2", "MRPC", "STS-B", "RTE", "WNLI", "QNLI"])
def test_real_test_splits_are_unlabelled_with_their_index(task: str) -> None:
    examples = read_glue(need_data("glue", task), task, "test")
    assert examples[0].label is None and examples[0].guid == "0"
    assert examples[-1].guid == str(len(examples) - 1)


def test_mrpc_keeps_quote_characters_literally() -> None:
    examples = read_glue(need_data("glue", "MRPC"), "MRPC", "dev")
    assert examples[0].text_b.startswith('" The foodservice pie business')
    assert examples[0].label == "1"


def test_diagnostic_is_read_as_mnli_test_split(tmp_path: Path) -> None:
    need_data("glue", "diagnostic")
    data = Path(need_data("glue")) / "MNLI"  # the folder need not exist: AX lives beside it
    examples = read_glue(data, "MNLI", "diagnostic")
    assert len(examples) == 1104 and examples[0].text_b == "The cat did not sit on the mat."


MNLI_HEADER = ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
               "sentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label")


def _mnli(folder: Path) -> None:
    folder.mkdir()
    row = "0\t1\t1e\tgov\t( x )\t( y )\t(ROOT x)\t(ROOT y)\tA man sleeps.\tA person rests.\t"
    (folder / "train.tsv").write_text(f"{MNLI_HEADER}\n{row}neutral\tentailment\n")
    dev = MNLI_HEADER.replace("label1\t", "label1\tlabel2\tlabel3\tlabel4\tlabel5\t")
    five = "neutral\t" * 5
    for split in ("dev_matched", "dev_mismatched"):
        (folder / f"{split}.tsv").write_text(f"{dev}\n{row}{five}contradiction\n")
    test = "index\tpromptID\tpairID\tgenre\ts1b\ts2b\ts1p\ts2p\tsentence1\tsentence2"
    for split in ("test_matched", "test_mismatched"):
        (folder / f"{split}.tsv").write_text(f"{test}\n{row.rstrip(chr(9))}\n")


def test_mnli_layout_matched_and_mismatched(tmp_path: Path) -> None:
    _mnli(tmp_path / "MNLI")
    spec = glue_task("mnli")
    assert spec.dev_splits == ("dev_matched", "dev_mismatched")
    train = read_glue(tmp_path / "MNLI", spec, "train")
    assert train[0].label == "entailment" and train[0].text_b == "A person rests."
    assert read_glue(tmp_path / "MNLI", spec, "dev_mismatched")[0].label == "contradiction"
    assert read_glue(tmp_path / "MNLI", spec, "test_matched")[0].label is None


def test_qqp_layout(tmp_path: Path) -> None:
    (tmp_path / "train.tsv").write_text("id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"
                                        "7\t1\t2\tHow old?\tWhat age?\t1\n")
    (tmp_path / "test.tsv").write_text("id\tquestion1\tquestion2\n3\tWhy?\tHow come?\n")
    assert read_glue(tmp_path, "QQP", "train")[0].label == "1"
    assert read_glue(tmp_path, "QQP", "test")[0].guid == "3"


def test_bad_label_names_file_line_and_field(tmp_path: Path) -> None:
    (tmp_path / "train.tsv").write_text("index\tsentence1\tsentence2\tlabel\n"
                                        "0\tA.\tB.\tentailment\n1\tC.\tD.\tmaybe\n")
    with pytest.raises(TaskDataError, match=r"train.tsv:3: field 'label' is 'maybe'"):
        read_glue(tmp_path, "RTE", "train")


def test_missing_column_and_empty_text_are_named(tmp_path: Path) -> None:
    (tmp_path / "dev.tsv").write_text("index\tsentence1\tlabel\n0\tA.\tentailment\n")
    with pytest.raises(TaskDataError, match=r"dev.tsv:2: the header has no column 'sentence2'"):
        read_glue(tmp_path, "RTE", "dev")
    (tmp_path / "dev.tsv").write_text("sentence\tlabel\n \t1\n")
    with pytest.raises(TaskDataError, match=r"dev.tsv:2: field 'sentence' is empty"):
        read_glue(tmp_path, "SST-2", "dev")


def test_unknown_task_lists_the_valid_ones() -> None:
    with pytest.raises(TaskDataError, match="CoLA, SST-2"):
        glue_task("sst-3")
    assert glue_task("sts_b").name == "STS-B" and glue_task("SST2").name == "SST-2"


def test_submission_format(tmp_path: Path) -> None:
    write_submission(tmp_path / "STS-B.tsv", ["0", "1"], [5.7, 2.25])
    assert (tmp_path / "STS-B.tsv").read_text() == "index\tprediction\n0\t5.000\n1\t2.250\n"
    write_submission(tmp_path / "RTE.tsv", ["0"], ["not_entailment"])
    assert (tmp_path / "RTE.tsv").read_text().splitlines()[1] == "0\tnot_entailment"
