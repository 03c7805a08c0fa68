"""CLASPSegmenter speed (thin spectrum vs dense reference) and BSDS500 quality.

    python benchmarks/clasp.py speed --n-images 5      # n ~ 2000 patches (resize 518)
    python benchmarks/clasp.py speed --sweep-n-init 10 3 1   # sweep restarts side by side
    python benchmarks/clasp.py quality --n-images 100  # BSDS500 val, native size

``speed``: per image, the spectral + K-selection step of ``CLASPSegmenter`` (thin Gram
spectrum, elbow, k-means per K, O(n d K) cosine silhouette) side by side with two dense
references on the same features: *reference* — the issue's formulation, a dense
``numpy.linalg.eigh`` of ``A`` for the elbow, then
``sklearn.cluster.SpectralClustering(affinity="precomputed")`` on ``max(A, 0)`` (it
needs non-negative affinities) and ``silhouette_score(metric="cosine")`` per K;
*dense-same* — dense ``eigh`` of ``A`` and the same k-means on its eigenvectors plus
``silhouette_score`` (checks that K_opt, K and labels are identical); both references
follow the segmenter's restarts (``n_init``, ``sweep_n_init``), one table per
``--sweep-n-init`` value. Also the median per-image time of feature extraction (no
cache), of the spectral step and of DenseCRF, on the CPU and, when CUDA is available, on
the GPU. Every formulation runs single-threaded (BLAS and OpenMP), as the segmenter does
per image (on a loaded 2-core machine, threaded BLAS made a 2000 x 2000 eigh 3-7x
slower).

``quality``: BSDS500 val per-image Hungarian mIoU and segmentation covering (both mean
over the human maps) of CLASP patch (no CRF) and pixel (DenseCRF) variants next to
``KMeansSegmenter(5)`` and scikit-image ``felzenszwalb(scale=500, sigma=0.8,
min_size=500)``, in the same run, on last-layer token features. Prints Markdown tables.
"""

import argparse
import os
import tempfile
import time

import numpy as np
from sklearn.cluster import KMeans, SpectralClustering
from sklearn.metrics import adjusted_rand_score, silhouette_score
from threadpoolctl import threadpool_limits

from sklearn_useg import CLASPSegmenter, DinoFeatures, KMeansSegmenter
from sklearn_useg.datasets import load_bsds500
from sklearn_useg.graph import eigengap_elbow, l2_normalize, normalize_features
from sklearn_useg.metrics import hungarian_miou, segmentation_covering
from sklearn_useg.refine import dense_crf, upsample_labels


def _features(images, args, device="cpu", memory="cache"):
    return DinoFeatures(weights=args.weights, facet="token", resize=args.resize,
                        memory=args.cache if memory == "cache" else None,
                        device=device).transform(images)


def _timed(fn, *a, **kw):
    start = time.perf_counter()
    out = fn(*a, **kw)
    return out, time.perf_counter() - start


def _dense(X, seg, seed, formulation):
    """Dense reference: eigh of the n x n affinity, elbow, then per K either
    SpectralClustering(precomputed A) or k-means on A's eigenvectors (scaled by √λ
    with the scaled embedding), and sklearn's silhouette (an n x n distance matrix per
    K); the sweep's restarts and the chosen K's refit follow ``seg`` (``n_init``,
    ``sweep_n_init``)."""
    A = X @ X.T
    values, vectors = np.linalg.eigh(A)
    values, vectors = values[::-1], vectors[:, ::-1]
    if seg.embedding == "scaled":
        vectors = vectors * np.sqrt(np.maximum(values, 0))
    k_opt = eigengap_elbow(values)

    def cluster(k, n_init):
        if formulation == "reference":
            # SpectralClustering needs a non-negative affinity (its Laplacian takes
            # square roots of degrees): negative cosines are clipped to 0
            return SpectralClustering(k, affinity="precomputed", n_init=n_init,
                                      random_state=seed).fit_predict(np.clip(A, 0, None))
        return KMeans(k, n_init=n_init, random_state=seed).fit_predict(
            l2_normalize(vectors[:, :k]))

    k_range = seg._k_range(k_opt, min(seg.max_segments, len(X)))
    sweep_n_init = seg.n_init if len(k_range) == 1 else seg.sweep_n_init or seg.n_init
    best = None
    for k in k_range:
        labels = cluster(k, sweep_n_init)
        score = silhouette_score(X, labels, metric="cosine")
        if best is None or score > best[0]:
            best = (score, k, labels)
    if sweep_n_init < seg.n_init:
        best = (None, best[1], cluster(best[1], seg.n_init))
    return k_opt, best[1], best[2]


def speed(args):
    data = load_bsds500("val", n_images=args.n_images)
    devices = ["cpu"] + (["cuda"] if _cuda() else [])
    seed = 0
    timing = {d: {"features": []} for d in devices}
    timing["cpu"]["crf"] = []
    for device in devices:
        for image in data.images:  # features timed without the cache, one image at a time
            _, secs = _timed(_features, [image], args, device=device, memory=None)
            timing[device]["features"].append(secs)
    features = _features(data.images, args)
    kseed = np.random.RandomState(
        np.random.RandomState(seed).randint(2**31 - 1)).randint(2**31 - 1)
    rows = {sweep: [] for sweep in args.sweep_n_init}
    spectral = {(d, sweep): [] for d in devices for sweep in args.sweep_n_init}
    with threadpool_limits(limits=1):  # every formulation single-threaded (BLAS, OpenMP)
        for pf in features:
            X = normalize_features(pf.flat, "l2").astype(np.float64)
            grid = pf.features
            for sweep in args.sweep_n_init:
                for device in devices:
                    seg = CLASPSegmenter(sweep_n_init=sweep, device=device,
                                         random_state=seed).fit([grid])
                    (labels, details), secs = _timed(seg.predict, [grid], return_details=True)
                    spectral[device, sweep].append(secs)
                    if device == "cpu":
                        ours, ours_secs, ours_det = labels[0].ravel(), secs, details[0]
                (ref_kopt, ref_k, ref_labels), ref_secs = _timed(_dense, X, seg, kseed,
                                                                 "reference")
                (den_kopt, den_k, den_labels), den_secs = _timed(_dense, X, seg, kseed, "same")
                rows[sweep].append((len(X), ours_det["k_opt"], ref_kopt, den_kopt,
                                    ours_det["n_segments"], ref_k, den_k,
                                    adjusted_rand_score(den_labels, ours),
                                    ours_secs, ref_secs, den_secs))
            crf_labels = upsample_labels(labels[0], pf.image_shape)
            _, secs = _timed(dense_crf, pf.image, crf_labels)
            timing["cpu"]["crf"].append(secs)
    print(f"BSDS500 val, {len(features)} images, token features, resize={args.resize}; "
          f"spectral + K-selection step, seconds per image\n")
    for sweep, sweep_rows in rows.items():
        print(f"sweep_n_init={sweep} (n_init={seg.n_init}; the references follow the same "
              "restarts)\n")
        print("| n | K_opt ours / ref / dense-same | K ours / ref / dense-same | ARI vs "
              "dense-same | ours s | reference s | dense-same s | ref / ours | "
              "dense-same / ours |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for n, ko, kr, kd, k, rk, dk, ari, t, tr, td in sweep_rows:
            print(f"| {n} | {ko} / {kr} / {kd} | {k} / {rk} / {dk} | {ari:.3f} | {t:.3f} | "
                  f"{tr:.2f} | {td:.2f} | {tr / t:.1f}x | {td / t:.1f}x |")
        ours, ref, den = (np.array([r[i] for r in sweep_rows]) for i in (8, 9, 10))
        print(f"\nmedian: ours {np.median(ours):.3f} s, reference {np.median(ref):.2f} s "
              f"({np.median(ref / ours):.1f}x), dense-same {np.median(den):.2f} s "
              f"({np.median(den / ours):.1f}x); identical K vs reference "
              f"{sum(r[4] == r[5] for r in sweep_rows)}/{len(sweep_rows)}, vs dense-same "
              f"{sum(r[4] == r[6] for r in sweep_rows)}/{len(sweep_rows)}\n")
    print("| device | features s | " + " | ".join(
        f"spectral step s, sweep_n_init={sweep}" for sweep in args.sweep_n_init)
        + " | DenseCRF s |")
    print("| --- | --- | " + "--- | " * len(args.sweep_n_init) + "--- |")
    crf = f"{np.median(timing['cpu']['crf']):.3f} (CPU)"
    for device in devices:
        steps = " | ".join(f"{np.median(spectral[device, sweep]):.3f}"
                           for sweep in args.sweep_n_init)
        print(f"| {device} | {np.median(timing[device]['features']):.3f} | {steps} | {crf} |")


def _cuda():
    import torch

    return torch.cuda.is_available()


def quality(args):
    from skimage.segmentation import felzenszwalb

    data = load_bsds500("val", n_images=args.n_images)
    features = _features(data.images, args)
    print(f"BSDS500 val, {len(features)} images, token features, grid "
          f"{features[0].grid_shape}; per-image Hungarian mIoU and covering (mean over "
          f"human maps)\n")
    print("| method | mIoU | covering | segments (median) | s/image |")
    print("| --- | --- | --- | --- | --- |")
    rows = [("KMeansSegmenter(5)", KMeansSegmenter(5, random_state=0))]
    for norm in args.normalize:
        for spectrum in args.spectrum:
            tag = f"normalize={norm}, spectrum={spectrum}"
            rows += [(f"CLASP patch ({tag})", CLASPSegmenter(
                         normalize=norm, spectrum=spectrum, random_state=0)),
                     (f"CLASP pixel ({tag})", CLASPSegmenter(
                         normalize=norm, spectrum=spectrum, refine="crf", random_state=0))]
    rows += [(f"CLASP patch (n_segments={k})", CLASPSegmenter(k, random_state=0))
             for k in args.fixed_k]
    for name, est in rows:
        (labels, details), secs = _timed(est.fit(features).predict, features,
                                         return_details=True)
        _row(name, data.targets, labels, secs / len(features))
        if details and "k_opt" in details[0]:
            print(f"|   K_opt median {np.median([d['k_opt'] for d in details]):g}, chosen K "
                  f"mean {np.mean([d['n_segments'] for d in details]):.2f} | | | | |")
    start = time.perf_counter()
    labels = [felzenszwalb(img, scale=500, sigma=0.8, min_size=500) for img in data.images]
    _row("felzenszwalb(500, 0.8, 500)", data.targets, labels,
         (time.perf_counter() - start) / len(labels))


def _row(name, targets, labels, secs):
    n_seg = np.median([len(np.unique(lab)) for lab in labels])
    print(f"| {name} | {100 * hungarian_miou(targets, labels):.1f} | "
          f"{100 * segmentation_covering(targets, labels):.1f} | {n_seg:g} | {secs:.3f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["speed", "quality"])
    parser.add_argument("--n-images", type=int, default=None,
                        help="first N val images (default: 5 for speed, all for quality)")
    parser.add_argument("--resize", type=int, default=None,
                        help="short side in pixels (default: 518 for speed, i.e. n ~ 2000 "
                             "patches; native size for quality)")
    parser.add_argument("--normalize", nargs="+", default=["l2"],
                        choices=["l2", "center_l2"], help="CLASP variants (quality)")
    parser.add_argument("--spectrum", nargs="+", default=["affinity"],
                        choices=["affinity", "laplacian"], help="CLASP variants (quality)")
    parser.add_argument("--fixed-k", nargs="*", type=int, default=[],
                        help="extra CLASP patch rows with n_segments fixed (quality)")
    parser.add_argument("--sweep-n-init", nargs="+", type=int,
                        default=[CLASPSegmenter().sweep_n_init],
                        help="CLASP's sweep_n_init values timed side by side (speed)")
    parser.add_argument("--weights", default="auto")
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "useg_cache"))
    args = parser.parse_args()
    if args.command == "speed":
        args.n_images = args.n_images or 5
        args.resize = args.resize or 518
        speed(args)
    else:
        quality(args)


if __name__ == "__main__":
    main()
