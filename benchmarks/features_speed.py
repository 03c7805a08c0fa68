"""DinoFeatures throughput (images/s) on BSDS500 val at native size.

    python benchmarks/features_speed.py --n-images 10 --repeats 3 [--device cpu]

Prints a Markdown table: per batch size, the median over repeats of images/s (the
backbone is loaded and warmed up before timing).
"""

import argparse
import time

import numpy as np

from sklearn_useg import DinoFeatures
from sklearn_useg.datasets import load_bsds500


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--weights", default="auto")
    parser.add_argument("--facet", default="token")
    args = parser.parse_args()

    images = load_bsds500("val", n_images=args.n_images).images
    shapes = sorted({img.shape[:2] for img in images})
    print(f"{len(images)} BSDS500 val images, sizes {shapes}, facet={args.facet}, "
          f"device={args.device}\n")
    print("| batch size | images/s (median) | ms/image | runs |")
    print("| --- | --- | --- | --- |")
    for batch_size in args.batch_sizes:
        est = DinoFeatures(weights=args.weights, facet=args.facet, device=args.device,
                           batch_size=batch_size)
        est.transform(images[:1])  # load + warm up
        rates = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            est.transform(images)
            rates.append(len(images) / (time.perf_counter() - start))
        rate = float(np.median(rates))
        print(f"| {batch_size} | {rate:.2f} | {1000 / rate:.0f} | {args.repeats} |")


if __name__ == "__main__":
    main()
