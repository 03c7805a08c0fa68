"""DeepCutSegmenter quality and CPU speed on the shared backbone (last-layer keys).

    python benchmarks/deepcut.py horse --n-images 50      # 2-way: foreground IoU, CorLoc
    python benchmarks/deepcut.py bsds --n-images 30       # K = 4 and k-less CC: mIoU
    python benchmarks/deepcut.py speed --n-images 10      # CPU s/image vs feature extraction

``horse``: Weizmann horses, 2 segments + the border rule
(:func:`sklearn_useg.refine.border_foreground`), foreground IoU and CorLoc for N-cut and
CC on raw and centred keys, next to ``KMeansSegmenter(n_clusters=2)`` + the same rule on
the same features. ``bsds``: BSDS500 val per-image Hungarian mIoU (mean over the human
maps) for K = 4 N-cut, CC (k-less, cap ``--cc-cap``) at several alphas and
``KMeansSegmenter(4)``. Both study the normalisation on the paper's graph and argmax
(``affinity_power=1, n_recenter_steps=0``). ``speed``: median seconds per image of
DeepCut (2-way, 10 epochs; K = 4, 100 epochs, at the defaults and without the
re-centring steps; ``refine=None``, as ``benchmarks/speed.py`` times the segmenter
stage), of the default superpixel refinement of the K = 4 labels, and of
``DinoFeatures`` on the same images, on this machine's CPU (torch threads as set by
``--threads``). Features come from a joblib cache
(``--cache``); prints Markdown tables.
"""

import argparse
import os
import tempfile
import time

import numpy as np
import torch

from sklearn_useg import DinoFeatures, KMeansSegmenter
from sklearn_useg.datasets import load_bsds500, load_weizmann_horse
from sklearn_useg.metrics import corloc, foreground_iou, hungarian_miou
from sklearn_useg.refine import border_foreground, refine_labels
from sklearn_useg import DeepCutSegmenter

PAPER = {"affinity_power": 1.0, "n_recenter_steps": 0}  # the paper's graph and argmax


def _features(images, args, **params):
    return DinoFeatures(weights=args.weights, facet="key", memory=args.cache,
                        device="cpu", **params).transform(images)


def _run(estimator, features):
    start = time.perf_counter()
    labels, details = estimator.fit(features).predict(features, return_details=True)
    return labels, details, (time.perf_counter() - start) / len(features)


def horse(args):
    data = load_weizmann_horse(n_images=args.n_images)
    features = _features(data.images, args)
    print(f"Weizmann horses, {len(features)} images, key facet, 2 segments + border rule, "
          f"seed {args.seed}\n")
    print("| method | normalize | fg IoU | CorLoc | s/image |")
    print("| --- | --- | --- | --- | --- |")
    rows = [("KMeansSegmenter(2)", n, KMeansSegmenter(2, normalize=n, random_state=args.seed))
            for n in ("l2", "center_l2")]
    rows += [(f"DeepCut {loss}{'' if loss == 'ncut' else f' a={a:g}'}", n,
              DeepCutSegmenter(2, loss=loss, alpha=a, normalize=n, random_state=args.seed,
                               **PAPER))
             for loss, a in (("ncut", 3.0), ("cc", 3.0), ("cc", 1.5))
             for n in ("none", "center", "center_l2")]
    for name, norm, est in rows:
        labels, _, secs = _run(est, features)
        masks = [border_foreground(lab) for lab in labels]
        print(f"| {name} | {norm} | {100 * foreground_iou(data.targets, masks):.1f} | "
              f"{100 * corloc(data.targets, masks):.1f} | {secs:.3f} |")


def bsds(args):
    data = load_bsds500("val", n_images=args.n_images)
    features = _features(data.images, args)
    print(f"BSDS500 val, {len(features)} images, key facet, grid "
          f"{features[0].grid_shape}; per-image Hungarian mIoU (mean over human maps)\n")
    print("| method | normalize | mIoU | segments (median) | s/image |")
    print("| --- | --- | --- | --- | --- |")
    rows = [("KMeansSegmenter(4)", n, KMeansSegmenter(4, normalize=n, random_state=args.seed))
            for n in ("l2", "center_l2")]
    rows += [("DeepCut ncut K=4", n,
              DeepCutSegmenter(4, normalize=n, random_state=args.seed, **PAPER))
             for n in ("none", "center", "center_l2")]
    rows += [(f"DeepCut cc a={a:g} (cap {args.cc_cap})", n,
              DeepCutSegmenter(args.cc_cap, loss="cc", alpha=a, normalize=n,
                               random_state=args.seed, **PAPER))
             for n in ("none", "center", "center_l2") for a in args.alphas]
    for name, norm, est in rows:
        labels, details, secs = _run(est, features)
        n_seg = np.median([len(np.unique(lab)) for lab in labels])
        print(f"| {name} | {norm} | {100 * hungarian_miou(data.targets, labels):.1f} | "
              f"{n_seg:g} | {secs:.3f} |")


def speed(args):
    images = load_bsds500("val", n_images=args.n_images).images
    extractor = DinoFeatures(weights=args.weights, facet="key", device="cpu", batch_size=1)
    extractor.transform(images[:1])  # load and warm up
    feat_times, features = [], []
    for image in images:
        start = time.perf_counter()
        features.extend(extractor.transform([image]))
        feat_times.append(time.perf_counter() - start)
    configs = [("2-way ncut, 10 epochs", DeepCutSegmenter(2, refine=None, random_state=0)),
               ("K=4 ncut, 100 epochs", DeepCutSegmenter(4, refine=None, random_state=0)),
               ("K=4 ncut, 100 epochs, paper's graph and argmax",
                DeepCutSegmenter(4, refine=None, random_state=0, **PAPER)),
               ("default (K=5 ncut, 100 epochs)",
                DeepCutSegmenter(refine=None, random_state=0)),
               (f"cc cap {args.cc_cap}, 100 epochs",
                DeepCutSegmenter(args.cc_cap, loss="cc", refine=None, random_state=0))]
    feat = float(np.median(feat_times))
    print(f"CPU, torch threads={args.threads}, {len(images)} BSDS500 val images, grid "
          f"{features[0].grid_shape} ({features[0].n_patches} nodes); DeepCut rows time "
          "the method (refine=None), the refinement row its default superpixel voting "
          "of the K=4 labels\n")
    print("| step | s/image (median) | ratio to feature extraction |")
    print("| --- | --- | --- |")
    print(f"| DinoFeatures (key, batch 1) | {feat:.3f} | 1.00 |")
    labels = {}
    for name, est in configs:
        est.fit(features[:1]).predict(features[:1])  # warm up (torch_geometric import)
        times, labels[name] = [], []
        for pf in features:
            start = time.perf_counter()
            labels[name].extend(est.predict([pf]))
            times.append(time.perf_counter() - start)
        med = float(np.median(times))
        print(f"| DeepCut {name} | {med:.3f} | {med / feat:.2f} |")
    refine_times = []
    for pf, lab in zip(features, labels["K=4 ncut, 100 epochs"]):
        start = time.perf_counter()
        refine_labels(pf.image, lab, "superpixels")
        refine_times.append(time.perf_counter() - start)
    med = float(np.median(refine_times))
    print(f"| refinement (superpixel voting, K=4 labels) | {med:.3f} | {med / feat:.2f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=["horse", "bsds", "speed"])
    parser.add_argument("--n-images", type=int, default=None,
                        help="first N images of the dataset (default: all; speed: 10)")
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "useg_cache"))
    parser.add_argument("--weights", default="auto")
    parser.add_argument("--alphas", type=float, nargs="+", default=[1.5, 3.0])
    parser.add_argument("--cc-cap", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="random_state (horse, bsds)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.task == "speed" and args.n_images is None:
        args.n_images = 10
    {"horse": horse, "bsds": bsds, "speed": speed}[args.task](args)


if __name__ == "__main__":
    main()
