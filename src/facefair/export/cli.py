"""``facefair export CHECKPOINT --onnx --safetensors --out DIR``: DIR/model.onnx + DIR/model.json
(the sidecar), DIR/config.json + DIR/model.safetensors."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from facefair.flags import TTA_DEFAULT, add_trust_flag


ONNX_NAME = "model.onnx"


def _out_dir(args) -> Path:
    if args.out:
        return Path(args.out)
    source = Path(args.checkpoint)
    return (source if source.is_dir() else source.parent) / "export"


def _export(args) -> int:
    if not (args.onnx or args.safetensors):
        raise ValueError("give --onnx and/or --safetensors (written into --out DIR)")
    out = _out_dir(args)
    summary: dict = {"out": str(out)}
    if args.safetensors:
        summary["safetensors"] = str(export_safetensors(args.checkpoint, out, args.trust_checkpoint))
    if args.onnx:
        summary.update(_export_onnx(args, out / ONNX_NAME))
    print(json.dumps(summary, indent=1))
    return 0


def export_safetensors(checkpoint: str, out_dir: str, trust_checkpoint: bool = False):
    """The model as ``config.json`` + ``model.safetensors``: loads anywhere with no pickle (and is how
    an old ``.pt`` checkpoint, loaded once with ``--trust-checkpoint``, becomes a safe file)."""
    from facefair.models.multitask import load_model
    from facefair.models.serialization import read_checkpoint, save_pretrained
    model = load_model(checkpoint, "cpu", trust_checkpoint=trust_checkpoint)
    source = read_checkpoint(checkpoint, "cpu", trust=trust_checkpoint)
    kept = {k: source[k] for k in ("epoch", "best_score", "config", "framing") if k in source}
    written = save_pretrained(model.state_dict(), {**model.describe(), **kept}, out_dir)
    if getattr(model, "face_heads", None) is not None:  # the export answers as the run does
        from facefair.run import Run
        model.face_heads.save(Run(out_dir).face_heads_path)
    return written


def _export_onnx(args, onnx_path: Path) -> dict:
    # Imported here so ``facefair --help`` works without torch.onnx/onnx/onnxruntime loaded.
    from facefair.export.onnx_export import ExportConfig, export_onnx
    config = ExportConfig(input_dtype=args.input_dtype, opset=args.opset, dynamic_batch=args.dynamic_batch,
                          verify=args.verify, tta=args.tta)
    result = export_onnx(args.checkpoint, onnx_path, config, trust_checkpoint=args.trust_checkpoint)
    summary = {"onnx": str(result.onnx_path), "sidecar": str(result.sidecar_path),
               "input": result.sidecar["input"]["shape"], "input_dtype": config.input_dtype, "tta": config.tta,
               "outputs": [t["name"] for t in result.sidecar["tasks"]]}
    if result.max_abs_diff:
        summary["max_abs_diff_vs_pytorch"] = {k: float(f"{v:.3g}") for k, v in result.max_abs_diff.items()}
    return summary


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "export", help="export a trained model to ONNX (preprocessing and probabilities in the graph)",
        description="Export a run's model to ONNX and/or safetensors, into --out DIR. The ONNX graph takes NCHW "
                    "RGB images at the model's size (uint8 0..255 by default) and applies normalisation itself; "
                    "it outputs class "
                    "probabilities per classification task and years for age, with the same flip-TTA as evaluate, "
                    "predict and serve. The sidecar model.json lists tasks, classes, input size, mean and std.")
    parser.add_argument("checkpoint", help="a run folder (or its best.pt), or an exported model folder")
    parser.add_argument("--out", help="output folder (default: RUN/export, or export/ beside a model file)")
    parser.add_argument("--onnx", action="store_true", help=f"write OUT/{ONNX_NAME} and its sidecar OUT/model.json")
    parser.add_argument("--safetensors", action="store_true",
                        help="write the model as OUT/config.json + OUT/model.safetensors (loads with no pickle)")
    parser.add_argument("--input-dtype", choices=("uint8", "float32"), default="uint8",
                        help="uint8 0..255 or float32 0..1 input")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset version")
    parser.add_argument("--dynamic-batch", action=argparse.BooleanOptionalAction, default=True,
                        help="dynamic batch axis")
    parser.add_argument("--verify", action=argparse.BooleanOptionalAction, default=True,
                        help="check the file in onnxruntime against PyTorch")
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=TTA_DEFAULT,
                        help="the mirror-TTA of every other command inside the graph (the mirrored face is "
                             "predicted too and the two averaged); --no-tta: half the compute, numbers differ")
    add_trust_flag(parser)
    parser.set_defaults(func=_export)
