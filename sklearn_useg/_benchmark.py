"""The quality benchmark: every method with its defaults, plus baselines, on the same
features, one Markdown table per task.

Run it as ``python benchmarks/quality.py`` or ``sklearn-useg benchmark``; ``--help``
lists the options (methods, datasets and split, or your own ``--folder``, subset size,
backbone, weights, feature cache).
"""

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path


TASKS = ("bsds", "horse", "camvid")
SPLITS = ("train", "val", "test")
# A folder of your own is scored like the bundled task of the same kind.
FOLDER_TASKS = {"per-image": "bsds", "object": "horse", "dataset": "camvid"}
METHODS = ("kmeans", "clasp", "oap", "oapdistill", "deepcut", "superpixel", "acseg",
           "il2vseg", "felzenszwalb", "slic", "spectral")
# The feature facet each method is paired with (the token facet otherwise).
FACETS = {"oap": "key", "oapdistill": "key", "deepcut": "key"}
BASELINES = ("kmeans", "felzenszwalb", "slic", "spectral")
# Fixed K of the "deep spectral" baseline (spectral clustering of the cosine affinity
# of the features with a given number of segments) per task.
SPECTRAL_K = {"bsds": 5, "horse": 2, "camvid": 5}
FELZENSZWALB_PARAMS = {"scale": 400, "sigma": 0.8, "min_size": 200}
SLIC_PARAMS = {"n_segments": 8, "compactness": 10}
CAMVID_CLASSES = 11
# ACSeg's defaults are the paper's GPU schedule (2500 x 32 images); the benchmark runs
# on a CPU and trains it at the CPU setting of ACSegSegmenter's docstring.
ACSEG_CPU = {"n_iter": 600, "batch_size": 8}


def _pixel_baseline(name, params):
    """A segmenter that ignores the features and segments the image's pixels."""
    from skimage import segmentation

    from .segmenters import BaseSegmenter, SegmentResult

    class PixelBaseline(BaseSegmenter):
        def __init__(self, params=None):
            self.params = params

        def _segment(self, pf, random_state):
            if pf.image is None:
                raise ValueError(f"the {name} baseline needs PatchFeatures with the image.")
            if name == "slic":
                labels = segmentation.slic(pf.image, start_label=0, **self.params)
            else:
                labels = segmentation.felzenszwalb(pf.image, **self.params)
            return SegmentResult(labels=labels)

    PixelBaseline.__name__ = f"{name.capitalize()}Baseline"
    return PixelBaseline(params)


def make_method(name, task, *, n_classes=CAMVID_CLASSES, max_train_iters=None,
                random_state=0):
    """The estimator benchmarked as ``name`` on ``task`` (defaults, seeded); IL2VSeg
    predicts ``n_classes`` dataset-wide classes on the dataset-level task."""
    from . import (ACSegSegmenter, CLASPSegmenter, DeepCutSegmenter, IL2VSegmenter,
                   KMeansSegmenter, OAPDistillSegmenter, OAPSegmenter, SuperpixelSegmenter)

    if name == "kmeans":
        return KMeansSegmenter(random_state=random_state)
    if name == "clasp":
        return CLASPSegmenter(random_state=random_state)
    if name == "oap":
        return OAPSegmenter()
    if name == "oapdistill":
        est = OAPDistillSegmenter(random_state=random_state)
        if max_train_iters is not None:
            est.set_params(n_iter=min(est.n_iter, max_train_iters))
        return est
    if name == "deepcut":
        return DeepCutSegmenter(random_state=random_state)
    if name == "superpixel":
        return SuperpixelSegmenter()
    if name == "acseg":
        est = ACSegSegmenter(random_state=random_state, **ACSEG_CPU)
        if max_train_iters is not None:
            est.set_params(n_iter=min(est.n_iter, max_train_iters))
        return est
    if name == "il2vseg":
        est = IL2VSegmenter(random_state=random_state)
        if task == "camvid":
            est.set_params(n_classes=n_classes)
        if max_train_iters is not None:
            est.set_params(max_iter=min(est.max_iter, max_train_iters))
        return est
    if name == "spectral":
        return CLASPSegmenter(n_segments=SPECTRAL_K[task], random_state=random_state)
    if name == "felzenszwalb":
        return _pixel_baseline(name, FELZENSZWALB_PARAMS)
    if name == "slic":
        return _pixel_baseline(name, SLIC_PARAMS)
    raise ValueError(f"unknown method {name!r}; choose from {METHODS}.")


def parse_folder(text):
    """``IMAGES:MASKS`` as two paths (a Windows drive letter is not a separator)."""
    match = re.fullmatch(r"((?:[A-Za-z]:)?[^:]+):((?:[A-Za-z]:)?[^:]+)", text)
    if match is None:
        raise argparse.ArgumentTypeError(
            f"--folder expects IMAGES:MASKS, two folders, got {text!r}; the benchmark "
            "scores against the masks (use 'sklearn-useg segment' for images alone)")
    return match.groups()


def _load(task, n_images, data_home, *, split="val", folder=None, ignore_index=None):
    """(train, test) data of a task; train is None unless classes are learned across
    images (CamVid's train split, or the folder's own images, used without labels)."""
    from . import datasets

    if folder is not None:
        test = datasets.load_image_folder(*folder, ignore_index=ignore_index,
                                          binary=task == "horse", n_images=n_images)
        return (test if task == "camvid" else None), test
    if task == "bsds":
        return None, datasets.load_bsds500(split, data_home=data_home, n_images=n_images)
    if task == "horse":
        return None, datasets.load_weizmann_horse(data_home=data_home, n_images=n_images)
    train = datasets.load_camvid("train", data_home=data_home, n_images=n_images)
    return train, datasets.load_camvid(split, data_home=data_home, n_images=n_images)


def _n_classes(data):
    """Classes of a dataset-level task: CamVid's 11, or the labels in a folder's masks."""
    import numpy as np

    from .datasets import IGNORE_INDEX

    if "class_names" in data:
        return len(data.class_names)
    labels = np.unique(np.concatenate([np.unique(t) for t in data.targets]))
    return int(np.count_nonzero(labels != IGNORE_INDEX))


def _score(task, targets, labels, features, attention_threshold=None):
    from . import metrics
    from .refine import ATTENTION_THRESHOLD, foreground_mask

    if task == "bsds":
        return {"mIoU": metrics.hungarian_miou(targets, labels),
                "covering": metrics.segmentation_covering(targets, labels),
                "PRI": metrics.probabilistic_rand_index(targets, labels),
                "VoI": metrics.variation_of_information(targets, labels)}
    if task == "horse":
        threshold = ATTENTION_THRESHOLD if attention_threshold is None else attention_threshold
        masks = [foreground_mask(lab, pf.attention, threshold=threshold)
                 for lab, pf in zip(labels, features)]
        border = [foreground_mask(lab, rule="border") for lab in labels]
        return {"fg IoU": metrics.foreground_iou(targets, masks),
                "CorLoc": metrics.corloc(targets, masks),
                "fg IoU, border rule": metrics.foreground_iou(targets, border)}
    return {"mIoU": metrics.hungarian_miou(targets, labels, matching="dataset"),
            "pixel acc.": metrics.pixel_accuracy(targets, labels, matching="dataset")}


def run_task(task, methods, extractor, *, n_images=None, data_home=None, split="val",
             folder=None, ignore_index=None, max_train_iters=None, refine="default",
             device=None, params=(), seeds=(0,), attention_threshold=None, progress=True):
    """Score every method on one task; return (rows, n_test_images, n_train_images).

    Each row is ``(method, {metric: value}, seconds per test image)``, or with
    several ``seeds`` ``(method, {metric: [value per seed]}, mean seconds)``: each
    seed is the ``random_state`` of the method and of the SemanticLabeler (a method
    without one, on a per-image task, runs once). On CamVid,
    per-image methods are wrapped in :class:`~sklearn_useg.semantic.SemanticLabeler`
    (11 classes) fitted on the train images; IL2VSeg predicts 11 classes itself.
    ``folder=(images, masks)`` replaces the task's dataset by your own, scored the same
    way (on the dataset-level task, the classes are those of the masks and the methods
    are fitted on the folder's images, without their labels).
    Features come from ``extractor`` (CLS attention included, for the horse task's
    foreground rule), with the facet of :data:`FACETS` for the methods paired with one.
    ``refine`` sets every segmenter's ``refine`` (``"default"`` keeps each one's own),
    ``device`` the ``device`` of those that have one (``None`` keeps each one's own);
    ``params``, ``(method, key, value)`` triples, set one method's parameters;
    ``attention_threshold`` is the horse task's foreground rule threshold (``None``: the
    rule's default, :func:`~sklearn_useg.refine.attention_foreground`).
    """
    import numpy as np

    from sklearn.base import clone
    from tqdm.auto import tqdm

    from .semantic import SemanticLabeler

    train, test = _load(task, n_images, data_home, split=split, folder=folder,
                        ignore_index=ignore_index)
    n_classes = None if train is None else _n_classes(test)
    features = {}  # facet -> (test features, train features), computed when first needed
    rows = []
    for name in tqdm(methods, desc=task, disable=not progress, file=sys.stderr):
        facet = FACETS.get(name, "token")
        if facet not in features:
            facet_extractor = clone(extractor).set_params(facet=facet)
            features[facet] = (facet_extractor.transform(test.images), None if train is None
                               else facet_extractor.transform(train.images))
        test_features, train_features = features[facet]
        scores, seconds = [], []
        for seed in seeds:
            est = make_method(name, task, n_classes=n_classes,
                              max_train_iters=max_train_iters, random_state=seed)
            if refine != "default" and "refine" in est.get_params():
                est.set_params(refine=refine)
            if device is not None and "device" in est.get_params():
                est.set_params(device=device)
            est.set_params(**{key: value for method, key, value in params
                              if method == name})
            seeded = "random_state" in est.get_params()
            if scores and train_features is None and not seeded:
                break  # deterministic: every seed would give the same labels
            start = time.perf_counter()
            if train_features is None:
                labels = est.fit(test_features).predict(test_features)
            else:
                if name != "il2vseg":
                    est = SemanticLabeler(est, n_classes=n_classes, random_state=seed)
                labels = est.fit(train_features).predict(test_features)
            seconds.append((time.perf_counter() - start) / len(test_features))
            scores.append(_score(task, test.targets, labels, test_features,
                                 attention_threshold))
        if len(seeds) > 1:
            scores = [{metric: [s[metric] for s in scores] for metric in scores[0]}]
        rows.append((name, scores[0], float(np.mean(seconds))))
    return rows, len(test.images), 0 if train is None else len(train.images)


SCORES = {
    "bsds": "Hungarian mIoU per image, covering, probabilistic Rand index, variation of "
            "information in bits (lower is better); mean over annotators",
    "horse": "foreground = segments the CLS attention falls on (refine.foreground_mask); "
             "foreground IoU, CorLoc, and foreground IoU with the border rule",
    "camvid": "Hungarian mIoU over the dataset, pixel accuracy",
}
TITLES = {
    "bsds": "Per-image segmentation, BSDS500 {split}",
    "horse": "Single object, Weizmann horses",
    "camvid": "Dataset-level semantic, CamVid {split}, fit on train",
}


def format_table(task, rows, n_test, n_train, *, device, split="val", folder=None):
    """A Markdown table of one task's rows (on ``folder``, your own images, if given),
    timed on ``device`` (a label such as ``"CPU"``); a score given per seed is shown
    as its mean ± standard deviation."""
    title = (TITLES[task].format(split=split) if folder is None else
             f"{task_kind(task).capitalize()} task on {folder[0]}, masks {folder[1]}")
    title += f" ({SCORES[task]})"
    metrics = list(rows[0][1]) if rows else []
    size = f"{n_test} images" + (f", {n_train} train images" if n_train else "")
    lines = [f"## {title}", "", f"{size}.", "",
             "| method | " + " | ".join(metrics) + f" | s/image (fit + predict, {device}) |",
             "| --- |" + " ---: |" * (len(metrics) + 1)]
    for name, scores, seconds in rows:
        label = f"{name} (baseline)" if name in BASELINES else name
        lines.append(f"| {label} | " + " | ".join(_cell(scores[m]) for m in metrics)
                     + f" | {seconds:.2f} |")
    return "\n".join(lines)


def _cell(value):
    """A score, or the mean ± standard deviation of a score over seeds."""
    import numpy as np

    values = np.atleast_1d(value)
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{values.mean():.3f} ± {values.std():.3f}"


def task_kind(task):
    """``"per-image"``, ``"object"`` or ``"dataset"``: how a task is scored."""
    return next(kind for kind, name in FOLDER_TASKS.items() if name == task)


def build_parser(prog="benchmarks/quality.py"):
    from ._backbones import parse_weights
    from ._cli_args import parse_method_param

    parser = argparse.ArgumentParser(
        prog=prog, description="Quality of every method and baseline, one table per task.")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--datasets", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--split", default="val", choices=SPLITS,
                        help="BSDS500 and CamVid split scored (CamVid's methods are "
                             "fitted on train); default: val")
    parser.add_argument("--folder", type=parse_folder, default=None, metavar="IMAGES:MASKS",
                        help="benchmark on your own folder of images and masks (paired "
                             "by file stem, see sklearn_useg.datasets.load_image_folder) "
                             "instead of --datasets")
    parser.add_argument("--task", default="per-image", choices=list(FOLDER_TASKS),
                        help="how --folder is scored: per-image segments (mIoU, covering, "
                             "PRI, VoI), one object per image (non-zero mask = "
                             "foreground), or classes shared by the dataset (fitted on "
                             "the folder's images); default: per-image")
    parser.add_argument("--ignore-index", type=int, default=None,
                        help="mask value of unlabelled pixels in --folder (255 is always "
                             "ignored)")
    parser.add_argument("--n-images", type=int, default=None,
                        help="first N images of each split (default: all)")
    parser.add_argument("--backbone", default="dinov2_vits14")
    parser.add_argument("--weights", default="auto", type=parse_weights,
                        help="checkpoint path, 'auto' ($SKLEARN_USEG_WEIGHTS, then hub) or "
                             "'none' (random weights)")
    parser.add_argument("--resize", type=int, default=None,
                        help="short side of the images given to the backbone (default: "
                             "native size)")
    parser.add_argument("--device", default="auto",
                        help="torch device of the features and of every method that has "
                             "one: auto (CUDA when present), cpu, cuda or cuda:N")
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "useg_cache"),
                        help="feature cache folder, shared between methods and runs")
    parser.add_argument("--data-home", default=None,
                        help="datasets folder (default: $SKLEARN_USEG_DATA)")
    parser.add_argument("--max-train-iters", type=int, default=None,
                        help="cap ACSeg's and OAPDistill's n_iter and IL2VSeg's max_iter "
                             "(CPU runs); "
                             "default: the methods' own defaults")
    parser.add_argument("--out", default=None,
                        help="also write the Markdown document to this file, e.g. "
                             "docs/benchmarks.md (default: standard output only)")
    parser.add_argument("--refine", default="default",
                        choices=["default", "none", "auto", "superpixels", "crf"],
                        help="every segmenter's refine parameter (default: each one's own)")
    parser.add_argument("--param", action="append", type=parse_method_param, default=[],
                        metavar="METHOD:KEY=VALUE",
                        help="a parameter of one method, e.g. kmeans:n_clusters=2 "
                             "(repeatable; the header names the setting)")
    parser.add_argument("--seeds", type=int, default=1, metavar="N",
                        help="run every seeded method (and CamVid's SemanticLabeler) "
                             "with random_state 0..N-1 and report mean ± standard "
                             "deviation; default: 1 (seed 0)")
    parser.add_argument("--attention-threshold", type=float, default=None, metavar="T",
                        help="the object task's attention rule: a segment is foreground "
                             "when its mean CLS attention is T standard deviations above "
                             "the image's mean (default: the rule's own, "
                             "refine.attention_foreground)")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def main(argv=None, prog="benchmarks/quality.py"):
    """Run the benchmark; print the Markdown document and write it to ``--out`` if
    given."""
    from ._torch_utils import resolve_device
    from .features import DinoFeatures

    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds must be at least 1, got {args.seeds}")
    for method, _, _ in args.param:
        if method not in args.methods:
            parser.error(f"--param names {method!r}, which is not among --methods "
                         f"{' '.join(args.methods)}")
    device = str(resolve_device(args.device))  # "auto" named: the header says which
    extractor = DinoFeatures(backbone=args.backbone, weights=args.weights,
                             resize=args.resize, device=device, memory=args.cache,
                             return_attention=True)
    command = ("python " if prog.endswith(".py") else "") + prog + " " + " ".join(
        sys.argv[1:] if argv is None else argv)
    size = "native size" if args.resize is None else f"short side {args.resize}"
    training = ("" if args.max_train_iters is None else
                f" (ACSeg / OAPDistill / IL2VSeg training capped at {args.max_train_iters} "
                "iterations)")
    refine = "" if args.refine == "default" else f", refine={args.refine!r}"
    refine += "".join(f", {method} {key}={value!r}" for method, key, value in args.param)
    if args.attention_threshold is not None:
        refine += f", attention rule threshold={args.attention_threshold}"
    if args.seeds > 1:
        refine += (f"; mean ± standard deviation over seeds 0-{args.seeds - 1} of the "
                   "methods and of CamVid's SemanticLabeler")
    header = ["# Quality benchmark", "", f"`{command.strip()}`", "",
              f"Backbone `{args.backbone}`, token facet (OAP, DeepCut: key facet, their pairing), "
              f"{size}, {device.upper()}; every method with its defaults (ACSeg at its "
              f"CPU setting {ACSEG_CPU}){training}{refine}. Baselines: k-means (k=5), felzenszwalb "
              f"{FELZENSZWALB_PARAMS}, slic {SLIC_PARAMS}, and spectral = spectral "
              f"clustering of the feature cosine affinity with a fixed K {SPECTRAL_K}. "
              "Seconds per test image cover fit (training, for ACSeg / OAPDistill / IL2VSeg "
              "/ SemanticLabeler) "
              "and predict, not feature extraction.", ""]
    print("\n".join(header), flush=True)
    tables = []
    tasks = args.datasets if args.folder is None else [FOLDER_TASKS[args.task]]
    for task in tasks:
        rows, n_test, n_train = run_task(
            task, args.methods, extractor, n_images=args.n_images, data_home=args.data_home,
            split=args.split, folder=args.folder, ignore_index=args.ignore_index,
            max_train_iters=args.max_train_iters,
            refine=None if args.refine == "none" else args.refine, device=device,
            params=args.param, seeds=range(args.seeds),
            attention_threshold=args.attention_threshold, progress=not args.no_progress)
        tables.append(format_table(task, rows, n_test, n_train, device=device.upper(),
                                   split=args.split, folder=args.folder))
        print(tables[-1] + "\n", flush=True)
    if args.out is not None:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text("\n".join(header) + "\n" + "\n\n".join(tables) + "\n")
        print(f"wrote {args.out}", file=sys.stderr)
    return 0
