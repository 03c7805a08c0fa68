"""BaseSegmenter machinery through the KMeansSegmenter baseline, and the Pipeline path."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline, make_pipeline

from sklearn_useg import DinoFeatures, KMeansSegmenter, PatchFeatures, hungarian_miou
from sklearn_useg.datasets import make_color_blobs, make_segmentation_blobs
from sklearn_useg.metrics import miou_scorer
from sklearn_useg.segmenters import BaseSegmenter, SegmentResult


def test_kmeans_recovers_blobs():
    X, y = make_segmentation_blobs(n_images=3, n_segments=4, random_state=0)
    labels = KMeansSegmenter(n_clusters=4, random_state=0).fit_predict(X)
    assert hungarian_miou(y, labels) > 0.95


@given(h=st.integers(1, 9), w=st.integers(1, 9), d=st.integers(1, 6),
       k=st.integers(1, 6), seed=st.integers(0, 100))
def test_output_contract_for_any_grid(h, w, d, k, seed):
    X = [np.random.RandomState(seed).randn(h, w, d)]
    labels = KMeansSegmenter(n_clusters=k, random_state=seed, n_init=1).fit_predict(X)
    out = labels[0]
    assert out.shape == (h, w) and out.dtype == np.int32
    assert set(np.unique(out)) == set(range(out.max() + 1)) and out.max() < k


def test_labels_come_back_at_image_resolution():
    grid = np.random.RandomState(0).randn(4, 6, 3).astype(np.float32)
    pf = PatchFeatures(features=grid, image_shape=(61, 90), patch_size=14, stride=14)
    out = KMeansSegmenter(n_clusters=3, random_state=0).fit_predict([pf])[0]
    grid_labels = KMeansSegmenter(n_clusters=3, random_state=0).fit_predict([grid])[0]
    assert out.shape == (61, 90) and out.dtype == np.int32
    assert hungarian_miou([out[7::15, 7::15][:4, :6]], [grid_labels]) == 1.0


def test_determinism_and_n_jobs():
    X, _ = make_segmentation_blobs(n_images=4, n_segments=5, noise=0.8, random_state=1)
    first = KMeansSegmenter(n_clusters=5, random_state=3).fit_predict(X)
    second = KMeansSegmenter(n_clusters=5, random_state=3, n_jobs=2).fit_predict(X)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_return_details_and_fit_predict_params():
    X, _ = make_segmentation_blobs(n_images=2, random_state=0)
    labels, details = KMeansSegmenter(random_state=0).fit_predict(X, return_details=True)
    assert len(labels) == len(details) == 2 and all(isinstance(d, dict) for d in details)


def test_errors():
    X, _ = make_segmentation_blobs(n_images=1, n_features=8, random_state=0)
    with pytest.raises(NotFittedError):
        KMeansSegmenter().predict(X)
    fitted = KMeansSegmenter(n_clusters=2).fit(X)
    with pytest.raises(ValueError, match=r"X\[0\] has 3 features per patch.*fitted with 8"):
        fitted.predict([np.zeros((4, 4, 3))])
    with pytest.raises(ValueError, match="n_clusters"):
        KMeansSegmenter(n_clusters=0).fit(X)
    with pytest.raises(ValueError, match="X is empty"):
        KMeansSegmenter().fit([])


def test_clone_gives_an_unfitted_copy():
    X, _ = make_segmentation_blobs(n_images=1, random_state=0)
    est = KMeansSegmenter(n_clusters=3, random_state=0).fit(X)
    copy = clone(est)
    assert copy.get_params() == est.get_params()
    with pytest.raises(NotFittedError):
        copy.predict(X)


def test_grid_search_on_synthetic_features():
    X, y = make_segmentation_blobs(n_images=4, n_segments=3, random_state=0)
    search = GridSearchCV(KMeansSegmenter(random_state=0), {"n_clusters": [2, 3, 6]},
                          scoring=miou_scorer, cv=2).fit(X, y)
    assert search.best_params_ == {"n_clusters": 3} and search.best_score_ > 0.95


def test_score_is_the_mean_per_image_miou():
    X, y = make_segmentation_blobs(n_images=3, n_segments=3, noise=1.0, random_state=0)
    seg = KMeansSegmenter(n_clusters=2, random_state=0).fit(X)
    per_image = [hungarian_miou([t], [p]) for t, p in zip(y, seg.predict(X))]
    assert seg.score(X, y) == pytest.approx(np.mean(per_image))
    assert seg.score(X, y) == miou_scorer(seg, X, y) < 0.9  # 2 segments for 3 regions


def test_pipeline_grid_search_without_scoring_uses_score():
    images, y = make_color_blobs(4, image_shape=(32, 48), n_segments=3, random_state=0)
    pipe = make_pipeline(DinoFeatures(backbone="test_vit", weights=None, device="cpu"),
                         KMeansSegmenter(random_state=0))
    grid = {"kmeanssegmenter__n_clusters": [2, 3]}
    default = GridSearchCV(pipe, grid, cv=2).fit(images, y)
    explicit = GridSearchCV(pipe, grid, scoring=miou_scorer, cv=2).fit(images, y)
    np.testing.assert_array_equal(default.cv_results_["mean_test_score"],
                                  explicit.cv_results_["mean_test_score"])
    assert default.best_params_ == explicit.best_params_
    assert default.score(images, y) == explicit.score(images, y)


def test_unnamed_pipeline_steps_point_to_make_pipeline():
    images, _ = make_color_blobs(1, image_shape=(32, 48), random_state=0)
    extractor = DinoFeatures(backbone="test_vit", weights=None, device="cpu")
    with pytest.raises(TypeError, match=r"DinoFeatures is not a \(name, estimator\) pair.*"
                                        r"make_pipeline\(DinoFeatures\(\), CLASP"):
        Pipeline([extractor, KMeansSegmenter()]).fit(images)
    with pytest.raises(TypeError, match="KMeansSegmenter is not a"):
        Pipeline([("features", extractor), KMeansSegmenter()]).fit(images)
    labels = make_pipeline(extractor, KMeansSegmenter(2, random_state=0)).fit_predict(images)
    assert labels[0].shape == (32, 48)


@pytest.mark.real_data
def test_pipeline_grid_search_on_bsds(weights_path, data_home):
    from sklearn_useg.datasets import load_bsds500

    data = load_bsds500("val", data_home=data_home, n_images=4)
    pipe = Pipeline([("f", DinoFeatures(weights=weights_path)),
                     ("s", KMeansSegmenter(n_clusters=5, random_state=0))])
    search = GridSearchCV(pipe, {"s__n_clusters": [3, 5]}, scoring=miou_scorer, cv=2)
    search.fit(data.images, data.targets)
    # BSDS images hold many segments: 5 clusters match them better (measured 0.147
    # against 0.106 for 3)
    assert search.best_params_["s__n_clusters"] == 5
    assert search.best_score_ > 0.12
    labels = search.predict(data.images[:1])
    assert labels[0].shape == data.images[0].shape[:2] and labels[0].dtype == np.int32


class _ImageMean(BaseSegmenter):
    """Two segments: patches whose image block is brighter than the image's mean."""

    def _segment(self, pf, random_state):
        h, w = pf.grid_shape
        block = pf.image[:h * 14, :w * 14].mean(axis=2).reshape(h, 14, w, 14).mean((1, 3))
        return SegmentResult(labels=(block > block.mean()).astype(int))


class _Spy(KMeansSegmenter):
    def _segment(self, pf, random_state):
        assert pf.image is None, "the image was shipped to a method that never reads it"
        return super()._segment(pf, random_state)


def test_the_image_reaches_only_methods_that_read_it():
    rng = np.random.RandomState(0)
    image = np.zeros((28, 42, 3), dtype=np.uint8)
    image[:, 21:] = 200
    pf = PatchFeatures(features=rng.rand(2, 3, 4).astype(np.float32), image_shape=(28, 42),
                       image=image, patch_size=14, stride=14)
    labels = _ImageMean().fit([pf]).predict([pf])[0]  # a user subclass gets the image
    assert labels.shape == (28, 42) and len(np.unique(labels[:, :14])) == 1
    assert labels[0, 0] != labels[0, -1]
    assert _Spy(2, refine=None, random_state=0).fit([pf]).predict([pf])[0].shape == (28, 42)
    with pytest.raises(AssertionError, match="the image was shipped"):  # refine needs it
        _Spy(2, refine="superpixels", random_state=0).fit([pf]).predict([pf])
