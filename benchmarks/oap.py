"""OAPSegmenter quality (BSDS500, Weizmann horses) and pooling speed, next to KMeans.

    python benchmarks/oap.py bsds --n-images 50     # per layer and level: mIoU, covering
    python benchmarks/oap.py horse --n-images 50    # per layer: fg IoU (semantic + border rule)
    python benchmarks/oap.py speed --n-images 10    # ms/image of the pooling, features excluded

``bsds``: BSDS500 val, per-image Hungarian mIoU and segmentation covering (mean over the
human maps) of the instance and semantic masks of every layer, on superpixel nodes (the
default) and on patch nodes for centred keys, raw L2 keys (the paper's normalisation)
and the paper's literal pooling ``softmax(M A / σ)`` (``mean_pooling=False``), next to
``KMeansSegmenter(k)``.
``horse``: Weizmann horses, foreground = every semantic mask of the layer except the one
covering most of the image border (:func:`sklearn_useg.refine.border_foreground`);
foreground IoU and CorLoc, next to ``KMeansSegmenter(2)`` + the same rule. ``speed``:
median milliseconds per image of the whole hierarchy (5 layers, instance + semantic,
:func:`sklearn_useg.segmenters.oap.oap_hierarchy` on normalised keys, patch nodes;
features excluded), at BSDS native size and on a 56 x 56 grid (images resized to 784 px,
3136 tokens), with DinoFeatures' own time for the ratio, ``OAPSegmenter().predict`` (on
superpixel nodes, their superpixels included) beside the former default's (patch nodes
and the superpixel refinement) and ``KMeansSegmenter(5)``'s ``predict`` (without the
refinement). All features are last-layer keys
from a joblib cache (``--cache``); tables are Markdown.
"""

import argparse
import os
import tempfile
import time

import numpy as np

from sklearn_useg import DinoFeatures, KMeansSegmenter
from sklearn_useg.datasets import load_bsds500, load_weizmann_horse
from sklearn_useg.graph import normalize_features
from sklearn_useg.metrics import corloc, foreground_iou, hungarian_miou, segmentation_covering
from sklearn_useg.refine import border_foreground, upsample_labels
from sklearn_useg import OAPSegmenter
from sklearn_useg.segmenters.oap import DEFAULT_HIERARCHY, oap_hierarchy

N_LAYERS = 5  # the default thresholds of either kind of node


def _features(images, args, **params):
    return DinoFeatures(weights=args.weights, facet="key", memory=args.cache, device="cpu",
                        **params).transform(images)


def _oap_variants():
    patches = dict(nodes="patches", thresholds=DEFAULT_HIERARCHY["patches"][0])
    return [("OAP on superpixels (default)", OAPSegmenter(
                nodes="superpixels", thresholds=DEFAULT_HIERARCHY["superpixels"][0])),
            ("OAP centred, patches", OAPSegmenter(**patches)),
            ("OAP raw L2 keys, patches", OAPSegmenter(normalize="l2", **patches)),
            ("OAP centred, pooling M A (paper), patches",
             OAPSegmenter(mean_pooling=False, **patches))]


def _hierarchy(seg, features):
    """Every layer of every image in one pass (what ``predict`` returns per layer)."""
    return seg.fit(features).predict_hierarchy(features)


def _level(hierarchy, features, level, t):
    """The label maps ``predict(level=level, layer=t)`` gives, at image resolution."""
    return [upsample_labels(layers[t][f"{level}_reported"], pf.image_shape)
            for layers, pf in zip(hierarchy, features)]


def _n_segments(labels):
    return float(np.median([len(np.unique(lab)) for lab in labels]))


def bsds(args):
    data = load_bsds500("val", n_images=args.n_images)
    features = _features(data.images, args)
    print(f"BSDS500 val, {len(features)} images, key facet, grid {features[0].grid_shape}; "
          "per-image Hungarian mIoU and covering (mean over human maps), %\n")
    print("| method | level | layer (τ) | mIoU | covering | segments (median) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for k in args.kmeans:
        labels = KMeansSegmenter(k, random_state=0).fit_predict(features)
        print(f"| KMeansSegmenter({k}) | - | - | {100 * hungarian_miou(data.targets, labels):.1f}"
              f" | {100 * segmentation_covering(data.targets, labels):.1f} | "
              f"{_n_segments(labels):g} |")
    for name, seg in _oap_variants():
        hierarchy = _hierarchy(seg, features)
        for level in ("instance", "semantic"):
            for t in range(N_LAYERS):
                labels = _level(hierarchy, features, level, t)
                print(f"| {name} | {level} | {t} ({seg.thresholds[t]:g}) | "
                      f"{100 * hungarian_miou(data.targets, labels):.1f} | "
                      f"{100 * segmentation_covering(data.targets, labels):.1f} | "
                      f"{_n_segments(labels):g} |")


def horse(args):
    data = load_weizmann_horse(n_images=args.n_images)
    features = _features(data.images, args)
    print(f"Weizmann horses, {len(features)} images, key facet; foreground = all but the "
          "segment covering most of the border, %\n")
    print("| method | layer (τ) | fg IoU | CorLoc | segments (median) |")
    print("| --- | --- | --- | --- | --- |")

    def row(name, labels):
        masks = [border_foreground(lab) for lab in labels]
        print(f"| {name} | {100 * foreground_iou(data.targets, masks):.1f} | "
              f"{100 * corloc(data.targets, masks):.1f} | {_n_segments(labels):g} |")

    for norm in ("l2", "center_l2"):
        row(f"KMeansSegmenter(2, normalize={norm}) | -",
            KMeansSegmenter(2, normalize=norm, random_state=0).fit_predict(features))
    for name, seg in _oap_variants():
        hierarchy = _hierarchy(seg, features)
        for t in range(N_LAYERS):
            row(f"{name}, semantic | {t} ({seg.thresholds[t]:g})",
                _level(hierarchy, features, "semantic", t))


def _timed(fn, device="cpu"):
    """Wall and process-CPU seconds of ``fn()`` (CPU time is robust to other processes
    sharing the machine; on a GPU only the wall time means something)."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    if device != "cpu":
        import torch

        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu


def _median_ms(fn, items, device, repeats):
    """Median over ``items`` of the best of ``repeats`` runs, (wall, cpu) in ms."""
    fn(items[0])  # warm up
    runs = [np.min([_timed(lambda: fn(item), device) for _ in range(repeats)], axis=0)
            for item in items]
    return tuple(1000 * np.median(runs, axis=0))


def speed(args):
    import torch

    from sklearn_useg._torch_utils import single_thread

    images = load_bsds500("val", n_images=args.n_images).images
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"{len(images)} BSDS500 val images, 1 CPU thread (torch and BLAS), median over "
          f"images of the best of {args.repeats} runs, wall / process CPU ms. OAP = whole "
          f"hierarchy ({N_LAYERS} layers, instance + semantic) on centred keys, features "
          "excluded. DinoFeatures: uncached key extraction, batch 1, first "
          f"{args.feature_images} images.\n")
    print("| grid (tokens) | step | device | wall ms | CPU ms | ratio to DinoFeatures |")
    print("| --- | --- | --- | --- | --- | --- |")
    with single_thread():  # torch, BLAS and OpenMP (oap_hierarchy sets none itself)
        for resize in (None, (784, 784)):
            params = dict(weights=args.weights, facet="key", device="cpu", resize=resize,
                          batch_size=1)
            features = DinoFeatures(memory=args.cache, **params).transform(images)
            extractor = DinoFeatures(**params).fit(images[:1])
            feat, feat_cpu = _median_ms(lambda im: extractor.transform([im]),
                                        images[:args.feature_images], "cpu", 1)
            grid = f"{features[0].grid_shape[0]}x{features[0].grid_shape[1]} " \
                   f"({features[0].n_patches})"
            print(f"| {grid} | DinoFeatures ViT-S/14 keys | cpu | {feat:.0f} | {feat_cpu:.0f}"
                  " | 1 |")
            keys = [normalize_features(pf.features, "center_l2") for pf in features]
            for device in devices:
                wall, cpu = _median_ms(lambda F: oap_hierarchy(F, device=device), keys,
                                       device, args.repeats)
                print(f"| {grid} | OAP hierarchy | {device} | {wall:.1f} | {cpu:.1f} | "
                      f"{wall / feat:.3f} |")
            for name, seg in (("OAPSegmenter() predict (superpixel nodes, their "
                               "superpixels included)", OAPSegmenter()),
                              ("OAPSegmenter(nodes='patches', level='instance') predict "
                               "with the superpixel refinement (the former default)",
                               OAPSegmenter(nodes="patches", level="instance"))):
                seg.fit(features[:1])
                wall, cpu = _median_ms(lambda pf: seg.predict([pf]), features, "cpu",
                                       args.repeats)
                print(f"| {grid} | {name} | cpu | {wall:.1f} | {cpu:.1f} | "
                      f"{wall / feat:.3f} |")
            kmeans = KMeansSegmenter(5, refine=None, random_state=0).fit(features[:1])
            wall, cpu = _median_ms(lambda pf: kmeans.predict([pf]), features, "cpu",
                                   args.repeats)
            print(f"| {grid} | KMeansSegmenter(5, refine=None) predict | cpu | {wall:.1f} | "
                  f"{cpu:.1f} | {wall / feat:.3f} |")


def main():
    import torch

    torch.set_num_threads(1)  # one thread: a shared machine, and comparable timings
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=["bsds", "horse", "speed"])
    parser.add_argument("--n-images", type=int, default=None,
                        help="first N images of the dataset (default: all; speed: 10)")
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "useg_cache"))
    parser.add_argument("--weights", default="auto")
    parser.add_argument("--kmeans", type=int, nargs="+", default=[3, 5, 8],
                        help="k of the KMeansSegmenter rows (bsds)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per image (speed)")
    parser.add_argument("--feature-images", type=int, default=2,
                        help="images whose uncached feature extraction is timed (speed)")
    args = parser.parse_args()
    if args.task == "speed" and args.n_images is None:
        args.n_images = 10
    {"bsds": bsds, "horse": horse, "speed": speed}[args.task](args)


if __name__ == "__main__":
    main()
