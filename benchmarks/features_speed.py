"""DinoFeatures throughput (images/s) on BSDS500 val, per precision and batch size.

    python benchmarks/features_speed.py --n-images 10 --repeats 3 --resize 448 \
        [--device cuda] [--precisions float32 bfloat16 float16]

Prints a Markdown table: per precision and batch size, the median over repeats of
images/s (the backbone is loaded and warmed up before timing), and how closely the
features agree with float32 ones: the cosine similarity of each patch's feature to
its float32 counterpart, mean and 1st percentile over all patches. ``--resize 448``
sets the short side to 448 px (a 32 x 48 grid for ViT-S/14 on BSDS); ``--resize 0``
keeps the native size.
"""

import argparse
import time

import numpy as np

from sklearn_useg import DinoFeatures
from sklearn_useg.datasets import load_bsds500
from sklearn_useg.features import PRECISIONS
from sklearn_useg.graph import l2_normalize


def patch_cosines(reference, features):
    """Cosine similarity of every patch feature to its reference, all images pooled."""
    a = np.concatenate([pf.flat for pf in reference])
    b = np.concatenate([pf.flat for pf in features])
    return np.sum(l2_normalize(a) * l2_normalize(b), axis=1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--precisions", nargs="+", default=["float32", "bfloat16"],
                        choices=PRECISIONS)
    parser.add_argument("--resize", type=int, default=448)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--weights", default="auto")
    parser.add_argument("--facet", default="token")
    args = parser.parse_args()

    images = load_bsds500("val", n_images=args.n_images).images
    resize = args.resize or None
    common = dict(weights=args.weights, facet=args.facet, device=args.device, resize=resize)
    reference = DinoFeatures(**common).transform(images)
    print(f"{len(images)} BSDS500 val images, grid {reference[0].grid_shape}, "
          f"facet={args.facet}, device={args.device}\n")
    print("| precision | batch size | images/s (median) | ms/image | cosine to float32: "
          "mean | 1st percentile |")
    print("| --- | --- | --- | --- | --- | --- |")
    for precision in args.precisions:
        for batch_size in args.batch_sizes:
            est = DinoFeatures(**common, batch_size=batch_size, precision=precision)
            features = est.transform(images)  # load + warm up, and the agreement
            cosine = patch_cosines(reference, features)
            rates = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                est.transform(images)
                rates.append(len(images) / (time.perf_counter() - start))
            rate = float(np.median(rates))
            print(f"| {precision} | {batch_size} | {rate:.2f} | {1000 / rate:.0f} | "
                  f"{cosine.mean():.5f} | {np.percentile(cosine, 1):.5f} |", flush=True)


if __name__ == "__main__":
    main()
