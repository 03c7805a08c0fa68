"""Shared graph maths on patch features: normalisation, affinities and grid adjacency."""

import numpy as np
import scipy.sparse as sp

NORMALIZATIONS = ("none", "l2", "center", "center_l2")


def l2_normalize(X, eps=1e-12):
    """Scale each row (last axis) of ``X`` to unit Euclidean norm.

    Rows of zeros stay zero.
    """
    X = np.asarray(X, dtype=np.float32)
    norms = np.linalg.norm(X, axis=-1, keepdims=True)
    return X / np.maximum(norms, eps)


def normalize_features(features, method):
    """Normalise a feature grid or matrix along its last axis.

    Parameters
    ----------
    features : ndarray of shape (..., d)
        Features of one image.
    method : {"none", "l2", "center", "center_l2"}
        ``"center"`` subtracts the image's mean feature (DINOv2 keys share a large
        common direction, see the user guide), ``"center_l2"`` then L2-normalises.

    Returns
    -------
    ndarray of the same shape, float32
    """
    if method not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {method!r}.")
    X = np.asarray(features, dtype=np.float32)
    if method in ("center", "center_l2"):
        flat = X.reshape(-1, X.shape[-1])
        X = X - flat.mean(axis=0)
    if method in ("l2", "center_l2"):
        X = l2_normalize(X)
    return X


def cosine_affinity(X):
    """Dense cosine affinity ``A = X̂ X̂ᵀ`` of the rows of ``X`` (n, d).

    Builds an n x n matrix: use only where n is small or the matrix is truly needed;
    spectra of ``A`` come cheaper from the thin factor ``X̂`` itself.
    """
    Xn = l2_normalize(np.asarray(X).reshape(-1, np.asarray(X).shape[-1]))
    return Xn @ Xn.T


def grid_adjacency(shape, connectivity=4):
    """Sparse symmetric adjacency of the cells of an ``(h, w)`` grid.

    Parameters
    ----------
    shape : tuple of int
        Grid shape ``(h, w)``; cell ``(r, c)`` is node ``r * w + c``.
    connectivity : {4, 8}
        4-neighbours, or 4-neighbours plus diagonals.

    Returns
    -------
    scipy.sparse.csr_matrix of shape (h * w, h * w), 0/1 entries, no self-loops
    """
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity!r}.")
    h, w = shape
    index = np.arange(h * w).reshape(h, w)
    offsets = [(0, 1), (1, 0)] + ([(1, 1), (1, -1)] if connectivity == 8 else [])
    rows, cols = [], []
    for dr, dc in offsets:
        src = index[max(0, -dr):h - max(0, dr), max(0, -dc):w - max(0, dc)]
        dst = index[max(0, dr):h + min(0, dr), max(0, dc):w + min(0, dc)]
        rows.append(src.ravel())
        cols.append(dst.ravel())
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    n = h * w
    data = np.ones(2 * rows.size, dtype=np.float32)
    adj = sp.coo_matrix((data, (np.r_[rows, cols], np.r_[cols, rows])), shape=(n, n))
    return adj.tocsr()
