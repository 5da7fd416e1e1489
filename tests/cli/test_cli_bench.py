"""``bertforge bench`` produces its report (figures themselves belong in bench/RESULTS.md)."""

from __future__ import annotations

import json

import pytest
import torch
from _helpers import need_data

from bertforge.cli.bench import make_batches, useful_flops
from bertforge.cli.main import main
from bertforge.config import preset
from bertforge.tokenization import load_tokenizer

pytest.importorskip("transformers")


@pytest.mark.parametrize("mode", ["inference", "pretrain", "finetune"])
def test_bench_report_fields(mode, capsys):
    need_data("glue", "MRPC")
    code = main(["bench", mode, "--preset", "tiny", "--seq-len", "64", "--batch-size", "4",
                 "--steps", "1", "--warmup", "1", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    for name in ("bertforge", "transformers"):
        assert report[name]["real_tokens_per_s"] > 0
        assert 0 < report[name]["mfu"] < 1.5
    assert report["real_tokens"] > 0 and 0 <= report["pad_fraction"] < 1
    # the parity check the benchmark runs on its own device (here the CPU): our encoder
    # (unpadded where a batch has over 10% padding) computes transformers' function in
    # fp32, and in bf16 stays within bf16's rounding (its residual stream is bf16: seen
    # 5e-3 on this random model, where transformers' fp32 stream errs by 3.5e-4)
    parity = report["parity"]
    assert parity["fp32_max_abs_diff"] < 1e-4
    assert 0 < parity["bf16_rel_error_ours"] < 1.5e-2
    assert not report["fp32_norms"]


def test_bench_fp32_norms_err_like_transformers(capsys):
    need_data("glue", "MRPC")
    code = main(["bench", "inference", "--preset", "tiny", "--seq-len", "64", "--batch-size",
                 "4", "--steps", "1", "--warmup", "1", "--fp32-norms", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    parity = report["parity"]
    # with autocast's fp32 rule for the norms ours is transformers' bf16 computation
    assert report["fp32_norms"]
    assert parity["bf16_rel_error_ours"] < 1.5 * parity["bf16_rel_error_transformers"] + 1e-4


def test_pretrain_batches_follow_the_masking_rule():
    tok = load_tokenizer(need_data("vocab", "bert_uncased_en_vocab.txt"))
    need_data("corpus-en-books")
    batches = make_batches(tok, "pretrain", 128, 16, 3, seed=0, data=need_data())
    mask_share = []
    for b in batches:
        lengths = b["attention_mask"].sum(1)
        masked = (b["masked_labels"] != -100).sum(1)
        want = torch.clamp(torch.round(lengths * 0.15), 1, 20)
        assert torch.equal(masked, want.long())
        rows = torch.arange(len(lengths))[:, None]
        real = b["masked_labels"] != -100
        # the full-width labels (transformers') hold the same targets at the same places
        assert torch.equal(b["full_labels"][rows, b["masked_positions"]][real],
                           b["masked_labels"][real])
        assert int((b["full_labels"] != -100).sum()) == int(real.sum())
        shown = b["input_ids"][rows, b["masked_positions"]][real]
        mask_share.append(float((shown == tok.mask_id).float().mean()))
    # 80% of the chosen tokens become [MASK] (the rest stay or turn random): ~900 draws
    assert abs(sum(mask_share) / len(mask_share) - 0.8) < 0.06
    assert useful_flops(preset("tiny"), batches, "pretrain") > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message where CUDA is absent")
def test_bench_on_a_missing_gpu_is_a_one_line_error(capsys):
    code = main(["bench", "inference", "--preset", "tiny", "--device", "cuda", "--steps", "1"])
    assert code == 2
    err = capsys.readouterr().err
    assert "CUDA is not available" in err and "Traceback" not in err
