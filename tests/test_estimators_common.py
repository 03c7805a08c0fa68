"""What every public estimator owes its users: determinism across n_jobs, pickle and
joblib round trips with identical predictions, and clone giving an unfitted copy."""

import io
import pickle

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from conftest import CHEAP_SEGMENTERS
from sklearn_useg.datasets import make_segmentation_blobs

ESTIMATORS = CHEAP_SEGMENTERS


@pytest.fixture(scope="module")
def images():
    X, _ = make_segmentation_blobs(4, grid_shape=(10, 12), n_segments=3, n_features=8,
                                   random_state=0)
    return X


def _assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.dtype == y.dtype == np.int32
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_same_seed_same_labels_and_n_jobs_does_not_matter(name, images):
    first = ESTIMATORS[name]().fit(images).predict(images)
    _assert_same(first, ESTIMATORS[name]().fit(images).predict(images))
    if "n_jobs" in ESTIMATORS[name]().get_params():
        parallel = ESTIMATORS[name]().set_params(n_jobs=2).fit(images).predict(images)
        _assert_same(first, parallel)


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_pickle_and_joblib_round_trips(name, images):
    fitted = ESTIMATORS[name]().fit(images)
    expected = fitted.predict(images)
    _assert_same(expected, pickle.loads(pickle.dumps(fitted)).predict(images))
    buffer = io.BytesIO()
    joblib.dump(fitted, buffer)
    buffer.seek(0)
    _assert_same(expected, joblib.load(buffer).predict(images))


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_clone_is_unfitted_with_equal_params(name, images):
    for estimator in (ESTIMATORS[name](), ESTIMATORS[name]().fit(images)):
        copy = clone(estimator)
        assert repr(copy.get_params()) == repr(estimator.get_params())
        with pytest.raises(NotFittedError):
            copy.predict(images)


def test_dino_features_round_trips_and_clone():
    from sklearn_useg import DinoFeatures

    image = np.random.RandomState(0).randint(0, 256, (40, 56, 3), np.uint8)
    extractor = DinoFeatures(backbone="test_vit", weights=None, device="cpu").fit()
    expected = extractor.transform([image])[0].features
    buffer = io.BytesIO()
    joblib.dump(extractor, buffer)
    buffer.seek(0)
    for copy in (pickle.loads(pickle.dumps(extractor)), joblib.load(buffer)):
        np.testing.assert_array_equal(copy.transform([image])[0].features, expected)
    copy = clone(extractor)
    assert repr(copy.get_params()) == repr(extractor.get_params())
    assert not hasattr(copy, "patch_size_")
