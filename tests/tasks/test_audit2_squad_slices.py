"""SQuAD article slices: a slice past the file's articles was read as "no questions", the
fine-tuning trained and then died in evaluation with `KeyError: 'start_logits'` (the
training lost); errors inside a slice named the article by its place in the slice
(data[1]) instead of in the file (data[3])."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _helpers import need_data

from bertforge.cli.main import main
from bertforge.tasks.common import TaskDataError
from bertforge.tasks.squad import read_squad

DEV = ("squad-v1.1", "dev-v1.1.json")


def test_slice_past_the_articles_is_a_clear_error() -> None:
    path = need_data(*DEV)
    with pytest.raises(TaskDataError, match=r"slice 99:100 selects none of the file's 48"):
        read_squad(path, articles=slice(99, 100))


def test_finetune_with_an_empty_dev_slice_stops_before_training(minilm_dir: Path,
                                                                tmp_path: Path,
                                                                capsys) -> None:
    path = need_data(*DEV)
    out = tmp_path / "run"
    code = main(["finetune", "squad", "--train", str(path), "--dev", str(path),
                 "--train-articles", "0:1", "--dev-articles", "99:100", "--model",
                 str(minilm_dir), "--out", str(out), "--max-steps", "1", "--quiet"])
    assert code != 0
    err = capsys.readouterr().err
    assert "selects none" in err and "Traceback" not in err
    assert not (out / "metrics.jsonl").exists()  # refused before any training


def test_errors_inside_a_slice_name_the_files_article(tmp_path: Path) -> None:
    data = json.loads(need_data(*DEV).read_text(encoding="utf-8"))
    qa = data["data"][3]["paragraphs"][0]["qas"][0]
    qa["answers"][0]["answer_start"] += 1  # the text is no longer at its offset
    broken = tmp_path / "dev.json"
    broken.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(TaskDataError) as err:
        read_squad(broken, articles=slice(2, 4))
    assert "data[3].paragraphs[0]" in str(err.value), str(err.value)
