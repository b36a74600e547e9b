"""Pack a downsized UTKFace subset and the ImageNet MobileNetV2 weights for a lent GPU machine.

    python benchmarks/gpu_pack.py                 # -> .gpu-pack/ (git-ignored; name it in `carry`)

The device machine receives at most 64 MiB of working tree, tracked files included, and cannot
reach ../shared or a package registry.  So the pack holds what benchmarks/gpu.sh needs and the
tracked tree leaves room for: a stratified (gender x race) subset of the real faces, re-encoded at
the recipe's input size, as many as fit the byte budget, in one stored (uncompressed) zip under their
original file names (the labels are in the names; one file, so no per-file block overhead), plus
the weights in float16 (the model loads them into float32).
manifest.json says what was kept, so every figure made from the pack can say it came from a subset.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import zipfile
from pathlib import Path

DEVICE_TREE_LIMIT_MIB = 64.0


def travelling_bytes(repo: Path, pack: Path) -> int:
    """Bytes of the tree that travels anyway (tracked files and untracked files git does not ignore),
    each rounded up to a 4 KiB block: whether the limit counts bytes or disk blocks, the pack fits."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=repo,
                            check=True, capture_output=True).stdout.split(b"\0")
    total = 0
    for name in filter(None, listed):
        path = repo / name.decode()
        if path.is_file() and pack.resolve() not in path.resolve().parents:
            total += -(-path.stat().st_size // 4096) * 4096
    return total


def encode(path: Path, size: int, quality: int) -> bytes:
    from PIL import Image
    with Image.open(path) as image:
        image = image.convert("RGB").resize((size, size), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality, optimize=True)
    return buffer.getvalue()


def write_zip(path: Path, faces: dict[str, bytes]) -> int:
    """A stored zip of UTKFace/NAME entries (JPEGs do not compress); returns the image bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in faces.items():
            archive.writestr(f"UTKFace/{name}", data)
    return sum(map(len, faces.values()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/utkface/UTKFace")
    parser.add_argument("--out", default=".gpu-pack")
    parser.add_argument("--size", type=int, default=112, help="side in pixels (the CPU recipe's input size)")
    parser.add_argument("--quality", type=int, default=80, help="JPEG quality of the re-encoded faces")
    parser.add_argument("--limit-mib", type=float, default=DEVICE_TREE_LIMIT_MIB, help="what a device call carries")
    parser.add_argument("--margin-mib", type=float, default=1.5, help="room left under the limit")
    parser.add_argument("--repo", default=".", help="the checkout whose tree travels with the pack")
    parser.add_argument("--weights", default="local:mobilenet_v2")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import torch

    from facefair.data.prepare import subsample
    from facefair.data.readers import read_utkface
    from facefair.models.backbones import resolve_weights

    repo, out = Path(args.repo), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    weights_file = out / "mobilenet_v2-fp16.pth"
    state = torch.load(resolve_weights(args.weights), map_location="cpu", weights_only=True)
    torch.save({k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}, weights_file)

    table = read_utkface(args.data)
    frame = table.frame
    encoded = {row.path: encode(Path(row.path), args.size, args.quality) for row in frame.itertuples()}
    # a stored zip adds a local header and a directory entry per file, each holding the name
    mean_bytes = sum(len(data) + 2 * len(Path(path).name) + 100 for path, data in encoded.items()) / len(encoded)
    tree_bytes = travelling_bytes(repo, out)
    budget = (args.limit_mib - args.margin_mib) * 2**20 - tree_bytes - weights_file.stat().st_size
    if budget <= 0:
        raise SystemExit(f"gpu_pack: the tracked tree and weights already fill the {args.limit_mib:g} MiB limit")
    archive_file = out / "UTKFace.zip"
    count = min(len(frame), int(budget // mean_bytes))
    while True:  # the estimate is a mean: the drawn faces may run larger, so check the real size
        if count < 1:
            raise SystemExit(f"gpu_pack: not one face fits beside the tree and weights under {args.limit_mib:g} MiB")
        kept = subsample(frame, count, args.seed)
        written = write_zip(archive_file, {Path(path).name: encoded[path] for path in kept["path"]})
        overshoot = archive_file.stat().st_size - budget
        if overshoot <= 0:
            break
        count -= int(overshoot // mean_bytes) + 1
    manifest = {
        "source": str(Path(args.data).resolve()), "source_images": len(frame), "kept_images": len(kept),
        "stratified_by": ["gender", "race"], "seed": args.seed, "size": args.size, "jpeg_quality": args.quality,
        "faces_mib": round(written / 2**20, 2), "faces_file": archive_file.name,
        "faces_file_mib": round(archive_file.stat().st_size / 2**20, 2),
        "weights": args.weights, "weights_file": weights_file.name,
        "weights_mib": round(weights_file.stat().st_size / 2**20, 2),
        "tree_without_pack_mib": round(tree_bytes / 2**20, 2), "limit_mib": args.limit_mib,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    print(json.dumps(manifest, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
