"""Per-method, per-stage speed: features, segmenter, refinement, in ms/image (medians).

    OMP_NUM_THREADS=1 python benchmarks/speed.py --n-images 5

All methods run side by side in one run on the same BSDS500 val images; the feature
stage is timed without cache, once per image. The segmenter stage is ``fit`` +
``predict`` of one image for per-image methods and ``predict`` of one image after a
``fit`` on all of them for ACSeg / IL2VSeg (their training time is printed apart).
The segmenter stage runs with ``refine=None``; the refinement stage (superpixel voting,
``refine="superpixels"``, the default; and DenseCRF) is timed apart on the method's
own upsampled labels, with its ratio to the feature stage. ``--device cuda`` (or
``auto`` on a GPU machine) times the features and the torch methods on the GPU. Ratios
in the "x k-means" column are to the k-means baseline's segmenter stage.
"""

import argparse
import time

import numpy as np

from sklearn_useg import DinoFeatures
from sklearn_useg._benchmark import METHODS, make_method
from sklearn_useg.datasets import load_bsds500
from sklearn_useg.refine import dense_crf, refine_labels

TRAINED = ("acseg", "il2vseg")


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, 1000 * (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=5)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--weights", default="auto")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--max-train-iters", type=int, default=20,
                        help="cap ACSeg / IL2VSeg training (default 20; the paper's "
                             "schedules are GPU work)")
    parser.add_argument("--no-crf", action="store_true")
    args = parser.parse_args()

    data = load_bsds500("val", n_images=args.n_images)
    extractor = DinoFeatures(weights=args.weights, device=args.device)
    extractor.transform(data.images[:1])  # load the backbone outside the timings
    timed = [_timed(lambda im=im: extractor.transform([im])[0]) for im in data.images]
    features = [pf for pf, _ in timed]
    feature_ms = np.median([ms for _, ms in timed])

    rows = []
    for name in args.methods:
        est = make_method(name, "bsds", max_train_iters=args.max_train_iters)
        if "refine" in est.get_params():
            est.set_params(refine=None)
        train_ms = None
        if name in TRAINED:
            _, train_ms = _timed(lambda: est.fit(features))
            timed = [_timed(lambda pf=pf: est.predict([pf])[0]) for pf in features]
        else:
            timed = [_timed(lambda pf=pf: est.fit([pf]).predict([pf])[0]) for pf in features]
        seg_ms = np.median([ms for _, ms in timed])
        vote_ms = np.median([_timed(lambda pf=pf, lab=lab: refine_labels(
            pf.image, lab, "superpixels"))[1] for pf, (lab, _) in zip(features, timed)])
        crf_ms = np.nan
        if not args.no_crf:
            crf_ms = np.median([_timed(lambda pf=pf, lab=lab: dense_crf(pf.image, lab))[1]
                                for pf, (lab, _) in zip(features, timed)])
        rows.append((name, seg_ms, vote_ms, crf_ms, train_ms))

    base = dict((r[0], r[1]) for r in rows).get("kmeans")
    print(f"{len(features)} BSDS500 val images, native size, device {args.device!r}; "
          f"features: {feature_ms:.0f} ms/image (median)\n")
    print("| method | segmenter ms/image | x k-means | superpixel refinement ms/image "
          "| refinement / features | DenseCRF ms/image | training s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, seg_ms, vote_ms, crf_ms, train_ms in rows:
        ratio = f"{seg_ms / base:.1f}" if base else "-"
        train = "-" if train_ms is None else f"{train_ms / 1000:.1f}"
        print(f"| {name} | {seg_ms:.0f} | {ratio} | {vote_ms:.0f} | "
              f"{vote_ms / feature_ms:.2f} | {crf_ms:.0f} | {train} |")


if __name__ == "__main__":
    main()
