"""OAPDistillSegmenter (OAP's online teacher–student) beside the training-free OAPSegmenter.

    python benchmarks/oap_training.py                    # all three tasks, full splits
    python benchmarks/oap_training.py --n-images 20 --n-train 40 --n-iter 100   # a probe
    python benchmarks/oap_training.py --param connected=True     # a non-default setting

One run, the same features for both methods (last-layer keys of the DINOv2 ViT-S/14 at
native size, with CLS attention, from the joblib cache ``--cache``), the same output
level (the instance masks of OAP's first layer on patch nodes, the pooling the teacher
runs, and the decoder's instance queries, its default; BSDS and horses also at the
semantic level) and the same ``refine="auto"``
(superpixel voting):

- **BSDS500 val**: the decoder is trained once on BSDS500 train (200 images, no
  labels); per-image Hungarian mIoU, covering, PRI, VoI.
- **Weizmann horses**: the same BSDS-trained model, zero-shot; foreground = the
  segments the CLS attention falls on (``refine.foreground_mask``); fg IoU, CorLoc.
- **CamVid val**: ``SemanticLabeler(segmenter, n_classes=11)`` fitted on CamVid train
  (so the decoder is trained on CamVid train); dataset-level Hungarian mIoU.

It also reports the training time (with the torch thread count) and the CPU seconds
per image of ``predict`` (decoder alone, and with the refinement), next to the
feature extraction's. Scoring is :mod:`sklearn_useg._benchmark`'s (the quality
benchmark's).
"""

import argparse
import os
import tempfile
import time

import numpy as np

from sklearn_useg import DinoFeatures, OAPDistillSegmenter, OAPSegmenter, SemanticLabeler
from sklearn_useg._benchmark import _score
from sklearn_useg._cli_args import parse_param
from sklearn_useg.datasets import load_bsds500, load_camvid, load_weizmann_horse


def _table(title, rows):
    metrics = list(rows[0][1])
    print(f"\n## {title}\n")
    print("| method | " + " | ".join(metrics) + " | segments (median) |")
    print("| --- |" + " ---: |" * (len(metrics) + 1))
    for name, scores, n_segments in rows:
        print(f"| {name} | " + " | ".join(f"{100 * scores[m]:.1f}" if m != "VoI" else
                                          f"{scores[m]:.3f}" for m in metrics)
              + f" | {n_segments:g} |")


def _segments(labels):
    return float(np.median([len(np.unique(lab)) for lab in labels]))


def _per_image_seconds(est, features):
    start = time.process_time()
    est.predict(features)
    return (time.process_time() - start) / len(features)


def main():
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=None,
                        help="first N images of each evaluation split (default: all)")
    parser.add_argument("--n-train", type=int, default=None,
                        help="first N images of each training split (default: all)")
    parser.add_argument("--n-iter", type=int, default=None,
                        help="training steps (default: the estimator's)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tasks", nargs="+", default=["bsds", "horse", "camvid"],
                        choices=["bsds", "horse", "camvid"])
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "useg_cache"))
    parser.add_argument("--weights", default="auto")
    parser.add_argument("--param", action="append", type=parse_param, default=[],
                        metavar="KEY=VALUE",
                        help="an OAPDistillSegmenter parameter (Python literal), repeatable")
    args = parser.parse_args()
    params = dict(args.param)
    torch.set_num_threads(args.threads)
    extractor = DinoFeatures(weights=args.weights, facet="key", memory=args.cache,
                             device="cpu", return_attention=True)

    def distill():
        est = OAPDistillSegmenter(device=args.device, random_state=0, **params)
        return est if args.n_iter is None else est.set_params(n_iter=args.n_iter)

    print(f"torch threads: {torch.get_num_threads()}, device: {args.device}; "
          f"OAPDistillSegmenter params: {distill().get_params()}")
    raw = OAPSegmenter(nodes="patches", level="instance")  # the pooling the teacher runs
    model = None
    if {"bsds", "horse"} & set(args.tasks):
        train = extractor.transform(load_bsds500("train", n_images=args.n_train).images)
        start = time.perf_counter()
        model = distill().fit(train)
        print(f"\nfit on BSDS500 train ({len(train)} images): {model.fit_time_:.0f} s "
              f"training ({time.perf_counter() - start:.0f} s with the setup), "
              f"{model.n_iter} steps; pseudo-masks per image (semantic, instance) at the "
              f"first / last step: {model.n_pseudo_masks_[0].round(1).tolist()} / "
              f"{model.n_pseudo_masks_[-1].round(1).tolist()}")
    if "bsds" in args.tasks:
        data = load_bsds500("val", n_images=args.n_images)
        features = extractor.transform(data.images)
        rows = []
        for level in ("instance", "semantic"):
            for name, est in (("OAP (training-free)", raw.fit(features)),
                              ("OAPDistill (trained on BSDS train)", model)):
                labels = est.set_params(level=level).predict(features)
                rows.append((f"{name}, {level}",
                             _score("bsds", data.targets, labels, features),
                             _segments(labels)))
        raw.set_params(level="instance"), model.set_params(level="instance")
        _table(f"BSDS500 val, {len(features)} images (%; VoI in bits)", rows)
        print("\nCPU s/image of predict (1 process), features excluded:")
        for name, est in (("OAP", raw), ("OAPDistill", model)):
            refined = _per_image_seconds(est, features)
            grid = _per_image_seconds(est.set_params(refine=None), features)
            est.set_params(refine="auto")
            print(f"- {name}: {grid:.3f} on the patch grid, {refined:.3f} with the "
                  f"superpixel refinement")
        extractor_nocache = DinoFeatures(weights=args.weights, facet="key", device="cpu",
                                         return_attention=True, batch_size=1)
        extractor_nocache.transform(data.images[:1])  # warm up
        start = time.process_time()
        extractor_nocache.transform(data.images[1:4])
        print(f"- DinoFeatures (uncached, batch 1): {(time.process_time() - start) / 3:.3f}")
    if "horse" in args.tasks:
        data = load_weizmann_horse(n_images=args.n_images)
        features = extractor.transform(data.images)
        rows = []
        for level in ("instance", "semantic"):
            for name, est in (("OAP (training-free)", raw.fit(features)),
                              ("OAPDistill (trained on BSDS train, zero-shot)", model)):
                labels = est.set_params(level=level).predict(features)
                rows.append((f"{name}, {level}",
                             _score("horse", data.targets, labels, features),
                             _segments(labels)))
        raw.set_params(level="instance"), model.set_params(level="instance")
        _table(f"Weizmann horses, {len(features)} images (%)", rows)
    if "camvid" in args.tasks:
        train = extractor.transform(load_camvid("train", n_images=args.n_train).images)
        data = load_camvid("val", n_images=args.n_images)
        features = extractor.transform(data.images)
        rows = []
        for name, seg in (("OAP (training-free)", raw),
                          ("OAPDistill (trained on CamVid train)", distill())):
            start = time.perf_counter()
            sem = SemanticLabeler(seg, n_classes=11, random_state=0).fit(train)
            labels = sem.predict(features)
            print(f"{name}: SemanticLabeler fit + predict {time.perf_counter() - start:.0f} s")
            rows.append((name, _score("camvid", data.targets, labels, features),
                         _segments(labels)))
        _table(f"CamVid val, {len(features)} images, SemanticLabeler(11 classes) fitted on "
               f"{len(train)} train images (%)", rows)


if __name__ == "__main__":
    main()
