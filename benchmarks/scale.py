"""Images per second with n_jobs = 1, n_jobs = 2 and a dask LocalCluster, side by side.

    python benchmarks/scale.py --n-images 20 --repeats 3

Features (BSDS500 val, DINOv2 ViT-S/14 tokens, native size) are computed once and
cached; what is timed is ``segmenter.predict`` over all images, the per-image work
that joblib distributes, after one untimed round (worker start-up and imports are paid
once per process, not per call). The configurations take turns within each repeat.
The dask columns run the same code under ``joblib.parallel_backend("dask")`` on a
``LocalCluster`` of 2 single-threaded worker processes on this machine; they are timed
in a second phase, against their own n_jobs = 1 reference, because an idle cluster
(its scheduler lives in this process) slows the loky runs beside it on 2 cores. Prints
a Markdown table of median images/s and the speed-ups over n_jobs = 1.
"""

import argparse
import os
import tempfile
import time

import numpy as np
from joblib import parallel_backend
from threadpoolctl import threadpool_limits

from sklearn_useg import CLASPSegmenter, DeepCutSegmenter, DinoFeatures, OAPSegmenter
from sklearn_useg.datasets import load_bsds500


def _predict(segmenter, features, backend=None):
    if backend is None:
        return segmenter.predict(features)
    with parallel_backend(backend):
        return segmenter.predict(features)


def _interleaved_rates(configurations, features, repeats):
    """Median images/s of ``predict`` per configuration ``{name: (segmenter, backend)}``.

    The configurations take turns within each repeat, so a slower spell of a shared
    machine hits all of them alike; a first, untimed round starts the workers and their
    imports (torch, torch_geometric).
    """
    times = {name: [] for name in configurations}
    for repeat in range(repeats + 1):
        for name, (segmenter, backend) in configurations.items():
            start = time.perf_counter()
            _predict(segmenter, features, backend)
            if repeat:
                times[name].append(time.perf_counter() - start)
    return {name: len(features) / float(np.median(t)) for name, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-dask", action="store_true", help="skip the dask column")
    parser.add_argument("--weights", default="auto")
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "useg_cache"))
    args = parser.parse_args()

    data = load_bsds500("val", n_images=args.n_images)
    features = DinoFeatures(weights=args.weights, memory=args.cache).transform(data.images)
    methods = {
        "CLASP": lambda n_jobs: CLASPSegmenter(random_state=0, n_jobs=n_jobs),
        "OAP": lambda n_jobs: OAPSegmenter(n_jobs=n_jobs),
        "DeepCut": lambda n_jobs: DeepCutSegmenter(random_state=0, n_jobs=n_jobs),
    }
    print(f"BSDS500 val, {len(features)} images, grid {features[0].grid_shape}, "
          f"{os.cpu_count()} CPU cores; median images/s over {args.repeats} runs of "
          f"predict\n")
    with threadpool_limits(limits=1):  # one BLAS thread per image; parallelism is joblib's
        loky = {name: _interleaved_rates({"1": (make(1).fit(features), None),
                                          "2": (make(2).fit(features), None)},
                                         features, args.repeats)
                for name, make in methods.items()}
        dask = {}
        if not args.no_dask:
            from distributed import Client, LocalCluster

            with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                              host="127.0.0.1", dashboard_address=None) as cluster, \
                    Client(cluster):
                dask = {name: _interleaved_rates({"1": (make(1).fit(features), None),
                                                  "dask": (make(None).fit(features), "dask")},
                                                 features, args.repeats)
                        for name, make in methods.items()}
    print("| method | n_jobs=1 | n_jobs=2 | speed-up | n_jobs=1, cluster up | "
          "dask (2 workers) | speed-up |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, rates in loky.items():
        row = f"| {name} | {rates['1']:.2f} | {rates['2']:.2f} | {rates['2'] / rates['1']:.2f}x |"
        if name in dask:
            ref, rate = dask[name]["1"], dask[name]["dask"]
            row += f" {ref:.2f} | {rate:.2f} | {rate / ref:.2f}x |"
        else:
            row += " - | - | - |"
        print(row)


if __name__ == "__main__":
    main()
