"""The residual stream under bf16 autocast: ``bf16_norms`` makes the LayerNorms hand on
bf16 (the kernel still accumulates in fp32), where autocast's own rule would make every
norm's output fp32.

Checked against an fp32 reference on all-MiniLM-L6-v2 with real sentences (GLUE SST-2
dev): the bf16 path must stay within bf16 tolerance, and as close to fp32 as
transformers' own bf16 autocast path is, within a small factor.
"""

from __future__ import annotations

import pytest
import torch
from _helpers import need_data

from bertforge.model import BertModel
from bertforge.training.precision import Bf16LayerNorm, bf16_norms

BF16 = torch.bfloat16


def _norm_pair(seed: int = 0) -> tuple[Bf16LayerNorm, torch.nn.LayerNorm]:
    gen = torch.Generator().manual_seed(seed)
    ours, plain = Bf16LayerNorm(48, eps=1e-12), torch.nn.LayerNorm(48, eps=1e-12)
    with torch.no_grad():
        for p, q in zip(ours.parameters(), plain.parameters(), strict=True):
            p.copy_(torch.randn(p.shape, generator=gen))
            q.copy_(p)
    return ours, plain


def test_outside_bf16_autocast_the_norm_is_nn_layer_norm():
    ours, plain = _norm_pair()
    x = torch.randn(5, 7, 48, generator=torch.Generator().manual_seed(1)) * 3 + 1
    assert torch.equal(ours(x), plain(x))
    with torch.autocast("cpu", dtype=torch.float16):  # fp16: autocast's rule, untouched
        assert torch.equal(ours(x), plain(x))
    assert bf16_norms(ours, False) == 1 and type(ours) is torch.nn.LayerNorm
    with torch.autocast("cpu", dtype=BF16):
        assert torch.equal(ours(x), plain(x))


def test_under_bf16_autocast_the_norm_hands_on_bf16_within_its_rounding():
    ours, plain = _norm_pair()
    x = torch.randn(5, 7, 48, generator=torch.Generator().manual_seed(2)) * 3 + 1
    x.requires_grad_(True)
    ref = plain(x)  # fp32
    with torch.autocast("cpu", dtype=BF16):
        y = ours(x)
        assert plain(x).dtype == torch.float32  # what an fp32 input gets from nn.LayerNorm
    assert y.dtype == BF16
    # a bf16 input rounding (2^-9 relative) and an output rounding, scaled by |gamma|
    err = (y.float() - ref).abs().max() / ref.abs().max()
    assert err < 1e-2
    y.float().sum().backward()
    assert x.grad is not None and x.grad.dtype == torch.float32
    assert ours.weight.grad is not None and ours.weight.grad.dtype == torch.float32


def _sst2_batch(minilm: object, count: int = 16) -> dict[str, torch.Tensor]:
    from bertforge.tokenization import load_tokenizer

    rows = need_data("glue", "SST-2", "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
    tok = load_tokenizer(minilm)
    enc = tok.encode_batch([r.split("\t")[0] for r in rows[:count]], max_length=64)
    return {"input_ids": torch.from_numpy(enc.input_ids).long(),
            "attention_mask": torch.from_numpy(enc.attention_mask).long()}


def test_minilm_keeps_a_bf16_residual_stream_within_bf16_tolerance(minilm_dir):
    transformers = pytest.importorskip("transformers")
    ours = BertModel.from_pretrained(str(minilm_dir)).eval()
    theirs = transformers.BertModel.from_pretrained(minilm_dir, attn_implementation="sdpa").eval()
    batch = _sst2_batch(minilm_dir)
    real = batch["attention_mask"].bool()
    bf16_norms(ours)
    with torch.no_grad():
        ref = ours(**batch).last_hidden_state[real]

        def run(model: torch.nn.Module) -> tuple[torch.Tensor, list[torch.dtype]]:
            dtypes: list[torch.dtype] = []
            hooks = [layer.register_forward_hook(lambda m, i, o: dtypes.append(o[0].dtype))
                     for layer in getattr(model, "layers", [])]
            with torch.autocast("cpu", dtype=BF16):
                out = model(**batch).last_hidden_state[real].float()
            for h in hooks:
                h.remove()
            return out, dtypes

        low, low_dtypes = run(ours)
        bf16_norms(ours, False)
        wide, wide_dtypes = run(ours)
        bf16_norms(ours)
        hf, _ = run(theirs)
    assert set(low_dtypes) == {BF16} and len(low_dtypes) == 6  # every layer hands on bf16
    assert set(wide_dtypes) == {torch.float32}  # autocast's rule: fp32 between the norms

    def rel(x: torch.Tensor) -> float:
        return float((x - ref).norm() / ref.norm())

    # seen (torch 2.13 CPU): ours 1.13e-2 with bf16 norms, 6.43e-3 with fp32 norms, the
    # same 6.43e-3 as transformers; the worst token's cosine to fp32 0.99988
    assert rel(low) < 2.5e-2
    assert rel(low) < 3 * rel(hf)
    assert rel(wide) < 1.5 * rel(hf)
    cos = torch.nn.functional.cosine_similarity(low, ref, dim=-1)
    assert float(cos.min()) > 0.999


def test_bf16_norms_counts_every_norm():
    from _helpers import tiny_config

    from bertforge.model import BertForPreTraining

    model = BertForPreTraining(tiny_config())
    names = dict(model.state_dict())
    # embeddings + two per layer (2 layers) + the MLM head's
    assert bf16_norms(model) == 1 + 2 * 2 + 1
    assert not any(type(m) is torch.nn.LayerNorm for m in model.modules())
    assert bf16_norms(model, False) == 1 + 2 * 2 + 1
    assert not any(isinstance(m, Bf16LayerNorm) for m in model.modules())
    assert dict(model.state_dict()).keys() == names.keys()  # checkpoints keep their names


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_pre_training_keeps_bf16_norms_only_in_bf16(tmp_path, precision):
    from test_pretrain_loop import build_corpus, run_config

    from bertforge.training.distributed import init_distributed
    from bertforge.training.pretrain import PreTrainer

    cfg = run_config(build_corpus(tmp_path / "corpus"), tmp_path / "run", precision=precision)
    trainer = PreTrainer(cfg, init_distributed("cpu"), torch.device("cpu"))
    kinds = {type(m) for m in trainer.raw.modules() if isinstance(m, torch.nn.LayerNorm)}
    assert kinds == ({Bf16LayerNorm} if precision == "bf16" else {torch.nn.LayerNorm})
