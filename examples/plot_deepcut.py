"""
DeepCut: object discovery with a graph neural network per image
===============================================================

:class:`~sklearn_useg.DeepCutSegmenter` trains a small GNN on
each image's own patch graph to minimise a relaxed normalized cut. With
``n_clusters=2`` and a foreground rule (:func:`~sklearn_useg.refine.foreground_mask`:
the segments the ViT's CLS attention falls on, or, without attention, all but the
segment covering most of the image border) it finds the main object of the image. We
score it on Weizmann horses with foreground IoU and CorLoc.
"""

# %%
# Horses
# ------
import numpy as np

from sklearn_useg import DeepCutSegmenter, DinoFeatures, corloc, foreground_iou
from sklearn_useg.datasets import load_weizmann_horse
from sklearn_useg.plotting import plot_segmentations
from sklearn_useg.refine import foreground_mask

data = load_weizmann_horse(n_images=3)
features = DinoFeatures(resize=224, return_attention=True).transform(data.images)

# %%
# Two segments, then the foreground rule
# --------------------------------------
# By default the GNN takes the paper's schedule: 10 full-graph steps for a 2-way
# split, 100 for more clusters.
deepcut = DeepCutSegmenter(n_clusters=2, random_state=0)
labels = deepcut.fit_predict(features)
masks = [foreground_mask(lab, pf.attention) for lab, pf in zip(labels, features)]
border = [foreground_mask(lab, rule="border") for lab in labels]
print(f"attention rule: foreground IoU = {foreground_iou(data.targets, masks):.3f}, "
      f"CorLoc = {corloc(data.targets, masks):.3f}; border rule: foreground IoU = "
      f"{foreground_iou(data.targets, border):.3f}")

# %%
# Correlation clustering: the number of segments is found, not given
# -------------------------------------------------------------------
# With ``loss="cc"``, ``n_clusters`` is only a cap; lower ``alpha`` gives more
# segments. Here the training is shortened to 40 steps (the default is 100).
cc_labels = DeepCutSegmenter(n_clusters=6, loss="cc", n_epochs=40,
                             random_state=0).fit_predict(features)
print("segments with loss='cc':", [int(np.max(lab)) + 1 for lab in cc_labels])

fig = plot_segmentations(data.images, {"image": [None] * 3, "ncut, K=2": labels,
                                       "foreground": masks, "ground truth": data.targets,
                                       "cc, K<=6": cc_labels}, size=2.0)
