"""
CLASP: spectral clustering with an automatic number of segments
===============================================================

:class:`~sklearn_useg.CLASPSegmenter` is training-free: for each image it
eigendecomposes the cosine affinity of the patch features, picks the number of
segments ``K`` at the elbow of the eigengaps, refines it with the silhouette (no fewer
than ``min_segments``, 4 by default; 2 is the paper's), and clusters the spectral
embedding with k-means. Here it runs on two BSDS500 images and
is compared with the :class:`~sklearn_useg.KMeansSegmenter` baseline at a fixed
``k``, both scored against the human segmentations with per-image Hungarian mIoU.
"""

# %%
# Features
# --------
# Two validation images, the short side resized to 224 pixels (a 16 x 24 patch grid
# for DINOv2 ViT-S/14). The checkpoint comes from ``$SKLEARN_USEG_WEIGHTS``.
from sklearn_useg import CLASPSegmenter, DinoFeatures, KMeansSegmenter, hungarian_miou
from sklearn_useg.datasets import load_bsds500
from sklearn_useg.plotting import plot_segmentations

data = load_bsds500("val", n_images=4)
images = [data.images[0], data.images[3]]
targets = [data.targets[0], data.targets[3]]
features = DinoFeatures(resize=224).transform(images)
print("patch grid:", features[0].grid_shape, "feature dim:", features[0].features.shape[-1])

# %%
# Segment
# -------
# ``return_details=True`` tells which ``K`` CLASP chose for each image.
clasp = CLASPSegmenter(random_state=0)
clasp_labels, details = clasp.fit_predict(features, return_details=True)
for name, d in zip(["first", "second"], details):
    print(f"{name} image: eigengap elbow K_opt = {d['k_opt']}, chosen K = {d['n_segments']}")
kmeans_labels = KMeansSegmenter(n_clusters=5, random_state=0).fit_predict(features)

for name, labels in [("CLASP", clasp_labels), ("k-means, k=5", kmeans_labels)]:
    print(f"{name}: mIoU = {hungarian_miou(targets, labels):.3f}")

# %%
# Overlays
# --------
# The number in each title is the number of segments.
fig = plot_segmentations(images, {"image": [None, None], "CLASP": clasp_labels,
                                  "k-means (k=5)": kmeans_labels,
                                  "human": [t[0] for t in targets]})
