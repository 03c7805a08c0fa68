"""
IL2VSeg: semantic classes from features and colour cues
=======================================================

:class:`~sklearn_useg.IL2VSegmenter` learns ``n_classes``
dataset-wide class centres for a projection of the features (high-level branch) and
fuses its soft assignments with colour clusters of the image itself (spatial fuzzy
c-means propagated by colour affinity, the low-level branch). Its labels are classes
shared by all images, so it can also be scored with dataset-level matching.

Training is shortened here (20 steps instead of 300) to keep the example fast on a CPU.
"""

# %%
# Fit on a few horses
# -------------------
from sklearn_useg import DinoFeatures, IL2VSegmenter, hungarian_miou
from sklearn_useg.datasets import load_weizmann_horse
from sklearn_useg.plotting import plot_segmentations

data = load_weizmann_horse(n_images=3)
features = DinoFeatures(resize=224).transform(data.images)

il2v = IL2VSegmenter(n_classes=4, max_iter=20, device="cpu", random_state=0)
labels = il2v.fit_predict(features)

# %%
# Classes shared across images
# ----------------------------
# The same class id means the same learned class in every image, so a single
# Hungarian matching over the whole set (``matching="dataset"``) is meaningful:
# here, horse vs background with 4 classes.
print(f"per-image mIoU = {hungarian_miou(data.targets, labels):.3f}")
print(f"dataset mIoU   = {hungarian_miou(data.targets, labels, matching='dataset'):.3f}")

# %%
# With and without the colour cues
# --------------------------------
# ``alpha`` weighs the colour cues in the fusion; ``predict_alpha=0`` predicts from
# the learned head only.
head_only = il2v.set_params(predict_alpha=0.0).predict(features)
fig = plot_segmentations(data.images[:2],
                         {"image": [None, None], "fused": labels[:2],
                          "head only": head_only[:2], "mask": data.targets[:2]})
