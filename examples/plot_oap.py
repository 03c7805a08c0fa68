"""
OAP: a hierarchy of instance and semantic masks
===============================================

:class:`~sklearn_useg.OAPSegmenter` (Online Agglomerative Pooling) starts from one
node per superpixel of the image (its default whenever the features carry their
image; ``nodes="patches"`` starts from one node per patch, as the paper does) and,
layer after layer, contracts the edges between adjacent nodes whose combined feature
and affinity-row similarity exceeds a decreasing threshold ``τ``. The connected
components of each layer are *instance* masks; merging them across the image (without
the connectivity constraint) gives *semantic* masks. ``layer`` picks the depth of the
hierarchy, ``level`` the kind of mask. It is training-free.
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
# Deeper layers (lower thresholds) merge more. The thresholds assume centred,
# L2-normalised features, which the estimator computes itself
# (``normalize="center_l2"``). The last column is the paper's setting: patch nodes,
# the finest instance layer; its masks are snapped to the image's superpixels only
# afterwards (``refine="auto"``).
columns = {"image": [None] * len(images)}
settings = [dict(layer=layer, level=level) for layer in (1, 3)
            for level in ("instance", "semantic")]
settings.append(dict(nodes="patches", layer=0, level="instance"))
for params in settings:
    labels, details = OAPSegmenter(**params).fit(features).predict(
        features, return_details=True)
    name = f"{details[0]['nodes']}, {params['level']}, τ={details[0]['threshold']}"
    columns[name] = labels
    print(f"{name:>32}: mIoU = {hungarian_miou(targets, labels):.3f}, "
          f"segments = {[int(lab.max()) + 1 for lab in labels]}")

fig = plot_segmentations(images, columns, size=2.0)
