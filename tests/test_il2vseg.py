"""IL2VSegmenter: FCM low-level branch, fusion, training, sklearn integration."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

from sklearn_useg import DinoFeatures
from sklearn_useg.datasets import make_color_blobs, make_segmentation_blobs
from sklearn_useg.features import PatchFeatures
from sklearn_useg.metrics import dataset_miou_scorer, hungarian_miou
from sklearn_useg.segmenters.il2vseg import (IL2VSegmenter, _align, _cluster_classes,
                                             color_affinity_propagation, downsample_image,
                                             image_neighbours, photometric_augment,
                                             spatial_fcm)

TINY = dict(backbone="test_vit", weights=None)  # timm's tiny random ViT, patch 16, d=64
FAST = dict(max_iter=3, batch_size=2, n_samples=32, fcm_max_iter=20)


def _with_images(X, images):
    """PatchFeatures pairing feature grids with images (image twice the grid's size)."""
    return [PatchFeatures(features=x, image_shape=img.shape[:2], image=img)
            for x, img in zip(X, images)]


def _colour_dataset(n_images, seed, grid=(12, 16)):
    """Colour-blob images at 2x the grid, with features that follow the same regions."""
    images, y = make_color_blobs(n_images, image_shape=(2 * grid[0], 2 * grid[1]),
                                 n_segments=3, noise=8, random_state=seed)
    rng = np.random.RandomState(seed)
    X = []
    for lab in y:
        centres = rng.standard_normal((3, 8))
        X.append((centres[lab[::2, ::2]] + 0.1 * rng.standard_normal(grid + (8,)))
                 .astype(np.float32))
    return _with_images(X, images), y


# --------------------------------------------------------------------------- #
# Low-level branch
# --------------------------------------------------------------------------- #
def test_fcm_recovers_colour_regions():
    images, y = make_color_blobs(3, image_shape=(24, 32), n_segments=4, noise=10,
                                 random_state=0)
    preds = [spatial_fcm(img / 255.0, 4, random_state=0)[0].argmax(0) for img in images]
    assert hungarian_miou(y, preds) >= 0.95


def test_low_level_branch_alone_recovers_regions():
    """predict_alpha=1: labels come from the aligned FCM + colour-affinity map only."""
    X, y = _colour_dataset(3, seed=1)
    noise = [PatchFeatures(features=np.random.RandomState(i).standard_normal(
        pf.features.shape).astype(np.float32), image_shape=pf.image_shape, image=pf.image)
        for i, pf in enumerate(X)]  # features carry no information
    seg = IL2VSegmenter(n_classes=3, predict_alpha=1.0, random_state=0, **FAST).fit(noise)
    labels, details = seg.predict(noise, return_details=True)
    assert all(d["low_level"] for d in details)
    assert hungarian_miou(y, labels) >= 0.9


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), k=st.integers(2, 6), m=st.floats(1.5, 3.0))
def test_fcm_objective_decreases_monotonically(seed, k, m):
    """Standard FCM (spatial=0) is an alternating minimisation of J."""
    images, _ = make_color_blobs(1, image_shape=(12, 14), n_segments=4, noise=25,
                                 random_state=seed)
    _, _, J = spatial_fcm(images[0] / 255.0, k, m=m, spatial=0, max_iter=40,
                          random_state=seed)
    assert np.all(np.diff(J) <= 1e-9 * np.abs(J[:-1]) + 1e-12)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), k=st.integers(2, 6))
def test_spatial_fcm_memberships_are_a_fuzzy_partition(seed, k):
    images, _ = make_color_blobs(1, image_shape=(10, 12), n_segments=3, noise=20,
                                 random_state=seed)
    U, V, J = spatial_fcm(images[0] / 255.0, k, max_iter=30, random_state=seed)
    assert U.shape == (k, 10, 12) and V.shape == (k, 3) and 1 <= len(J) <= 30
    assert np.all(U >= 0) and np.allclose(U.sum(0), 1)
    assert np.all((V >= -1e-9) & (V <= 1 + 1e-9))  # centres are convex combinations


def test_spatial_term_smooths_isolated_pixels():
    """The 3x3 spatial information removes isolated mislabelled pixels."""
    images, _ = make_color_blobs(1, image_shape=(30, 30), n_segments=2, noise=60,
                                 random_state=3)
    x = images[0] / 255.0

    def isolated(labels):
        P = np.pad(labels, 1, constant_values=-1)
        same = sum((P[1 + i:31 + i, 1 + j:31 + j] == labels)
                   for i in (-1, 0, 1) for j in (-1, 0, 1) if (i, j) != (0, 0))
        return int((same == 0).sum())

    plain = spatial_fcm(x, 2, spatial=0, random_state=0)[0].argmax(0)
    smooth = spatial_fcm(x, 2, spatial=1, random_state=0)[0].argmax(0)
    assert isolated(smooth) < isolated(plain)


def test_color_affinity_averages_memberships_within_a_colour():
    """Two far-apart colours: F_l is P averaged over the pixels of each colour."""
    rng = np.random.RandomState(0)
    colors = np.repeat([[0.1, 0.1, 0.1], [0.9, 0.8, 0.1]], [6, 4], axis=0)
    P = rng.dirichlet(np.ones(3), size=10)
    F_l = color_affinity_propagation(colors, P, sigma=0.1)
    assert F_l.shape == (10, 3) and np.allclose(F_l.sum(1), 1, atol=1e-5)
    assert np.allclose(F_l[:6], P[:6].mean(0), atol=1e-5)
    assert np.allclose(F_l[6:], P[6:].mean(0), atol=1e-5)


def test_align_undoes_a_permutation():
    rng = np.random.RandomState(0)
    f = rng.rand(50, 5)
    perm = rng.permutation(5)
    shuffled = f[:, np.argsort(perm)]  # shuffled[:, perm[i]] == f[:, i]
    assert np.array_equal(_align(f, shuffled), perm)


def test_majority_fusion_maps_several_clusters_to_one_class():
    """Two colour clusters inside one class both go to it; no absent class appears."""
    f_seg = np.repeat(np.eye(3)[[0, 1]], [6, 4], axis=0)  # classes 0 and 1 present
    f_low = np.repeat(np.eye(3)[[0, 1, 2]], [3, 3, 4], axis=0)  # clusters 0, 1 in class 0
    M = _cluster_classes(f_seg, f_low)
    np.testing.assert_array_equal(M.argmax(1), [0, 0, 1])
    np.testing.assert_array_equal((f_low @ M).argmax(1), f_seg.argmax(1))
    perm = _align(f_seg, f_low)  # one-to-one: cluster 1 is pushed onto absent class 2
    assert set((f_low[:, perm]).argmax(1)) == {0, 1, 2}


def test_downsample_and_augment_shapes():
    img = np.random.RandomState(0).randint(0, 256, (32, 48, 3)).astype(np.uint8)
    small = downsample_image(img, (8, 12))
    assert small.shape == (8, 12, 3) and small.dtype == np.float32
    assert 0 <= small.min() and small.max() <= 1
    aug = photometric_augment(img, np.random.RandomState(0))
    assert aug.shape == img.shape and aug.dtype == np.uint8 and not np.array_equal(aug, img)


# --------------------------------------------------------------------------- #
# Training and prediction
# --------------------------------------------------------------------------- #
def test_short_fit_recovers_blob_partition():
    # each blob image draws its own 4 centres: 8 distinct dataset-wide classes
    X, y = make_segmentation_blobs(2, n_segments=4, random_state=0)
    seg = IL2VSegmenter(n_classes=8, max_iter=10, random_state=0).fit(X)
    assert seg.centres_.shape == (8, 70) and len(seg.loss_curve_) == 10
    assert np.allclose(np.linalg.norm(seg.centres_, axis=1), 1, atol=1e-5)
    assert hungarian_miou(y, seg.predict(X)) >= 0.95  # measured 1.0


def test_class_margin_flags_a_collapsed_model():
    X, _ = make_segmentation_blobs(2, n_segments=4, random_state=0)
    seg = IL2VSegmenter(n_classes=4, max_iter=10, random_state=0).fit(X)
    assert seg.class_margin_ > 0.3  # measured 0.46
    assert seg.class_margin(X) == pytest.approx(seg.class_margin_)
    seg.centres_[:] = seg.centres_[0]  # every class centre merged into one
    assert seg.class_margin(X) < 1e-6


def test_labels_are_dataset_wide_classes():
    """No per-image relabelling: class ids stay comparable across images."""
    X, y = _colour_dataset(3, seed=2)
    seg = IL2VSegmenter(n_classes=6, random_state=0, **FAST).fit(X)
    labels, details = seg.predict(X, return_details=True)
    for lab, pf in zip(labels, X):
        assert lab.shape == pf.image_shape and lab.dtype == np.int32
        assert 0 <= lab.min() and lab.max() < 6
    assert seg.set_params(refine="crf").predict(X[:1])[0].max() < 6


@settings(max_examples=10, deadline=None)
@given(h=st.integers(2, 7), w=st.integers(2, 7), d=st.integers(1, 6), k=st.integers(2, 5),
       with_image=st.booleans(), seed=st.integers(0, 1000))
def test_prop_output_shape_dtype_labels(h, w, d, k, with_image, seed):
    rng = np.random.RandomState(seed)
    X = [rng.standard_normal((h, w, d)).astype(np.float32) for _ in range(2)]
    if with_image:
        X = _with_images(X, [rng.randint(0, 256, (3 * h, 2 * w, 3)).astype(np.uint8)
                             for _ in X])
    seg = IL2VSegmenter(n_classes=k, dim=4, random_state=seed, **FAST)
    labels = seg.fit(X).predict(X)
    for lab in labels:
        assert lab.shape == ((3 * h, 2 * w) if with_image else (h, w))
        assert lab.dtype == np.int32 and 0 <= lab.min() and lab.max() < k
    again = clone(seg).fit(X).predict(X)
    assert all(np.array_equal(a, b) for a, b in zip(labels, again))


@pytest.mark.parametrize("teacher, fusion", [(True, "permutation"), (False, "majority")])
def test_teacher_and_majority_fusion_train_and_predict(teacher, fusion):
    X, y = _colour_dataset(3, seed=5)
    seg = IL2VSegmenter(n_classes=3, teacher=teacher, fusion=fusion, random_state=0,
                        **FAST).fit(X)
    labels, details = seg.predict(X, return_details=True)
    assert np.all(np.isfinite(seg.loss_curve_)) and seg.class_margin_ > 0
    for lab, d in zip(labels, details):
        assert lab.dtype == np.int32 and 0 <= lab.min() and lab.max() < 3
        assert d["cluster_classes"].shape == (3,)
        if fusion == "permutation":  # one-to-one
            assert sorted(d["cluster_classes"]) == [0, 1, 2]


def test_random_state_changes_training():
    X, _ = _colour_dataset(2, seed=4)
    a = IL2VSegmenter(n_classes=3, random_state=0, **FAST).fit(X)
    b = IL2VSegmenter(n_classes=3, random_state=1, **FAST).fit(X)
    assert not np.allclose(a.centres_, b.centres_)


def test_image_neighbours_are_the_nearest_other_images():
    """Three groups of three descriptors: each one's neighbours are its group's others,
    nearest first; an image (even one duplicated) is never its own neighbour."""
    rng = np.random.RandomState(0)
    directions = np.eye(3, 16) * 5
    # within a group, offsets 0, 1, 3 along a private axis: member 0 is nearest to 1
    offsets = np.array([0.0, 1.0, 3.0])
    D = np.concatenate([directions[g] + offsets[:, None] * np.eye(16)[3 + g]
                        for g in range(3)])
    D = D + 1e-3 * rng.standard_normal(D.shape)
    nbrs = image_neighbours(D, 2)
    expected = np.array([[1, 2], [0, 2], [1, 0]])
    np.testing.assert_array_equal(nbrs, np.concatenate([expected + 3 * g for g in range(3)]))
    twins = image_neighbours(np.repeat(D[:2], 2, axis=0), 1)  # images 0 = 1, 2 = 3
    np.testing.assert_array_equal(twins.ravel(), [1, 0, 3, 2])


def test_knn_pairs_in_fit():
    """neighbors_ pairs the training images whose features share a mean; at most
    n_images - 1 neighbours; n_neighbors=0 keeps the former training (same losses)."""
    rng = np.random.RandomState(0)
    means = 3 * rng.standard_normal((3, 8))
    group = [0, 1, 2, 0, 1, 2]  # images i and i + 3 alike
    X = [(means[g] + rng.standard_normal((6, 7, 8))).astype(np.float32) for g in group]
    seg = IL2VSegmenter(n_classes=3, n_neighbors=1, random_state=0, **FAST).fit(X)
    np.testing.assert_array_equal(seg.neighbors_.ravel(), [3, 4, 5, 0, 1, 2])
    assert seg.set_params(n_neighbors=10).fit(X).neighbors_.shape == (6, 5)
    assert seg.set_params(n_neighbors=0).fit(X).neighbors_.shape == (6, 0)

    X, _ = _colour_dataset(4, seed=6)
    params = dict(n_classes=3, random_state=0, **{**FAST, "max_iter": 4})
    off = IL2VSegmenter(n_neighbors=0, **params).fit(X).loss_curve_
    # the loss curve before n_neighbors existed (same seed, same data)
    np.testing.assert_allclose(off, [-1.2516298, -0.8920530, -0.5946487, -0.9368456],
                               rtol=1e-5)
    on = IL2VSegmenter(n_neighbors=2, **params).fit(X).loss_curve_
    assert np.all(np.isfinite(on)) and not np.allclose(on, off)


def test_augmented_views_through_feature_extractor():
    images, _ = make_color_blobs(2, image_shape=(48, 64), n_segments=3, random_state=0)
    extractor = DinoFeatures(**TINY)
    X = extractor.transform(images)
    seg = IL2VSegmenter(n_classes=3, feature_extractor=extractor, n_augmentations=2,
                        random_state=0, **FAST).fit(X)
    assert np.all(np.isfinite(seg.loss_curve_))
    with pytest.raises(ValueError, match="no image"):
        seg.fit([pf.features for pf in X])
    with pytest.raises(ValueError, match="expected"):
        seg.set_params(feature_extractor=DinoFeatures(resize=32, **TINY)).fit(X)


@pytest.mark.parametrize("params, error", [
    ({"n_classes": 1}, ValueError), ({"alpha": 1.5}, ValueError),
    ({"predict_alpha": -0.1}, ValueError), ({"fuzzifier": 1.0}, ValueError),
    ({"color_sigma": 0}, ValueError), ({"temperature": 0}, ValueError),
    ({"ema_decay": 1.0}, ValueError), ({"n_samples": 1}, ValueError),
    ({"normalize": "zscore"}, ValueError), ({"feature_extractor": "dino"}, ValueError),
    ({"fusion": "hungarian"}, ValueError), ({"teacher": "yes"}, ValueError),
    ({"n_neighbors": -1}, ValueError), ({"corr_shift_knn": "0.12"}, ValueError),
    ({"refine_params": {"bogus": 1}}, ValueError), ({"max_iter": 2.5}, (ValueError, TypeError)),
])
def test_invalid_params(params, error):
    X, _ = make_segmentation_blobs(1, random_state=0)
    with pytest.raises(error):
        IL2VSegmenter(**params).fit(X)


def test_crf_needs_image():
    X, _ = make_segmentation_blobs(1, random_state=0)
    seg = IL2VSegmenter(n_classes=3, refine="crf", random_state=0, **FAST).fit(X)
    with pytest.raises(ValueError, match="needs the image"):
        seg.predict(X)


def test_pipeline_grid_search_over_alpha_with_dataset_scorer():
    images, y = make_color_blobs(4, image_shape=(32, 48), n_segments=3, random_state=0)
    pipe = Pipeline([("f", DinoFeatures(**TINY)),
                     ("seg", IL2VSegmenter(n_classes=3, random_state=0, **FAST))])
    search = GridSearchCV(pipe, {"seg__alpha": [0.0, 1.0]}, scoring=dataset_miou_scorer,
                          cv=2).fit(images, y)
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    # with colour-only regions and a random backbone, the colour branch must win
    assert search.best_params_["seg__alpha"] == 1.0
    assert search.best_score_ > 0.45  # measured 0.544 (0.518 for alpha=0)


# --------------------------------------------------------------------------- #
# Real data
# --------------------------------------------------------------------------- #
@pytest.mark.real_data
def test_real_bsds_end_to_end(bsds_small_features):
    X = bsds_small_features["token"]
    seg = IL2VSegmenter(n_classes=5, max_iter=5, random_state=0).fit(X)
    labels, details = seg.predict(X, return_details=True)
    for lab, pf, det in zip(labels, X, details):
        assert lab.shape == pf.image_shape and 0 <= lab.min() and lab.max() < 5
        assert det["low_level"] and 1 <= det["fcm_iterations"] <= seg.fcm_max_iter
        assert len(np.unique(lab)) >= 2
    # colour branch only, then DenseCRF: still dataset-wide class ids
    seg.set_params(predict_alpha=1.0, refine="crf")
    lab = seg.predict(X[:1])[0]
    assert lab.shape == X[0].image_shape and 0 <= lab.min() and lab.max() < 5
