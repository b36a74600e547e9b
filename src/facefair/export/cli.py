"""``facefair export CHECKPOINT --onnx OUT.onnx``."""

from __future__ import annotations

import argparse
import json


def _export(args) -> int:
    # Imported here so ``facefair --help`` works without torch.onnx/onnx/onnxruntime loaded.
    from facefair.export.onnx_export import ExportConfig, export_onnx
    config = ExportConfig(input_dtype=args.input_dtype, opset=args.opset, dynamic_batch=args.dynamic_batch,
                          verify=args.verify)
    result = export_onnx(args.checkpoint, args.onnx, config)
    summary = {"onnx": str(result.onnx_path), "sidecar": str(result.sidecar_path),
               "input": result.sidecar["input"]["shape"], "input_dtype": config.input_dtype,
               "outputs": [t["name"] for t in result.sidecar["tasks"]]}
    if result.max_abs_diff:
        summary["max_abs_diff_vs_pytorch"] = {k: float(f"{v:.3g}") for k, v in result.max_abs_diff.items()}
    print(json.dumps(summary, indent=1))
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "export", help="export a trained model to ONNX (preprocessing and probabilities in the graph)",
        description="Export a run's checkpoint to ONNX. The graph takes NCHW RGB images at the model's size "
                    "(uint8 0..255 by default) and applies normalisation itself; it outputs class "
                    "probabilities per classification task and years for age. A sidecar JSON beside the "
                    ".onnx file lists tasks, classes, input size, mean and std.")
    parser.add_argument("checkpoint", help="best.pt of a run")
    parser.add_argument("--onnx", required=True, metavar="OUT.onnx", help="ONNX file to write (sidecar: OUT.json)")
    parser.add_argument("--input-dtype", choices=("uint8", "float32"), default="uint8",
                        help="uint8 0..255 (default) or float32 0..1 input")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset version (default 17)")
    parser.add_argument("--dynamic-batch", action=argparse.BooleanOptionalAction, default=True,
                        help="dynamic batch axis (default on)")
    parser.add_argument("--verify", action=argparse.BooleanOptionalAction, default=True,
                        help="check the file in onnxruntime against PyTorch (default on)")
    parser.set_defaults(func=_export)
