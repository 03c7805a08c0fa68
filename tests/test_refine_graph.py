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


def test_border_background():
    labels = np.zeros((6, 6), int)
    labels[2:4, 2:4] = 1
    np.testing.assert_array_equal(refine.border_background(labels), labels)
    np.testing.assert_array_equal(refine.border_background(1 - labels), labels)


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


def test_normalize_features_and_cosine_affinity():
    X = np.random.RandomState(0).randn(10, 4) + 5
    A = graph.cosine_affinity(X)
    np.testing.assert_allclose(np.diag(A), 1, rtol=1e-5)
    centred = graph.normalize_features(X, "center_l2")
    np.testing.assert_allclose(np.linalg.norm(centred, axis=1), 1, rtol=1e-5)
    assert graph.cosine_affinity(centred).min() < 0 < A.min()
    with pytest.raises(ValueError, match="normalize must be one of"):
        graph.normalize_features(X, "whiten")
