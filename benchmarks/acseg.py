"""ACSeg's ACG and SemanticLabeler: CamVid dataset-level quality, BSDS500 per-image
quality, CPU fit and inference timings, all side by side in one run.

CamVid: fit on the train images (no labels), predict val; dataset-level Hungarian mIoU
and pixel accuracy with 11 classes ("Unlabelled" ignored) for
``SemanticLabeler(ACSegSegmenter())``, ``SemanticLabeler(KMeansSegmenter(5))`` and the
plain k-means with 11 clusters over all train patch features (same features). BSDS500:
ACG trained on train images, per-image Hungarian mIoU on val (mean over the human maps),
next to per-image k-means (5). Speed: images/s of ACG inference (features excluded)
next to per-image k-means on the same CamVid val features.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python benchmarks/acseg.py \\
        --n-images 20 --n-iter 200 --cache /tmp/useg_cache
"""

import argparse
import os
import tempfile

import numpy as np
import torch

from _common import dataset_scores, kmeans_dataset_baseline, timed
from sklearn_useg import ACSegSegmenter, DinoFeatures, KMeansSegmenter, SemanticLabeler
from sklearn_useg.datasets import load_bsds500, load_camvid
from sklearn_useg.metrics import hungarian_miou


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=None,
                        help="use only the first N images of each split")
    parser.add_argument("--n-iter", type=int, default=2500, help="ACG training iterations")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--n-prototypes", type=int, default=5)
    parser.add_argument("--normalize", default="center_l2", help="ACG feature normalisation")
    parser.add_argument("--region-embedding", default="mean", choices=["mean", "cls"],
                        help="SemanticLabeler's region embedding (cls: the paper's)")
    parser.add_argument("--refine", default="none", choices=["none", "auto"],
                        help="refine setting of every segmenter (auto: superpixels)")
    parser.add_argument("--skip-bsds", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "useg_cache"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    refine = None if args.refine == "none" else args.refine

    def acg():
        return ACSegSegmenter(args.n_prototypes, n_iter=args.n_iter,
                              batch_size=args.batch_size, learning_rate=args.learning_rate,
                              normalize=args.normalize, device="cpu", refine=refine,
                              random_state=args.seed)

    # token facet, native resolution; CLS attention kept, as benchmarks/quality.py does
    # (the same feature cache)
    extractor = DinoFeatures(memory=args.cache, return_attention=True)
    train_b, val_b = (load_camvid(s, n_images=args.n_images) for s in ("train", "val"))
    train, val = extractor.transform(train_b.images), extractor.transform(val_b.images)
    print(f"CamVid: {len(train)} train / {len(val)} val images, grid {train[0].grid_shape}, "
          f"ACG n_iter={args.n_iter}, batch_size={args.batch_size}, "
          f"lr={args.learning_rate:g}, n_prototypes={args.n_prototypes}, "
          f"normalize={args.normalize}, region_embedding={args.region_embedding}, "
          f"refine={args.refine}, seed={args.seed}, "
          f"torch threads={torch.get_num_threads()}\n")

    k = 11
    rows = [("k-means-11 (all train patches)",
             *dataset_scores(val_b.targets, kmeans_dataset_baseline(train, val, k, args.seed)))]
    sem_km = SemanticLabeler(KMeansSegmenter(5, refine=refine), n_classes=k,
                             random_state=args.seed)
    _, t_sem_km = timed(sem_km.fit, train)
    rows.append(("SemanticLabeler(KMeansSegmenter(5))",
                 *dataset_scores(val_b.targets, sem_km.predict(val))))
    sem_acg = SemanticLabeler(acg(), n_classes=k, region_embedding=args.region_embedding,
                              feature_extractor=extractor, random_state=args.seed)
    _, t_sem_acg = timed(sem_acg.fit, train)
    seg = sem_acg.segmenter_
    rows.append(("SemanticLabeler(ACSegSegmenter())",
                 *dataset_scores(val_b.targets, sem_acg.predict(val))))
    print("| CamVid val, dataset-level | mIoU (%) | pixel acc. (%) |\n| --- | --- | --- |")
    for name, miou, acc in rows:
        print(f"| {name} | {miou:.1f} | {acc:.1f} |")
    print(f"\nACG / k-means-5 labeler mIoU ratio: {rows[2][1] / rows[1][1]:.2f}; "
          f"ACG labeler / k-means-11 ratio: {rows[2][1] / rows[0][1]:.2f}")
    _, details = seg.predict(val, return_details=True)
    n_seg = [d["n_segments"] for d in details]
    print(f"ACG segments per val image: median {np.median(n_seg):.0f}, "
          f"range {min(n_seg)}-{max(n_seg)}; loss {seg.loss_curve_[0]:.3f} -> "
          f"{np.mean(seg.loss_curve_[-10:]):.3f} (mean of last 10); concept_spread_ "
          f"{seg.concept_spread_:.3f}\n")

    # speed: ACG inference vs per-image k-means, same features, features excluded
    km5 = KMeansSegmenter(5, refine=refine, random_state=args.seed).fit(val[:1])
    names = ["ACG similarities (batched forward only)",
             "ACG predict (forward + upsampling to image)",
             "KMeansSegmenter(5) predict (per image)"]
    timings = {}
    for name, fn in zip(names, [seg.similarities, seg.predict, km5.predict]):
        fn(val[:2])  # warm-up
        runs = [timed(fn, val)[1] for _ in range(3)]
        timings[name] = len(val) / np.median(runs)
    print("| CPU speed (features excluded, median of 3) | images/s |\n| --- | --- |")
    for name, ips in timings.items():
        print(f"| {name} | {ips:.1f} |")
    acg_ips, km_ips = timings[names[1]], timings[names[2]]
    print(f"\nACG predict / k-means predict speed ratio: {acg_ips / km_ips:.1f}\n")
    per_it = seg.fit_time_ / max(1, args.n_iter)
    print("| CPU fit timing | value |\n| --- | --- |")
    print(f"| ACG fit, {len(train)} CamVid train images, {args.n_iter} iterations, batch "
          f"{min(args.batch_size, len(train))} | {seg.fit_time_:.1f} s ({per_it:.2f} s/iter) |")
    print(f"| same, extrapolated to 2500 iterations | {2500 * per_it / 60:.0f} min |")
    print(f"| SemanticLabeler(ACSeg) fit total (ACG + region k-means) | {t_sem_acg:.1f} s |")
    print(f"| SemanticLabeler(KMeans(5)) fit total | {t_sem_km:.1f} s |\n")

    if args.skip_bsds:
        return
    bsds_train = extractor.transform(load_bsds500("train", n_images=args.n_images).images)
    bsds_val_b = load_bsds500("val", n_images=args.n_images)
    bsds_val = extractor.transform(bsds_val_b.images)
    acg_b = acg().fit(bsds_train)
    print("| BSDS500 val, per-image | mIoU (%) |\n| --- | --- |")
    for name, est in [("KMeansSegmenter(5)",
                       KMeansSegmenter(5, refine=refine, random_state=args.seed)),
                      (f"ACSegSegmenter (ACG trained on {len(bsds_train)} train images)",
                       acg_b)]:
        pred = est.predict(bsds_val) if est is acg_b else est.fit_predict(bsds_val)
        print(f"| {name} | {100 * hungarian_miou(bsds_val_b.targets, pred):.1f} |")


if __name__ == "__main__":
    main()
