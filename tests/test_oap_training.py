"""OAPDistillSegmenter: the online teacher–student learns the partition, its pseudo-masks
move during training, and it behaves as an estimator (seeded, validated, GPU path)."""

import numpy as np
import pytest
import torch

from sklearn_useg import OAPDistillSegmenter, OAPSegmenter
from sklearn_useg.datasets import make_segmentation_blobs
from sklearn_useg.metrics import hungarian_miou

# a tiny decoder: the synthetic grids need no more, and the test stays fast
TINY = dict(dim=32, n_heads=2, adapter_dim=16, ffn_dim=64, head_dim=16, n_prototypes=32,
            device="cpu", random_state=0)


def _grids(n_images=8, **kwargs):
    params = dict(grid_shape=(12, 14), n_segments=3, n_features=16, noise=0.1,
                  random_state=0)
    params.update(kwargs)
    return make_segmentation_blobs(n_images, **params)


@pytest.fixture(scope="module")
def trained():
    """A model trained on synthetic grids, with the teacher's pseudo-masks before the
    first step and after the last one."""
    X, y = _grids()
    snapshots = {}

    def callback(step, est):
        if step in (0, est.n_iter):
            snapshots[step] = est.pseudo_masks(X)

    seg = OAPDistillSegmenter(n_iter=60, batch_size=4, n_local_crops=1, learning_rate=5e-3,
                              **TINY).fit(X, callback=callback)
    return seg, X, y, snapshots


def test_training_lowers_the_distillation_loss(trained):
    seg = trained[0]
    sd = seg.distillation_loss_curve_
    assert len(sd) == len(seg.loss_curve_) == len(seg.mask_loss_curve_) == seg.n_iter
    assert np.mean(sd[-10:]) < 0.8 * np.mean(sd[:10]), (np.mean(sd[:10]), np.mean(sd[-10:]))
    assert np.mean(seg.mask_loss_curve_[-10:]) < 0.5 * np.mean(seg.mask_loss_curve_[:10])
    assert seg.n_pseudo_masks_.shape == (seg.n_iter, 2)


def test_teacher_pseudo_masks_are_online(trained):
    seg, X, y, snapshots = trained
    before, after = snapshots[0], snapshots[seg.n_iter]
    # before the first step the adapter is the identity: the pooling's own masks
    expected = OAPSegmenter(nodes="patches", level="instance", refine=None).fit(X).predict(X)
    assert hungarian_miou(expected, before) == 1.0
    # the teacher's adapter moved them (a partition of every image changed)
    assert min(hungarian_miou([a], [b]) for a, b in zip(before, after)) < 1.0
    assert hungarian_miou(y, after) >= 0.9  # ... without losing the partition


def test_trained_decoder_recovers_the_partition(trained):
    seg, X, y, _ = trained
    labels = seg.predict(X)
    assert hungarian_miou(y, labels) >= 0.9
    assert all(lab.dtype == np.int32 and lab.shape == (12, 14) for lab in labels)
    assert hungarian_miou(y, seg.set_params(level="semantic").predict(X)) >= 0.9
    seg.set_params(level="instance")


def test_same_seed_same_model():
    X, _ = _grids(3)
    a = OAPDistillSegmenter(n_iter=3, batch_size=2, **TINY).fit(X)
    b = OAPDistillSegmenter(n_iter=3, batch_size=2, **TINY).fit(X)
    assert a.loss_curve_ == b.loss_curve_
    for x, z in zip(a.predict(X), b.predict(X)):
        np.testing.assert_array_equal(x, z)


def test_pooling_parameters_are_used():
    X, _ = _grids(2)
    pooling = OAPSegmenter(thresholds=(0.9, 0.6), layer=1, min_size=1, refine=None)
    seg = OAPDistillSegmenter(pooling, n_iter=0, **TINY).fit(X)
    for level in ("instance", "semantic"):
        expected = pooling.set_params(level=level).fit(X).predict(X)
        assert hungarian_miou(expected, seg.pseudo_masks(X, level=level)) == 1.0


@pytest.mark.parametrize("params, error", [
    (dict(pooling="oap"), (ValueError, TypeError)),
    (dict(pooling=OAPSegmenter(layer=7)), ValueError),
    (dict(pooling=OAPSegmenter(nodes="superpixels")), ValueError),
    (dict(level="panoptic"), ValueError),
    (dict(n_instance_queries=0), ValueError),
    (dict(crop_scale=(0.5, 0.2)), ValueError),
    (dict(crop_scale=(0, 1)), ValueError),
    (dict(crop_scale=(0.5,)), ValueError),
    (dict(momentum=1.5), ValueError),
    (dict(learning_rate=0), ValueError),
    (dict(dim=30, n_heads=4), ValueError),
    (dict(device="tpu"), ValueError),
])
def test_invalid_params(params, error):
    X, _ = _grids(1)
    with pytest.raises(error):
        OAPDistillSegmenter(**{**TINY, "n_iter": 1, **params}).fit(X)


def test_pseudo_masks_checks_fitted_and_level():
    from sklearn.exceptions import NotFittedError

    X, _ = _grids(1)
    with pytest.raises(NotFittedError):
        OAPDistillSegmenter(**TINY).pseudo_masks(X)
    with pytest.raises(ValueError, match="level"):
        OAPDistillSegmenter(n_iter=0, **TINY).fit(X).pseudo_masks(X, level="all")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_trains_on_the_gpu():
    X, y = _grids()
    seg = OAPDistillSegmenter(n_iter=60, batch_size=4, n_local_crops=1, learning_rate=5e-3,
                              **{**TINY, "device": "cuda"}).fit(X)
    assert seg.device_.type == "cuda"
    assert hungarian_miou(y, seg.predict(X)) >= 0.9


def test_connected_splits_instance_masks_into_components():
    from sklearn_useg.segmenters.oap_training import _connected_masks

    labels = np.zeros((6, 8), dtype=int)
    labels[:, 3:5] = 1  # mask 0 in two halves, split by mask 1
    labels[0, 0] = 1  # a one-patch piece of mask 1: joins its neighbour
    out = _connected_masks(labels, min_size=2)
    assert len(np.unique(out)) == 3
    assert out[0, 0] == out[0, 1] and out[0, 0] != out[0, 7]
    X, _ = _grids(n_images=2)
    seg = OAPDistillSegmenter(n_iter=2, batch_size=2, connected=True, refine=None,
                              **TINY).fit(X)
    from scipy import ndimage
    for lab in seg.predict(X):
        assert all(ndimage.label(lab == v)[1] == 1 for v in np.unique(lab))
