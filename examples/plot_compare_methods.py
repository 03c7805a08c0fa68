"""
All methods side by side
========================

Every segmenter consumes the same :class:`~sklearn_useg.PatchFeatures`, so the
features are computed once and each method is one line. Training-free methods
(:class:`~sklearn_useg.SuperpixelSegmenter`, :class:`~sklearn_useg.KMeansSegmenter`,
:class:`~sklearn_useg.CLASPSegmenter`, :class:`~sklearn_useg.OAPSegmenter`) and the
per-image GNN of
:class:`~sklearn_useg.DeepCutSegmenter` run with their defaults; the scores are
per-image Hungarian mIoU and segmentation covering against the human segmentations,
averaged over annotators (``python benchmarks/quality.py`` runs the same comparison
on whole datasets).
"""

from sklearn_useg import (CLASPSegmenter, DeepCutSegmenter, DinoFeatures, KMeansSegmenter,
                          OAPSegmenter, SuperpixelSegmenter, hungarian_miou,
                          segmentation_covering)
from sklearn_useg.datasets import load_bsds500
from sklearn_useg.plotting import plot_segmentations

data = load_bsds500("val", n_images=4)
images, targets = data.images[2:4], data.targets[2:4]
features = DinoFeatures(resize=224).transform(images)

methods = {
    "superpixel": SuperpixelSegmenter(),
    "k-means (k=5)": KMeansSegmenter(random_state=0),
    "CLASP": CLASPSegmenter(random_state=0),
    "OAP": OAPSegmenter(),
    "DeepCut (K=5)": DeepCutSegmenter(random_state=0),
}
columns = {"image": [None] * len(images)}
for name, segmenter in methods.items():
    columns[name] = segmenter.fit_predict(features)
    print(f"{name:>18}: mIoU = {hungarian_miou(targets, columns[name]):.3f}, "
          f"covering = {segmentation_covering(targets, columns[name]):.3f}")
columns["human"] = [t[0] for t in targets]

fig = plot_segmentations(images, columns, size=2.0)
