"""
OAP: a hierarchy of instance and semantic masks
===============================================

:class:`~sklearn_useg.OAPSegmenter` (Online Agglomerative Pooling)
starts from one node per patch and, layer after layer, contracts the grid edges
whose combined feature and affinity-row similarity exceeds a decreasing threshold
``τ``. The connected components of each layer are *instance* masks; merging them
across the image (without the connectivity constraint) gives *semantic* masks.
``layer`` picks the depth of the hierarchy, ``level`` the kind of mask. It is
training-free.
"""

# %%
# Features of two BSDS500 images
# ------------------------------
from sklearn_useg import DinoFeatures, OAPSegmenter, hungarian_miou
from sklearn_useg.datasets import load_bsds500
from sklearn_useg.plotting import plot_segmentations

data = load_bsds500("val", n_images=4)
images = [data.images[1], data.images[3]]
targets = [data.targets[1], data.targets[3]]
features = DinoFeatures(resize=224).transform(images)

# %%
# Walking down the hierarchy
# --------------------------
# Deeper layers (lower thresholds) merge more. The defaults (``τ`` from 0.8 down to
# 0.4) assume centred, L2-normalised features, which the estimator computes itself
# (``normalize="center_l2"``).
columns = {"image": [None] * len(images)}
for layer in (1, 2, 4):
    for level in ("instance", "semantic"):
        seg = OAPSegmenter(layer=layer, level=level)
        labels = seg.fit_predict(features)
        tau = seg.thresholds[layer]
        columns[f"{level}, τ={tau}"] = labels
        print(f"layer {layer} (τ={tau}) {level:>8}: "
              f"mIoU = {hungarian_miou(targets, labels):.3f}, "
              f"segments = {[int(lab.max()) + 1 for lab in labels]}")

fig = plot_segmentations(images, columns, size=2.0)
