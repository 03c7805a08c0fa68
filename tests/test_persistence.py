"""Saved models: the library version travels with them, and GPU models load on a CPU."""

import warnings

import joblib
import numpy as np
import pytest

from conftest import CHEAP_SEGMENTERS
from sklearn_useg import KMeansSegmenter, load_model, save_model
from sklearn_useg.datasets import make_segmentation_blobs


def test_round_trip_same_version_is_silent(tmp_path):
    X, _ = make_segmentation_blobs(2, grid_shape=(6, 7), n_segments=3, random_state=0)
    seg = KMeansSegmenter(3, n_init=1, random_state=0).fit(X)
    path = save_model(seg, tmp_path / "kmeans.joblib")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = load_model(path)
    np.testing.assert_array_equal(loaded.predict(X)[1], seg.predict(X)[1])


def test_other_version_warns_and_foreign_files_raise(tmp_path):
    path = tmp_path / "old.joblib"
    joblib.dump({"sklearn_useg_version": "0.0.1", "model": KMeansSegmenter(3)}, path)
    with pytest.warns(UserWarning, match=r"saved by sklearn_useg 0\.0\.1.*Refit"):
        assert load_model(path).n_clusters == 3
    joblib.dump(KMeansSegmenter(3), tmp_path / "bare.joblib")
    with pytest.raises(ValueError, match="not a model saved by"):
        load_model(tmp_path / "bare.joblib")
    (tmp_path / "text.joblib").write_text("not a pickle")
    with pytest.raises(ValueError, match="Cannot load .*text.joblib"):
        load_model(tmp_path / "text.joblib")
    with pytest.raises(FileNotFoundError, match="No model file"):
        load_model(tmp_path / "missing.joblib")


@pytest.mark.parametrize("name, module", [("acseg", "module_"),
                                          ("oap_distill", "teacher_")])
def test_model_fitted_on_a_gpu_loads_on_a_cpu(tmp_path, monkeypatch, name, module):
    """Trained models keep their device; one that is gone on loading falls back to the
    CPU. (IL2VSeg keeps its head on the CPU after fit: nothing to fall back from.)"""
    import torch

    X, _ = make_segmentation_blobs(2, grid_shape=(6, 7), n_segments=3, n_features=8,
                                   random_state=0)
    seg = CHEAP_SEGMENTERS[name]().fit(X)
    expected = seg.predict(X)
    seg.device_ = torch.device("cuda")  # as if fitted on a GPU (weights are saved on CPU)
    path = save_model(seg, tmp_path / f"{name}.joblib")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    loaded = load_model(path)
    assert loaded.device_ == torch.device("cpu")
    assert next(getattr(loaded, module).parameters()).device == torch.device("cpu")
    np.testing.assert_array_equal(loaded.predict(X)[0], expected[0])
