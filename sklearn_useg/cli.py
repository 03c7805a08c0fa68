"""Command line: ``sklearn-useg fit``, ``segment``, ``evaluate``, ``benchmark`` and
``samples`` (``sklearn-useg COMMAND --help`` for each)."""

import argparse
import sys
from pathlib import Path

import numpy as np

from ._backbones import parse_weights
from ._cli_args import parse_param
from .plotting import overlay


def _segmenters():
    from . import segmenters

    return {name[:-len("Segmenter")].lower(): getattr(segmenters, name)
            for name in segmenters.__all__
            if name.endswith("Segmenter") and name != "BaseSegmenter"}


def _new_model(args):
    """(features, segmenter) from the command line options, or None after printing why
    not."""
    from .features import DinoFeatures

    methods = _segmenters()
    if args.method not in methods:
        print(f"error: unknown --method {args.method!r}; choose from {sorted(methods)}",
              file=sys.stderr)
        return None
    from ._benchmark import FACETS

    facet = args.facet or FACETS.get(args.method, "token")
    features = DinoFeatures(backbone=args.backbone, weights=args.weights,
                            device=args.device, facet=facet, resize=args.resize)
    return features, methods[args.method](**dict(args.param))


def _saved_model(path, device):
    """(features, segmenter) of a model saved by ``fit``, the features on ``device``; or
    None after printing why not."""
    from sklearn.pipeline import Pipeline

    from .persistence import load_model

    try:
        model = load_model(path)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    if not isinstance(model, Pipeline) or len(model.steps) != 2:
        print(f"error: {path!r} holds a {type(model).__name__}, not the features + "
              "segmenter pipeline that 'sklearn-useg fit' saves.", file=sys.stderr)
        return None
    return model.steps[0][1].set_params(device=device), model.steps[1][1]


def _image_paths(paths):
    """The image files named on the command line, a folder standing for its images."""
    from .datasets import IMAGE_SUFFIXES, _list_files

    out = []
    for path in paths:
        out.extend(_list_files(path, IMAGE_SUFFIXES) if Path(path).is_dir() else [path])
    return out


def fit(args):
    """Fit a method on images and save it with its feature settings; return the exit
    status."""
    from sklearn.pipeline import Pipeline

    from .persistence import save_model
    from .segmenters._base import training_progress

    model = _new_model(args)
    if model is None:
        return 2
    features, segmenter = model
    try:
        X = features.fit().transform(_image_paths(args.images))
        with training_progress(not args.no_progress):
            segmenter.fit(X)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    path = save_model(Pipeline([("features", features), ("segmenter", segmenter)]),
                      args.out)
    print(f"{args.method} fitted on {len(X)} image(s), saved to {path}")
    return 0


def evaluate(args):
    """Score label PNGs against ground-truth masks and print the measures; return the
    exit status."""
    from . import metrics
    from .datasets import (MASK_SUFFIXES, _by_stem, _list_files, _pair_stems,
                           _read_label_png, _read_mask)

    try:
        files = [p for p in _list_files(args.predictions, (".png",))
                 if not p.stem.endswith("_overlay")]  # written next to labels by segment
        predictions = _by_stem(files)
        predictions = {stem[:-len("_labels")] if stem.endswith("_labels") else stem: path
                       for stem, path in predictions.items()}
        pairs = _pair_stems(predictions, _by_stem(_list_files(args.ground_truth,
                                                              MASK_SUFFIXES)),
                            args.predictions, args.ground_truth, None, what="prediction")
        y_pred = [_read_label_png(pred) for pred, _ in pairs]
        y_true = [_read_mask(gt, args.ignore_index, args.binary) for _, gt in pairs]
        for (pred_path, gt_path), pred, gt in zip(pairs, y_pred, y_true):
            shape = (gt[0] if isinstance(gt, list) else gt).shape
            if pred.shape != shape:
                raise ValueError(f"{str(pred_path)!r} is {pred.shape[0]} x {pred.shape[1]} "
                                 f"but its ground truth {str(gt_path)!r} is {shape[0]} x "
                                 f"{shape[1]}.")
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    scores = {"mIoU": metrics.hungarian_miou(y_true, y_pred),
              "covering": metrics.segmentation_covering(y_true, y_pred),
              "PRI": metrics.probabilistic_rand_index(y_true, y_pred),
              "VoI": metrics.variation_of_information(y_true, y_pred)}
    print(f"{len(pairs)} image(s); per image, mean over annotators (VoI in bits, lower is "
          "better):")
    for name, value in scores.items():
        print(f"{name:<9} {value:.4f}")
    return 0


def segment(args):
    """Segment images and write label and overlay PNGs; return the exit status."""
    from PIL import Image
    from tqdm.auto import tqdm

    from ._validation import check_image
    from .segmenters._base import training_progress

    model = _new_model(args) if args.model is None else _saved_model(args.model, args.device)
    if model is None:
        return 2
    features, segmenter = model
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failures, read = [], []  # read: (path, image, features) of the readable images
    for i, path in enumerate(tqdm(args.images, desc="features", unit="image",
                                  file=sys.stderr, disable=args.no_progress or None)):
        try:
            image = check_image(path, name="IMAGES", index=i)
            read.append((path, image, features.transform([image])[0]))
        except (ValueError, TypeError) as exc:
            failures.append(f"{path}: {exc}")
    if read and args.model is None:  # a new model learns from all the images at once
        try:
            with training_progress(not args.no_progress):
                segmenter.fit([pf for _, _, pf in read])
        except (ValueError, TypeError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    progress = tqdm(read, desc="segment", unit="image", file=sys.stderr,
                    disable=args.no_progress or None)
    for path, image, pf in progress:
        try:
            labels = segmenter.predict([pf])[0]
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
    fit_ = sub.add_parser("fit", help="fit a method on images once and save it (features "
                                      "settings included) for 'segment --model'")
    fit_.add_argument("images", nargs="+", help="image files or folders of images")
    fit_.add_argument("--out", required=True, help="model file to write (.joblib)")
    seg = sub.add_parser("segment", help="segment images, write label and overlay PNGs")
    seg.add_argument("images", nargs="+", help="image files")
    seg.add_argument("--out", required=True, help="output folder")
    seg.add_argument("--model", default=None,
                     help="a model saved by 'fit', applied to the images (its method, "
                          "parameters and feature settings replace the options below; "
                          "--device still applies)")
    for command in (fit_, seg):
        command.add_argument("--method", default="superpixel",
                             help="segmentation method (default: superpixel, the best "
                                  "per-image method in docs/benchmarks.md)")
        command.add_argument("--param", action="append", type=parse_param, default=[],
                             metavar="KEY=VALUE", help="method parameter (repeatable)")
        command.add_argument("--backbone", default="dinov2_vits14")
        command.add_argument("--weights", default="auto", type=parse_weights,
                             help="checkpoint path, 'auto' ($SKLEARN_USEG_WEIGHTS, then "
                                  "the timm hub) or 'none' (random weights)")
        command.add_argument("--facet", default=None,
                             choices=["token", "key", "query", "value"],
                             help="feature facet (default: the method's pairing, as in "
                                  "docs/benchmarks.md: key for oap, oapdistill and "
                                  "deepcut, token otherwise)")
        command.add_argument("--resize", type=int, default=None,
                             help="short side of the images given to the backbone "
                                  "(default: native size)")
        command.add_argument("--device", default="auto")
        command.add_argument("--no-progress", action="store_true", help="no progress bar")
    ev = sub.add_parser("evaluate", help="score label PNGs against ground truth: mIoU, "
                                         "covering, PRI, VoI")
    ev.add_argument("predictions", help="folder of label PNGs (as written by 'segment': "
                                        "STEM_labels.png, overlays skipped)")
    ev.add_argument("ground_truth", help="folder of masks named STEM.png (label or "
                                         "binary) or STEM.mat (BSDS, several annotators)")
    ev.add_argument("--ignore-index", type=int, default=None,
                    help="mask value of unlabelled pixels (255 is always ignored)")
    ev.add_argument("--binary", action="store_true",
                    help="masks are foreground masks: 0 background, any other value "
                         "foreground (for 0/255 masks)")
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
    commands = {"fit": fit, "segment": segment, "evaluate": evaluate, "samples": samples}
    return commands[args.command](args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
