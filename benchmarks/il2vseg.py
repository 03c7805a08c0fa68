"""IL2VSegmenter on CamVid: dataset-level quality next to k-means-11, α ablation, timings.

Fits on the CamVid train images (no labels), predicts the val images and scores
dataset-level Hungarian mIoU and pixel accuracy (11 classes, "Unlabelled" ignored),
next to k-means with 11 clusters over all train patch features (same features), in one
run. Then the α ablation at prediction (``predict_alpha``) on the same fitted model, and,
with ``--train-alphas``, models trained with each α. Timings exclude feature extraction
(the featurisation of the augmented views inside ``fit`` is timed and reported apart).

    OMP_NUM_THREADS=1 python benchmarks/il2vseg.py --max-iter 300 --train-alphas \
        --cache /tmp/useg_cache
"""

import argparse
import os
import tempfile
import time

import torch

from _common import dataset_scores, kmeans_dataset_baseline
from sklearn_useg import DinoFeatures, IL2VSegmenter
from sklearn_useg.datasets import load_camvid


class TimedExtractor:
    """Wraps a feature extractor and adds up the time spent in ``transform``."""

    def __init__(self, extractor):
        self.extractor, self.seconds = extractor, 0.0

    def transform(self, X):
        t0 = time.perf_counter()
        out = self.extractor.transform(X)
        self.seconds += time.perf_counter() - t0
        return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=None,
                        help="use only the first N train and N val images")
    parser.add_argument("--max-iter", type=int, default=300, help="training steps")
    parser.add_argument("--n-augmentations", type=int, default=1,
                        help="photometric views per train image (0: none)")
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    parser.add_argument("--train-alphas", action="store_true",
                        help="also train one model per α (costs a fit each)")
    parser.add_argument("--crf", action="store_true", help="also score with DenseCRF")
    parser.add_argument("--learning-rate", type=float, default=1e-4, help="head's Adam lr")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "useg_cache"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    train_b = load_camvid("train", n_images=args.n_images)
    val_b = load_camvid("val", n_images=args.n_images)
    # CLS attention kept, as benchmarks/quality.py does (the same feature cache)
    extractor = TimedExtractor(DinoFeatures(memory=args.cache, return_attention=True))
    train = extractor.transform(train_b.images)
    val = extractor.transform(val_b.images)
    k = 11
    print(f"CamVid: {len(train)} train / {len(val)} val images, grid {train[0].grid_shape}, "
          f"max_iter={args.max_iter}, n_augmentations={args.n_augmentations}, "
          f"learning_rate={args.learning_rate:g}, seed={args.seed}, "
          f"torch threads={torch.get_num_threads()}\n")

    t0 = time.perf_counter()
    km_pred = kmeans_dataset_baseline(train, val, k, args.seed)
    t_km = time.perf_counter() - t0

    def make(alpha):
        return IL2VSegmenter(
            n_classes=k, alpha=alpha, max_iter=args.max_iter, random_state=args.seed,
            learning_rate=args.learning_rate, device="cpu",
            feature_extractor=extractor if args.n_augmentations else None,
            n_augmentations=args.n_augmentations)

    extractor.seconds = 0.0
    t0 = time.perf_counter()
    seg = make(0.5).fit(train)
    t_fit = time.perf_counter() - t0 - extractor.seconds
    t_views = extractor.seconds
    rows = [("k-means-11 (all train patches)", None, *dataset_scores(val_b.targets, km_pred))]
    speeds = {}
    for a in args.alphas:
        seg.set_params(predict_alpha=a, refine=None)
        t0 = time.perf_counter()
        pred = seg.predict(val)
        speeds[a] = len(val) / (time.perf_counter() - t0)
        rows.append((f"IL2VSeg (trained α=0.5), predict α={a:g}", a,
                     *dataset_scores(val_b.targets, pred)))
        if args.crf:
            seg.set_params(refine="crf")
            pred = seg.predict(val)
            rows.append((f"IL2VSeg (trained α=0.5), predict α={a:g} + CRF", a,
                         *dataset_scores(val_b.targets, pred)))
    if args.train_alphas:
        for a in args.alphas:
            if a == 0.5:
                continue
            model = make(a).fit(train)
            rows.append((f"IL2VSeg trained and predicted α={a:g}", a,
                         *dataset_scores(val_b.targets, model.predict(val))))

    print("| method | mIoU (%) | pixel acc. (%) |\n| --- | --- | --- |")
    for name, _, miou, acc in rows:
        print(f"| {name} | {miou:.1f} | {acc:.1f} |")
    base = rows[0][2]
    best = max(rows[1:], key=lambda r: r[2])
    print(f"\nbest IL2VSeg / k-means mIoU ratio: {best[2] / base:.2f} ({best[0]})\n")

    print("| timing (CPU, features excluded) | value |\n| --- | --- |")
    print(f"| IL2VSeg fit, {len(train)} train images, {args.max_iter} steps "
          f"(features excluded) | {t_fit:.1f} s |")
    print(f"| featurising {args.n_augmentations} augmented view(s)/image in fit "
          f"(cache hits when warm) | {t_views:.1f} s |")
    print(f"| k-means-11 fit + predict | {t_km:.1f} s |")
    for a, s in speeds.items():
        print(f"| IL2VSeg predict, α={a:g} | {s:.1f} images/s |")
    print(f"| final training loss | {seg.loss_curve_[-1]:.3f} "
          f"(first {seg.loss_curve_[0]:.3f}) |")
    print(f"| class_margin_ (training patches) | {seg.class_margin_:.3f} |")


if __name__ == "__main__":
    main()
