"""Shared helpers: upsampling, relabelling, DenseCRF, the border rule, grid graphs."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sklearn_useg import graph, refine


@given(hnp.arrays(np.int64, hnp.array_shapes(min_dims=2, max_dims=2, max_side=8),
                  elements=st.integers(-5, 50)))
def test_relabel_consecutive(labels):
    out = refine.relabel_consecutive(labels)
    assert out.dtype == np.int32 and out.shape == labels.shape
    k = len(np.unique(labels))
    assert set(np.unique(out)) == set(range(k))
    # Same partition: equal labels stay equal, different stay different.
    flat_in, flat_out = labels.ravel(), out.ravel()
    assert np.array_equal(flat_in[:, None] == flat_in[None], flat_out[:, None] == flat_out[None])


def test_upsample_labels_tiles_each_cell():
    grid = np.array([[0, 1], [2, 3]])
    out = refine.upsample_labels(grid, (4, 6))
    np.testing.assert_array_equal(out, np.repeat(np.repeat(grid, 2, axis=0), 3, axis=1))
    odd = refine.upsample_labels(grid, (5, 3))
    assert odd.shape == (5, 3) and set(np.unique(odd)) == {0, 1, 2, 3}


def test_upsample_argmax_of_tiles():
    scores = np.zeros((2, 2, 2), np.float32)
    scores[0, 0, :] = 1.0
    scores[1, 1, :] = 1.0
    up = refine.upsample_argmax(scores, (8, 4))
    np.testing.assert_array_equal(up, np.repeat([[0] * 4, [1] * 4], 4, axis=0))


@given(st.integers(1, 6), st.integers(1, 9), st.integers(1, 9), st.integers(1, 40),
       st.integers(1, 40), st.integers(0, 2**16))
def test_upsample_argmax_equals_torch_bilinear_in_any_band_size(k, h, w, H, W, seed):
    import torch
    import torch.nn.functional as F

    scores = np.random.RandomState(seed).rand(k, h, w).astype(np.float32)
    expected = F.interpolate(torch.as_tensor(scores)[None], size=(H, W), mode="bilinear",
                             align_corners=False)[0].argmax(dim=0).numpy()
    for block in (1, 4 * k * W * 3, 2**26):  # one row, three rows, everything at once
        np.testing.assert_array_equal(refine.upsample_argmax(scores, (H, W),
                                                             max_block_bytes=block), expected)


def test_dense_crf_snaps_labels_to_colour_edges():
    pytest.importorskip("pydensecrf")
    image = np.zeros((40, 40, 3), np.uint8)
    image[:, 20:] = 255
    labels = np.zeros((40, 40), np.int32)
    labels[:, 16:] = 1  # boundary 4 px off the colour edge
    out = refine.dense_crf(image, labels)
    assert out.dtype == np.int32 and out.shape == labels.shape
    assert (out[:, :20] == out[0, 0]).all() and (out[:, 20:] != out[0, 0]).all()
    single = refine.dense_crf(image, np.zeros((40, 40), int))
    assert (single == 0).all()


def test_dense_crf_missing_dependency_names_the_extra(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("pydensecrf"):
            raise ImportError("no pydensecrf")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r"sklearn-useg\[crf\]"):
        refine.dense_crf(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), int))


def test_border_foreground():
    labels = np.zeros((6, 6), int)
    labels[2:4, 2:4] = 1
    np.testing.assert_array_equal(refine.border_foreground(labels), labels)
    np.testing.assert_array_equal(refine.border_foreground(1 - labels), labels)
    with pytest.warns(FutureWarning, match="renamed border_foreground"):
        np.testing.assert_array_equal(refine.border_background(labels), labels)


@pytest.mark.parametrize("connectivity, n_edges", [(4, 12), (8, 20)])
def test_grid_adjacency(connectivity, n_edges):
    adj = graph.grid_adjacency((3, 3), connectivity)
    assert adj.shape == (9, 9) and (adj != adj.T).nnz == 0 and adj.diagonal().sum() == 0
    assert adj.nnz == 2 * n_edges
    assert adj[4].sum() == connectivity  # the centre cell
    assert graph.grid_adjacency((1, 1)).nnz == 0
    assert graph.grid_adjacency((1, 5)).nnz == 2 * 4
    with pytest.raises(ValueError, match="connectivity"):
        graph.grid_adjacency((3, 3), 6)


def test_normalize_features():
    X = np.random.RandomState(0).randn(10, 4) + 5
    unit = graph.normalize_features(X, "l2")
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1, rtol=1e-5)
    centred = graph.normalize_features(X, "center_l2")
    np.testing.assert_allclose(np.linalg.norm(centred, axis=1), 1, rtol=1e-5)
    assert (centred @ centred.T).min() < 0 < (unit @ unit.T).min()
    with pytest.raises(ValueError, match="normalize must be one of"):
        graph.normalize_features(X, "whiten")
    with pytest.warns(FutureWarning, match="cosine_affinity is deprecated"):
        np.testing.assert_allclose(graph.cosine_affinity(X), unit @ unit.T, rtol=1e-6)


def test_gaussian_and_scaled_dot_affinities():
    import torch

    rng = np.random.RandomState(0)
    X = rng.rand(12, 3)
    d2 = ((X[:, None] - X[None]) ** 2).sum(-1)
    A = graph.gaussian_affinity(X, 0.2)
    assert A.dtype == np.float32
    np.testing.assert_allclose(A, np.exp(-d2 / (2 * 0.2 ** 2)), rtol=1e-4, atol=1e-6)
    F = torch.from_numpy(rng.randn(20, 4))
    gram = F @ F.T
    torch.testing.assert_close(graph.scaled_dot_affinity(F), gram.clamp(min=0) / gram.max())
    torch.testing.assert_close(graph.scaled_dot_affinity(F, 0.5), gram / gram.max() - 0.5)
    assert graph.scaled_dot_affinity(torch.zeros(5, 3)) is None


def _rectangles(shape=(60, 90)):
    """A flat three-colour image and its partition (vertical bands, then a block)."""
    H, W = shape
    truth = np.zeros(shape, np.int32)
    truth[:, W // 3:] = 1
    truth[H * 7 // 12:, W * 2 // 3:] = 2
    colours = np.array([[200, 30, 30], [30, 200, 30], [30, 30, 200]], np.uint8)
    return colours[truth], truth


def test_superpixel_refinement_is_exact_where_edges_are_segment_borders():
    image, truth = _rectangles()
    # labels of a 12-px patch grid, upsampled: the borders miss the edges by pixels
    blocky = refine.upsample_labels(truth[6::12, 6::12], truth.shape)
    assert (blocky != truth).mean() > 0.02
    # flat colours need no pre-smoothing (sigma=0: no blurred strip along the edges)
    out = refine.refine_labels(image, blocky, "superpixels", {"sigma": 0})
    np.testing.assert_array_equal(out, truth)


@given(st.integers(0, 2**16), st.integers(1, 6), st.integers(1, 30))
def test_vote_superpixels_keeps_every_label(seed, k, n_regions):
    rng = np.random.RandomState(seed)
    labels = rng.randint(0, k, size=(12, 15)) * 7  # any non-negative values
    regions = rng.randint(0, n_regions, size=(12, 15))
    out = refine.vote_superpixels(labels, regions)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(np.unique(out), np.unique(labels))
    # each pixel has its superpixel's majority label, or keeps its own (rescued)
    counts = np.zeros((regions.max() + 1, labels.max() + 1), int)
    np.add.at(counts, (regions, labels), 1)
    majority = counts.argmax(axis=1)[regions]
    assert np.all((out == majority) | (out == labels))


def test_vote_superpixels_takes_the_majority():
    labels = np.array([[0, 0, 1, 1], [0, 1, 1, 1]])
    regions = np.array([[0, 0, 0, 1], [0, 0, 1, 1]])
    np.testing.assert_array_equal(refine.vote_superpixels(labels, regions),
                                  [[0, 0, 0, 1], [0, 0, 1, 1]])
    with pytest.raises(ValueError, match="differ in shape"):
        refine.vote_superpixels(labels, regions[:, :3])


def test_superpixels_bounds_the_working_size():
    image, truth = _rectangles((400, 1200))
    regions = refine.superpixels(image, max_side=300, sigma=0)
    assert regions.shape == (400, 1200) and regions.dtype == np.int64
    # computed at 100 x 300 and upsampled: each rectangle is (but for the strips of
    # blended colour along its edges, from the downscaling) one superpixel
    for t in range(3):
        assert np.bincount(regions[truth == t]).max() > 0.9 * np.sum(truth == t)


def test_refine_params_are_checked():
    with pytest.raises(ValueError, match="unknown keys"):
        refine.check_refine_params("superpixels", {"sxy_bilateral": 3})
    with pytest.raises(ValueError, match="refine must be one of"):
        refine.check_refine_params("bilateral", None)


def test_attention_rule_finds_a_small_off_centre_object():
    # a 6 x 6 object (4 % of the image) near a corner; the segmentation has four
    # background segments, one of them touching more border than the others
    labels = np.zeros((30, 30), np.int32)
    labels[:, 10:] = 1
    labels[15:, :] = 2
    labels[15:, 20:] = 3
    labels[3:9, 21:27] = 4
    attention = np.full((2, 10, 10), 0.5, np.float32)
    attention[:, 1:3, 7:9] = 5.0  # CLS attention on the object's patches
    mask = refine.foreground_mask(labels, attention)
    np.testing.assert_array_equal(mask, labels == 4)
    # the border rule calls three of the four background segments foreground
    assert refine.foreground_mask(labels, attention, rule="border").mean() > 0.5
    with pytest.raises(ValueError, match="needs the CLS attention"):
        refine.foreground_mask(labels, None, rule="attention")


def test_attention_threshold_keeps_grazed_segments_out(grazed_scene):
    labels, attention = grazed_scene
    grazed_mean = attention[labels == 1].mean()
    pixels_mean, pixels_std = attention.mean(), attention.std()
    assert pixels_mean < grazed_mean < pixels_mean + 0.25 * pixels_std
    np.testing.assert_array_equal(refine.attention_foreground(labels, attention),
                                  labels == 2)
    np.testing.assert_array_equal(refine.foreground_mask(labels, attention),
                                  labels == 2)
    np.testing.assert_array_equal(
        refine.foreground_mask(labels, attention, threshold=0.0), labels > 0)
    # however high the threshold, the most attended segment stays foreground
    np.testing.assert_array_equal(
        refine.attention_foreground(labels, attention, threshold=10.0), labels == 2)


def test_pixel_patch_counts_and_region_adjacency():
    labels = np.array([[0, 0, 1, 1], [2, 2, 1, 1]])
    counts = graph.pixel_patch_counts(labels, (1, 2)).toarray()
    np.testing.assert_array_equal(counts, [[2, 0], [0, 4], [2, 0]])
    adj = graph.region_adjacency(labels).toarray()
    np.testing.assert_array_equal(adj, [[0, 1, 1], [1, 0, 1], [1, 1, 0]])


def test_region_mean_features_weight_patches_by_pixels():
    labels = np.array([[0, 0, 0, 1], [0, 0, 1, 1]])  # region 0: 4 pixels left, 1 right
    features = np.array([[[1.0, 0.0], [0.0, 1.0]]])  # (1, 2, 2) grid: a patch a half
    means, pixels = graph.region_mean_features(labels, features)
    np.testing.assert_allclose(pixels, [5, 3])
    np.testing.assert_allclose(means, [[4 / 5, 1 / 5], [0.0, 1.0]])
