"""
ACSeg: adaptive concepts learned over a dataset
===============================================

:class:`~sklearn_useg.ACSegSegmenter` learns ``n_prototypes``
concept prototypes over a whole set of images (no labels) by maximising the
modularity of each image's patch graph. For each image the prototypes are refined
by a small decoder; every patch goes to its closest concept, and concepts that win
no patch are dropped, so the number of segments adapts to the image.

The paper's decoder (6 layers, 2500 iterations) needs a GPU; to keep this example
to seconds on a CPU we train a 2-layer decoder for 15 iterations with a larger
learning rate, on four BSDS500 images, with centred features (``normalize="center_l2"``:
with the DINOv2 backbone, raw features make almost every pair of patches look alike,
and this short training then often ends with a single concept per image).
"""

# %%
# Train on a few images
# ---------------------
import matplotlib.pyplot as plt

from sklearn_useg import ACSegSegmenter, DinoFeatures, hungarian_miou
from sklearn_useg.datasets import load_bsds500
from sklearn_useg.plotting import plot_segmentations

data = load_bsds500("val", n_images=4)
features = DinoFeatures(resize=224).transform(data.images)

acseg = ACSegSegmenter(n_prototypes=5, n_layers=2, ffn_dim=256, n_iter=15,
                       learning_rate=3e-3, normalize="center_l2", device="cpu",
                       random_state=0)
acseg.fit(features)
print(f"trained in {acseg.fit_time_:.1f} s")

fig, ax = plt.subplots(figsize=(4, 2.5))
ax.plot(acseg.loss_curve_)
ax.set_xlabel("iteration")
ax.set_ylabel("loss (- modularity)")
fig.tight_layout()

# %%
# Segments adapt to each image
# ----------------------------
labels, details = acseg.predict(features, return_details=True)
print("segments per image:", [d["n_segments"] for d in details])
print(f"mIoU = {hungarian_miou(data.targets, labels):.3f}")

show = [0, 3]
fig = plot_segmentations([data.images[i] for i in show],
                         {"image": [None, None], "ACSeg": [labels[i] for i in show],
                          "human": [data.targets[i][0] for i in show]})
