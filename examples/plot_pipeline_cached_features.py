"""
A Pipeline with cached features
===============================

:class:`~sklearn_useg.DinoFeatures` and a segmenter form a
:class:`~sklearn.pipeline.Pipeline` that goes from raw images to label maps, so
:class:`~sklearn.model_selection.GridSearchCV` can tune parameters of *both* steps.
Feature extraction dominates the cost; ``DinoFeatures(memory=...)`` caches the
features of each image (keyed on its pixels and the extraction parameters), so every
candidate and every fold after the first reuses them. Feature normalisation is
applied after the cache, so searching over ``normalize`` is free.
"""

# %%
# The pipeline
# ------------
import tempfile
import time

from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import Pipeline

from sklearn_useg import DinoFeatures, KMeansSegmenter, miou_scorer
from sklearn_useg.datasets import load_bsds500
from sklearn_useg.plotting import plot_segmentations

data = load_bsds500("val", n_images=4)
cache = tempfile.TemporaryDirectory()  # in practice a persistent folder
pipe = Pipeline([("features", DinoFeatures(resize=224, memory=cache.name)),
                 ("seg", KMeansSegmenter(n_clusters=4, random_state=0))])

# %%
# The first call computes the features, the second reads them from the cache
# ---------------------------------------------------------------------------
for attempt in ("first", "second"):
    start = time.perf_counter()
    labels = pipe.fit_predict(data.images)
    print(f"{attempt} fit_predict: {time.perf_counter() - start:.2f} s")

# %%
# Search over both steps
# ----------------------
# The facet of the backbone and the feature normalisation are feature-step
# parameters; the segmenter's are searched the same way (``seg__n_clusters``). The
# ``"token"`` facet is cached already; ``"key"`` is computed once and then reused by
# every candidate and fold.
grid = {"features__facet": ["token", "key"],
        "features__normalize": ["none", "center"],
        "seg__n_clusters": [5]}
start = time.perf_counter()
search = GridSearchCV(pipe, grid, scoring=miou_scorer, cv=KFold(2)).fit(
    data.images, data.targets)
print(f"{len(search.cv_results_['params'])} candidates x 2 folds in "
      f"{time.perf_counter() - start:.1f} s")
print("best:", search.best_params_, f"mIoU = {search.best_score_:.3f}")

fig = plot_segmentations(data.images[:2], {"image": [None, None],
                                           "best pipeline": search.predict(data.images[:2]),
                                           "human": [t[0] for t in data.targets[:2]]})
cache.cleanup()
