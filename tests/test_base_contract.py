"""What BaseSegmenter promises its subclasses: the parameters it reads and validates, the
device resolved once, one thread per image, the batch hook, loading without a GPU."""

import pickle

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_info

from conftest import CHEAP_SEGMENTERS
from sklearn_useg import PatchFeatures, segmenters
from sklearn_useg.datasets import make_segmentation_blobs
from sklearn_useg.segmenters import BaseSegmenter, SegmentResult

METHODS = [getattr(segmenters, name) for name in segmenters.__all__
           if name.endswith("Segmenter") and name != "BaseSegmenter"]


@pytest.mark.parametrize("cls", METHODS, ids=lambda cls: cls.__name__)
def test_every_method_extends_the_base_constraints(cls):
    base = BaseSegmenter._parameter_constraints
    assert {name: cls._parameter_constraints[name] for name in base} == base
    params = cls().get_params()
    for name in ("random_state", "device"):  # read by the base when a method has them
        assert (name in params) == (name in cls._parameter_constraints)


def test_base_parameters_and_the_device_are_validated_in_fit():
    X, _ = make_segmentation_blobs(n_images=1, random_state=0)
    seg = segmenters.KMeansSegmenter(max_patches=0)  # a base parameter
    with pytest.raises(ValueError, match="max_patches"):
        seg.fit(X)
    with pytest.raises(ValueError, match="device must be"):
        segmenters.CLASPSegmenter(device="tpu").fit(X)


class _Mean(BaseSegmenter):
    """A minimal method with none of the base's optional parameters: above/below the
    mean of the first feature; records the threads it ran on."""

    def _segment(self, pf, random_state):
        self.threads_seen = (torch.get_num_threads(),
                             {lib["num_threads"] for lib in threadpool_info()})
        first = pf.features[..., 0]
        return SegmentResult(labels=(first > first.mean()).astype(int))


def test_a_method_without_optional_parameters_gets_the_class_values():
    X, _ = make_segmentation_blobs(n_images=2, random_state=0)
    seg = _Mean().fit(X)
    assert seg.device_ == torch.device("cpu")
    assert not seg.__sklearn_tags__().non_deterministic  # random_state 0: seeded
    assert [lab.shape for lab in seg.predict(X)] == [(24, 32), (24, 32)]
    assert not hasattr(seg, "fitted_")


def test_each_image_runs_on_one_thread():
    X, _ = make_segmentation_blobs(n_images=1, random_state=0)
    seg = _Mean().fit(X)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seg.predict(X)
        assert torch.get_num_threads() == 2  # restored afterwards
    finally:
        torch.set_num_threads(before)
    assert seg.threads_seen[0] == 1 and seg.threads_seen[1] <= {1}


class _Batched(BaseSegmenter):
    """Segments every image in one pass (the batch hook) as soft scores."""

    def _segment(self, pf, random_state):
        raise AssertionError("_segment must not run when _segment_batch gives results")

    def _segment_batch(self, features):
        self.batch_sizes_ = [len(features)]
        return [SegmentResult(scores=np.stack([pf.features[..., 0], -pf.features[..., 0]]),
                              details={"batched": True}) for pf in features]


def test_the_batch_hook_replaces_segment_and_the_base_finishes():
    X, _ = make_segmentation_blobs(n_images=3, random_state=0)
    pf = PatchFeatures(features=X[0], image_shape=(48, 64))
    labels, details = _Batched().fit(X).predict([pf, X[1]], return_details=True)
    assert labels[0].shape == (48, 64) and labels[1].shape == (24, 32)  # upsampled
    assert all(set(np.unique(lab)) == {0, 1} for lab in labels)
    assert details == [{"batched": True}] * 2


@pytest.mark.parametrize("name", ["clasp", "oap", "acseg", "oap_distill"])
def test_a_model_fitted_on_a_gpu_loads_on_a_cpu(name, monkeypatch):
    X, _ = make_segmentation_blobs(n_images=2, grid_shape=(6, 7), n_features=8,
                                   random_state=0)
    seg = CHEAP_SEGMENTERS[name]().fit(X)
    expected = seg.predict(X)
    seg.device_ = torch.device("cuda")  # as if fitted on a GPU (torch weights stay on CPU)
    blob = pickle.dumps(seg)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    loaded = pickle.loads(blob)
    assert loaded.device_ == torch.device("cpu")
    assert all(np.array_equal(a, b) for a, b in zip(loaded.predict(X), expected))
