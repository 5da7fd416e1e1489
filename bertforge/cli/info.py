"""``bertforge info``: parameter counts, broken down as the paper counts them."""

from __future__ import annotations

import argparse
import json

from bertforge.config import BertConfig, parameter_breakdown, preset, preset_names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--preset", help=f"one of: {', '.join(preset_names())}")
    src.add_argument("--model", metavar="DIR", help="a checkpoint directory")
    parser.add_argument("--vocab-size", type=int, default=None,
                        help="override the vocabulary size (default: 30522 for presets)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def config_for(args: argparse.Namespace) -> BertConfig:
    if args.model:
        from bertforge.interop.checkpoint import config_from
        config = config_from(args.model)
    else:
        config = preset(args.preset or "base")
    if args.vocab_size:
        config = config.replace(vocab_size=args.vocab_size)
    return config


def run(args: argparse.Namespace) -> int:
    config = config_for(args)
    counts = parameter_breakdown(config)
    name = args.model or args.preset or "base"
    if args.json:
        shape = {k: getattr(config, k) for k in ("num_hidden_layers", "hidden_size",
                                                  "num_attention_heads", "intermediate_size",
                                                  "vocab_size")}
        print(json.dumps({"model": name, **shape, **counts}, indent=2))
        return 0
    h, n = config.hidden_size, config.num_hidden_layers
    rows = [
        (f"token embeddings (V×H = {config.vocab_size}×{h})", counts["token_embeddings"]),
        (f"position embeddings ({config.max_position_embeddings}×H)",
         counts["position_embeddings"]),
        (f"segment embeddings ({config.type_vocab_size}×H)", counts["segment_embeddings"]),
        ("embedding LayerNorm (2H)", counts["embedding_layer_norm"]),
        ("per layer: attention (4H²+4H)", counts["attention_per_layer"]),
        ("per layer: feed-forward (2HI+I+H = 8H²+5H at I=4H)", counts["feed_forward_per_layer"]),
        ("per layer: LayerNorms (2×2H)", counts["layer_norms_per_layer"]),
        (f"all {n} layers", counts["encoder_layers_total"]),
        ("pooler (H²+H)", counts["pooler"]),
        ("total (encoder + pooler)", counts["total_parameters"]),
        ("MLM head (H²+H + 2H + V; decoder tied)", counts["mlm_head"]),
        ("NSP head (2H+2)", counts["nsp_head"]),
        ("total with pre-training heads", counts["total_with_pretraining_heads"]),
    ]
    print(f"{name}: L={n} H={h} A={config.num_attention_heads} I={config.intermediate_size}")
    width = max(len(r[0]) for r in rows)
    for label, value in rows:
        print(f"  {label:<{width}}  {value:>13,}  ({value / 1e6:.1f}M)")
    return 0
