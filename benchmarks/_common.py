"""Pieces shared by the benchmark scripts (run them as ``python benchmarks/<name>.py``)."""

import time

import numpy as np
from sklearn.cluster import KMeans

from sklearn_useg.graph import normalize_features
from sklearn_useg.metrics import hungarian_miou, pixel_accuracy
from sklearn_useg.refine import upsample_labels


def timed(fn, *args, **kwargs):
    """``(fn(*args, **kwargs), wall seconds)``."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def dataset_scores(targets, preds):
    """Dataset-level Hungarian mIoU and pixel accuracy, in percent."""
    return (100 * hungarian_miou(targets, preds, matching="dataset"),
            100 * pixel_accuracy(targets, preds, matching="dataset"))


def kmeans_dataset_baseline(train, val, n_classes, seed):
    """k-means with ``n_classes`` clusters over all L2-normalised training patches;
    label maps of the validation images at their resolution."""
    X = np.concatenate([normalize_features(pf.flat, "l2") for pf in train])
    km = KMeans(n_clusters=n_classes, n_init=3, random_state=seed).fit(X)
    return [upsample_labels(km.predict(normalize_features(pf.flat, "l2")).reshape(pf.grid_shape),
                            pf.image_shape) for pf in val]
