"""``bertforge export``: a checkpoint directory -> ONNX (dynamic batch and sequence axes),
checked against PyTorch under onnxruntime."""

from __future__ import annotations

import argparse

from bertforge.cli.embed import require


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", metavar="DIR", default=None,
                        help="checkpoint directory: an encoder, or a sequence/token "
                             "classification or question-answering model")
    parser.add_argument("--out", metavar="FILE.onnx", default=None, help="the ONNX file")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    parser.add_argument("--no-verify", dest="verify", action="store_false",
                        help="skip the onnxruntime comparison")
    parser.add_argument("--atol", type=float, default=1e-4,
                        help="largest allowed |onnxruntime - PyTorch| (default 1e-4)")


def run(args: argparse.Namespace) -> int:
    from bertforge.inference.onnx_export import export_onnx

    require(args.model, "--model DIR", "export")
    require(args.out, "--out FILE.onnx", "export")
    report = export_onnx(args.model, args.out, opset=args.opset, verify=args.verify,
                         atol=args.atol)
    checked = (f"; onnxruntime matches PyTorch within {report.max_abs_diff:.1e}"
               if report.max_abs_diff is not None else "; not verified")
    print(f"exported {report.architecture} ({', '.join(report.outputs)}) to {report.path} "
          f"with dynamic batch and sequence axes{checked}")
    return 0
