"""What every public estimator owes its users, on the input it takes (lists of feature
grids; images for DinoFeatures): scikit-learn's behavioural checks restated for that
input (they feed 2-D arrays, see test_sklearn_checks.py), determinism across n_jobs,
pickle and joblib round trips, and clone giving an unfitted copy."""

import io
import pickle

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline

from conftest import CHEAP_SEGMENTERS
from sklearn_useg import DinoFeatures, PatchFeatures, SemanticLabeler
from sklearn_useg.datasets import make_color_blobs, make_segmentation_blobs
from sklearn_useg.metrics import dataset_miou_scorer, miou_scorer

ESTIMATORS = {
    **CHEAP_SEGMENTERS,
    "dino_features": lambda: DinoFeatures(backbone="test_vit", weights=None, device="cpu"),
}
SEGMENTERS = sorted(CHEAP_SEGMENTERS)


@pytest.fixture(scope="module")
def blobs():
    return make_segmentation_blobs(4, grid_shape=(10, 12), n_segments=3, n_features=8,
                                   random_state=0)


@pytest.fixture(scope="module")
def images(blobs):
    return blobs[0]


@pytest.fixture(scope="module")
def pictures():
    return make_color_blobs(4, image_shape=(32, 48), n_segments=3, random_state=0)[0]


@pytest.fixture
def data(request, images, pictures):
    """The input of the estimator named by the test's ``name``: grids or images."""
    return pictures if request.node.callspec.params["name"] == "dino_features" else images


def _output(estimator, X):
    """What the estimator gives for ``X``: label maps, or feature grids."""
    if isinstance(estimator, DinoFeatures):
        return [pf.features for pf in estimator.transform(X)]
    return estimator.predict(X)


def _assert_same(a, b):
    """Equal labels; features equal up to float32 rounding (batched matmuls differ)."""
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.dtype == y.dtype and x.dtype in (np.int32, np.float32)
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


# ------------------------------------- scikit-learn's checks, for lists of grids


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_fit_returns_self_and_predict_leaves_the_estimator_unchanged(name, data):
    # check_estimators_fit_returns_self, check_dict_unchanged
    estimator = ESTIMATORS[name]()
    assert estimator.fit(data) is estimator
    before = joblib.hash(estimator)
    _output(estimator, data)
    assert joblib.hash(estimator) == before


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_fit_does_not_overwrite_parameters(name, data):
    # check_dont_overwrite_parameters, check_estimators_overwrite_params
    estimator = ESTIMATORS[name]()
    params = {key: joblib.hash(value) for key, value in estimator.get_params().items()}
    public = {key for key in vars(estimator) if not key.startswith("_")}
    estimator.fit(data)
    assert {key: joblib.hash(value)
            for key, value in estimator.get_params().items()} == params
    added = {key for key in vars(estimator) if not key.startswith("_")} - public
    assert all(key.endswith("_") for key in added), added


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_fit_is_idempotent(name, data):
    # check_fit_idempotent: refitting on the same data gives the same model
    estimator = ESTIMATORS[name]()
    first = _output(estimator.fit(data[:3]), data[3:])
    estimator.fit(data[1:])  # a different fit in between
    _assert_same(first, _output(estimator.fit(data[:3]), data[3:]))


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_images_are_segmented_independently(name, data):
    # check_methods_subset_invariance, check_methods_sample_order_invariance: one
    # image's output depends on neither the other images in X nor their order
    estimator = ESTIMATORS[name]().fit(data)
    whole = _output(estimator, data)
    _assert_same(whole, [_output(estimator, [x])[0] for x in data])
    _assert_same(whole[::-1], _output(estimator, data[::-1]))
    _assert_same(whole[1:3], _output(estimator, data[1:3]))


@pytest.mark.parametrize("name", SEGMENTERS)
def test_pipeline_gives_the_same_labels_and_score(name, blobs):
    # check_pipeline_consistency
    X, y = blobs
    estimator, pipeline = ESTIMATORS[name]().fit(X), make_pipeline(ESTIMATORS[name]()).fit(X)
    _assert_same(estimator.predict(X), pipeline.predict(X))
    assert estimator.score(X, y) == pipeline.score(X, y)


def test_dino_features_pipeline_gives_the_same_features(pictures):
    extractor = ESTIMATORS["dino_features"]()
    _assert_same(_output(extractor, pictures),
                 [pf.features for pf in make_pipeline(extractor).fit_transform(pictures)])


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_read_only_and_fortran_ordered_input(name, data):
    # check_readonly_memmap_input, check_f_contiguous_array_estimator
    expected = _output(ESTIMATORS[name]().fit(data), data)
    frozen = [np.asfortranarray(x) for x in data]
    for x in frozen:
        x.flags.writeable = False
    _assert_same(expected, _output(ESTIMATORS[name]().fit(frozen), frozen))


@pytest.mark.parametrize("name", SEGMENTERS)
def test_n_features_in_and_unfitted_errors(name, images):
    # check_fit_check_is_fitted, check_n_features_in_after_fitting
    estimator = ESTIMATORS[name]()
    with pytest.raises(NotFittedError):
        estimator.predict(images)
    assert estimator.fit(images).n_features_in_ == 8
    with pytest.raises(ValueError, match="features per patch"):
        estimator.predict([x[:, :, :5] for x in images])


@pytest.mark.parametrize("name", SEGMENTERS)
def test_score_is_the_scorers_miou(name, blobs):
    # check_fit_score_takes_y; per-image matching, dataset-wide for SemanticLabeler
    X, y = blobs
    estimator = ESTIMATORS[name]().fit(X, y)
    scorer = dataset_miou_scorer if isinstance(estimator, SemanticLabeler) else miou_scorer
    assert 0 < estimator.score(X, y) == scorer(estimator, X, y) <= 1


# ------------------------------------------------- beyond scikit-learn's checks


@pytest.mark.parametrize("name", SEGMENTERS)
def test_same_seed_same_labels_and_n_jobs_does_not_matter(name, images):
    first = ESTIMATORS[name]().fit(images).predict(images)
    _assert_same(first, ESTIMATORS[name]().fit(images).predict(images))
    if "n_jobs" in ESTIMATORS[name]().get_params():
        parallel = ESTIMATORS[name]().set_params(n_jobs=2).fit(images).predict(images)
        _assert_same(first, parallel)


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_pickle_and_joblib_round_trips(name, data):
    fitted = ESTIMATORS[name]().fit(data)
    expected = _output(fitted, data)
    _assert_same(expected, _output(pickle.loads(pickle.dumps(fitted)), data))
    buffer = io.BytesIO()
    joblib.dump(fitted, buffer)
    buffer.seek(0)
    _assert_same(expected, _output(joblib.load(buffer), data))


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_clone_is_unfitted_with_equal_params(name, data):
    for estimator in (ESTIMATORS[name](), ESTIMATORS[name]().fit(data)):
        copy = clone(estimator)
        assert repr(copy.get_params()) == repr(estimator.get_params())
        if isinstance(copy, DinoFeatures):  # stateless: nothing to refuse, nothing learnt
            assert not hasattr(copy, "patch_size_")
        else:
            with pytest.raises(NotFittedError):
                copy.predict(data)


def test_patch_features_input_gives_the_labels_of_its_grid(images):
    # every segmenter reads PatchFeatures and plain grids alike
    wrapped = [PatchFeatures(features=x, image_shape=x.shape[:2]) for x in images]
    for name in SEGMENTERS:
        _assert_same(ESTIMATORS[name]().fit_predict(images),
                     ESTIMATORS[name]().fit_predict(wrapped))
