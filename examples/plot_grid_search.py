"""
Tuning a segmenter with GridSearchCV and ``miou_scorer``
========================================================

Segmenters learn without labels, but their hyperparameters can still be chosen
against a few annotated images: ``predict`` returns label maps and
:data:`~sklearn_useg.miou_scorer` compares them with the human segmentations by
per-image Hungarian mIoU, so :class:`~sklearn.model_selection.GridSearchCV` works
as for any scikit-learn estimator. The ground truth is used for scoring only.

Features are computed once, before the search, so that only the segmenter is
refitted for each candidate (see
:ref:`sphx_glr_auto_examples_plot_pipeline_cached_features.py` to search over the
feature extractor too).
"""

# %%
# Features of four BSDS500 images
# -------------------------------
import numpy as np
from sklearn.model_selection import GridSearchCV, KFold

from sklearn_useg import CLASPSegmenter, DinoFeatures, KMeansSegmenter, miou_scorer
from sklearn_useg.datasets import load_bsds500
from sklearn_useg.plotting import plot_segmentations

data = load_bsds500("val", n_images=4)
features = DinoFeatures(resize=224).transform(data.images)

# %%
# Search the number of segments of k-means
# ----------------------------------------
# Each item of ``y`` is the list of the image's human segmentations; the scorer
# averages over them.
cv = KFold(n_splits=2)
search = GridSearchCV(KMeansSegmenter(random_state=0),
                      {"n_clusters": [3, 5, 8], "normalize": ["l2", "center_l2"]},
                      scoring=miou_scorer, cv=cv)
search.fit(features, data.targets)
print("best:", search.best_params_, f"mIoU = {search.best_score_:.3f}")
for params, score in zip(search.cv_results_["params"],
                         search.cv_results_["mean_test_score"]):
    print(f"  {params}: {score:.3f}")

# %%
# CLASP's search range instead of a fixed ``k``
# ---------------------------------------------
# ``beta`` widens the range of ``K`` around the eigengap elbow that the silhouette
# chooses from (``n_segments=None``, the default, lets CLASP pick ``K`` per image).
clasp_search = GridSearchCV(CLASPSegmenter(random_state=0),
                            {"beta": [0.0, 0.5, 1.0]},
                            scoring=miou_scorer, cv=cv).fit(features, data.targets)
print("best:", clasp_search.best_params_, f"mIoU = {clasp_search.best_score_:.3f}")

# %%
# The tuned segmenters
# --------------------
# ``refit=True`` (the default) refits the best candidate on all images.
show = [0, 3]
best_kmeans = search.best_estimator_.predict([features[i] for i in show])
best_clasp = clasp_search.best_estimator_.predict([features[i] for i in show])
fig = plot_segmentations([data.images[i] for i in show],
                         {"image": [None, None], "tuned k-means": best_kmeans,
                          "tuned CLASP": best_clasp,
                          "human": [data.targets[i][0] for i in show]})
print("segments:", [int(np.max(lab)) + 1 for lab in best_clasp])
