"""Command line: ``sklearn-useg segment IMAGES... --out DIR``, ``sklearn-useg samples DIR``
and ``sklearn-useg benchmark``."""

import argparse
import ast
import sys
from pathlib import Path

import numpy as np

from .plotting import overlay


def _segmenters():
    from . import segmenters

    return {name[:-len("Segmenter")].lower(): getattr(segmenters, name)
            for name in segmenters.__all__
            if name.endswith("Segmenter") and name != "BaseSegmenter"}


def parse_weights(text):
    """``--weights`` value: 'none' is random weights (``None``), anything else as is."""
    return None if text.lower() == "none" else text


def _parse_param(text):
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--param expects key=value, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def segment(args):
    """Segment images and write label and overlay PNGs; return the exit status."""
    from PIL import Image
    from tqdm.auto import tqdm

    from ._validation import check_image
    from .features import DinoFeatures

    methods = _segmenters()
    if args.method not in methods:
        print(f"error: unknown --method {args.method!r}; choose from {sorted(methods)}",
              file=sys.stderr)
        return 2
    features = DinoFeatures(backbone=args.backbone, weights=args.weights,
                            device=args.device, facet=args.facet)
    segmenter = methods[args.method](**dict(args.param))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failures = []
    progress = tqdm(args.images, desc="segment", unit="image", file=sys.stderr,
                    disable=args.no_progress or None)
    for i, path in enumerate(progress):
        try:
            image = check_image(path, name="IMAGES", index=i)
            labels = segmenter.fit_predict(features.transform([image]))[0]
        except (ValueError, TypeError) as exc:
            failures.append(f"{path}: {exc}")
            continue
        stem = Path(path).stem
        Image.fromarray(labels.astype(np.uint8 if labels.max() < 256 else np.uint16)).save(
            out / f"{stem}_labels.png")
        Image.fromarray(overlay(image, labels)).save(out / f"{stem}_overlay.png")
        progress.write(f"{path}: {labels.max() + 1} segments")
    if failures:
        print(f"{len(failures)} image(s) failed:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    return 0


def samples(args):
    """Write scikit-image's bundled sample photos as PNGs; return the exit status."""
    from PIL import Image

    from .datasets import load_sample_images

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_sample_images()
    for name, image in zip(data.filenames, data.images):
        Image.fromarray(image).save(out / f"{name}.png")
        print(out / f"{name}.png")
    return 0


def main(argv=None):
    """Entry point of the ``sklearn-useg`` console script."""
    parser = argparse.ArgumentParser(prog="sklearn-useg", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    seg = sub.add_parser("segment", help="segment images, write label and overlay PNGs")
    seg.add_argument("images", nargs="+", help="image files")
    seg.add_argument("--out", required=True, help="output folder")
    seg.add_argument("--method", default="kmeans", help="segmentation method")
    seg.add_argument("--param", action="append", type=_parse_param, default=[],
                     metavar="KEY=VALUE", help="method parameter (repeatable)")
    seg.add_argument("--backbone", default="dinov2_vits14")
    seg.add_argument("--weights", default="auto", type=parse_weights,
                     help="checkpoint path, 'auto' ($SKLEARN_USEG_WEIGHTS, then the timm "
                          "hub) or 'none' (random weights)")
    seg.add_argument("--facet", default="token", choices=["token", "key", "query", "value"])
    seg.add_argument("--device", default="auto")
    seg.add_argument("--no-progress", action="store_true", help="no progress bar")
    smp = sub.add_parser("samples", help="write a few sample photos (bundled with "
                                         "scikit-image, public domain) to try the CLI on")
    smp.add_argument("out", help="output folder")
    sub.add_parser("benchmark", add_help=False,
                   help="quality benchmark of every method (see 'benchmark --help')")
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["benchmark"]:
        from ._benchmark import main as benchmark

        return benchmark(argv[1:], prog="sklearn-useg benchmark")
    args = parser.parse_args(argv)
    return samples(args) if args.command == "samples" else segment(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
