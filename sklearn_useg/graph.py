"""Shared graph maths on patch features: normalisation, affinities and grid adjacency."""

import warnings

import numpy as np
import scipy.sparse as sp

from .refine import upsample_labels

NORMALIZATIONS = ("none", "l2", "center", "center_l2")


def l2_normalize(X, eps=1e-12):
    """Scale each row (last axis) of ``X`` to unit Euclidean norm.

    Rows of zeros stay zero. float64 input stays float64; anything else becomes float32.
    """
    X = np.asarray(X)
    X = X if X.dtype == np.float64 else X.astype(np.float32)
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
        # a float64 mean is exact for identical rows: they centre to exact zeros, not
        # to round-off that the L2 normalisation would blow up into a direction
        X = X - flat.mean(axis=0, dtype=np.float64).astype(np.float32)
    if method in ("l2", "center_l2"):
        X = l2_normalize(X)
    return X


def cosine_affinity(X):
    """Dense cosine affinity ``A = X̂ X̂ᵀ`` of the rows of ``X`` (n, d).

    .. deprecated:: 0.1
        No method uses it (spectra of ``A`` come cheaper from the thin factor ``X̂``,
        see :func:`thin_factor_spectrum`); it will be removed in 0.2. Use
        ``Xn = l2_normalize(X); Xn @ Xn.T``.
    """
    warnings.warn("cosine_affinity is deprecated in 0.1 and will be removed in 0.2; use "
                  "Xn = l2_normalize(X); Xn @ Xn.T.", FutureWarning, stacklevel=2)
    Xn = l2_normalize(np.asarray(X).reshape(-1, np.asarray(X).shape[-1]))
    return Xn @ Xn.T


def gaussian_affinity(X, sigma):
    """Dense Gaussian affinity ``A_jk = exp(-‖x_j - x_k‖² / 2σ²)`` of the rows of ``X``.

    IL2VSeg's colour affinity (RGB in ``[0, 1]``), computed in float32.

    Parameters
    ----------
    X : array-like of shape (n, c)
        One point per row (e.g. the colours of the grid's pixels).
    sigma : float
        Width ``σ`` of the Gaussian.

    Returns
    -------
    ndarray of shape (n, n), float32
    """
    X = np.asarray(X, dtype=np.float32)
    sq = (X ** 2).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None] - 2 * X @ X.T, 0)
    return np.exp(-d2 / (2 * sigma ** 2))


def scaled_dot_affinity(X, offset=None):
    """DeepCut's image graph: dot products of the rows of ``X`` over their maximum.

    ``W = X Xᵀ / max(X Xᵀ)``, then clipped at 0 (``offset=None``: non-negative
    weights, the normalized cut's graph) or minus ``offset`` (signed weights, pairs
    below ``offset`` repel: the correlation clustering graph, ``offset = 1/α``). The
    reference's CC graph ``X Xᵀ - max(X Xᵀ)/α`` is this one times the positive
    constant ``max(X Xᵀ)``.

    Parameters
    ----------
    X : torch.Tensor of shape (n, d)
        Node features.
    offset : float, optional
        Subtracted from the scaled dot products; None clips them at 0 instead.

    Returns
    -------
    torch.Tensor of shape (n, n) or None
        ``W``; None when ``X Xᵀ`` has no positive entry.
    """
    W = X @ X.T
    top = W.max()
    if not top > 0:
        return None
    W = W / top
    return W.clamp(min=0) if offset is None else W - offset


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


def contract_edges(n_nodes, edges, mask=None):
    """Contract edges: connected components of the nodes joined by the kept edges.

    Parameters
    ----------
    n_nodes : int
        Number of nodes.
    edges : ndarray of shape (m, 2), int
        Undirected edges ``(i, j)``.
    mask : ndarray of shape (m,), bool, optional
        Which edges to contract (all when omitted).

    Returns
    -------
    labels : ndarray of shape (n_nodes,), int64
        Component (supernode) of each node, ``0..k-1`` in order of first node.
    n_components : int
    """
    from scipy.sparse.csgraph import connected_components

    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    if mask is not None:
        edges = edges[np.asarray(mask, dtype=bool)]
    graph = sp.coo_matrix((np.ones(len(edges), dtype=np.int8), (edges[:, 0], edges[:, 1])),
                          shape=(n_nodes, n_nodes))
    n_components, labels = connected_components(graph, directed=False)
    return labels.astype(np.int64), int(n_components)


def quotient_edges(edges, labels):
    """Edges of the supernode graph after :func:`contract_edges`.

    Parameters
    ----------
    edges : ndarray of shape (m, 2), int
        Undirected edges between nodes.
    labels : ndarray of shape (n_nodes,), int
        Supernode of each node.

    Returns
    -------
    ndarray of shape (m', 2), int64
        The distinct supernode pairs ``(a, b)``, ``a < b``, joined by at least one edge
        (no self-loops), sorted.
    """
    pairs = np.asarray(labels, dtype=np.int64)[np.asarray(edges, dtype=np.int64).reshape(-1, 2)]
    pairs = np.sort(pairs[pairs[:, 0] != pairs[:, 1]], axis=1)
    return np.unique(pairs, axis=0).reshape(-1, 2)


def thin_factor_spectrum(X, n_vectors=0, *, device=None):
    """Exact spectrum of ``A = X Xᵀ`` from its thin factor ``X`` (n, d), no n x n matrix.

    ``A`` is the affinity of the rows of ``X`` (the cosine affinity when they have
    unit norm), so ``rank(A) <= r = min(n, d)``: its nonzero eigenvalues are those
    of the small Gram matrix (``Xᵀ X``, d x d, when ``d < n``; else ``X Xᵀ``), and the
    remaining ``n - r`` eigenvalues of ``A`` are exactly 0. Eigenvectors of ``A``
    for the nonzero eigenvalues are ``u = X v / sqrt(λ)``. Cost ``O(n d²)`` instead
    of the ``O(n³)`` of a dense ``eigh`` of ``A``, with the same absolute accuracy on
    the eigenvalues (about ``eps · λ_1``). Computed in float64.

    Parameters
    ----------
    X : ndarray of shape (n, d)
        Thin factor of ``A``.
    n_vectors : int, default=0
        How many leading eigenvectors to return; at most the numerical rank of
        ``A`` (eigenvalues above ``max(n, d) · eps · λ_1``) are returned, since
        eigenvectors of the null space are arbitrary.
    device : None or str or torch.device, default=None
        ``None`` computes with NumPy; otherwise the Gram matrix and its eigen-
        decomposition are computed with torch on that device (e.g. ``"cuda"``).

    Returns
    -------
    eigenvalues : ndarray of shape (n,), float64
        All ``n`` eigenvalues of ``A``, in decreasing order, exact zeros beyond ``r``.
    eigenvectors : ndarray of shape (n, m), float64
        The ``m = min(n_vectors, numerical rank)`` leading unit eigenvectors, each
        with its largest-magnitude entry positive (a deterministic sign).
    """
    X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    n, d = X.shape
    thin = d < n
    if device is None:
        gram = X.T @ X if thin else X @ X.T
        values, vectors = np.linalg.eigh(gram)
    else:
        import torch

        Xt = torch.as_tensor(X, device=device)
        values, vectors = torch.linalg.eigh(Xt.T @ Xt if thin else Xt @ Xt.T)
        values, vectors = values.cpu().numpy(), vectors.cpu().numpy()
    values, vectors = values[::-1], vectors[:, ::-1]
    r = min(n, d)
    eigenvalues = np.zeros(n)
    eigenvalues[:r] = np.clip(values[:r], 0.0, None)
    top = eigenvalues[0] if n else 0.0
    rank = int(np.sum(eigenvalues > max(n, d) * np.finfo(np.float64).eps * top)) if top > 0 \
        else 0
    m = min(int(n_vectors), rank)
    if thin:
        U = (X @ vectors[:, :m]) / np.sqrt(eigenvalues[:m])
    else:
        U = vectors[:, :m].copy()
    if m:
        flip = np.sign(U[np.argmax(np.abs(U), axis=0), np.arange(m)])
        U *= np.where(flip == 0, 1.0, flip)
    return eigenvalues, U


def eigengap_elbow(eigenvalues):
    """Number of clusters from the elbow of the eigengaps (CLASP's rule).

    With eigenvalues ``λ_1 >= ... >= λ_n`` and gaps ``δ_i = λ_i - λ_{i+1}``
    (``i = 1..n-1``), draw the straight line from ``(1, δ_1)`` to ``(n-1, δ_{n-1})``;
    ``i*`` is the index whose point ``(i, δ_i)`` is farthest (perpendicular
    distance, in the raw units of both axes) from that line, first one on ties.

    Parameters
    ----------
    eigenvalues : array-like of shape (n,)
        Eigenvalues in decreasing order (e.g. from :func:`thin_factor_spectrum`).

    Returns
    -------
    int
        ``K_opt = i* + 1``; 1 when ``n < 2`` (no gap).
    """
    lam = np.asarray(eigenvalues, dtype=np.float64).ravel()
    if lam.size < 2:
        return 1
    gaps = lam[:-1] - lam[1:]
    i = np.arange(1, gaps.size + 1, dtype=np.float64)
    x1, y1, x2, y2 = i[0], gaps[0], i[-1], gaps[-1]
    norm = np.hypot(x2 - x1, y2 - y1)
    if norm == 0:
        return 2
    dist = np.abs((x2 - x1) * (y1 - gaps) - (x1 - i) * (y2 - y1)) / norm
    return int(np.argmax(dist)) + 2


def modularity_graph(X, mask=None):
    """The data terms of the soft modularity of :func:`soft_modularity_loss` (torch).

    They depend on the features only, so a training loop computes them once per image.

    Parameters
    ----------
    X : torch.Tensor of shape (B, n, d)
        Node features of ``B`` graphs (rows need not be normalised).
    mask : torch.Tensor of shape (B, n), bool, optional
        Valid nodes (padding rows are ``False``); all valid when omitted.

    Returns
    -------
    w : torch.Tensor of shape (B, n, n)
        ``w_ij = A_ij - k_i k_j / 2m`` (zero on padding rows and columns).
    two_m : torch.Tensor of shape (B,)
        ``2m = Σ_ij A_ij``.
    """
    import torch
    import torch.nn.functional as F

    Xn = F.normalize(X, dim=-1)
    if mask is not None:
        Xn = Xn * mask.to(X.dtype)[..., None]
    A = (Xn @ Xn.transpose(1, 2)).clamp_min(0)
    degrees = A.sum(-1)
    two_m = degrees.sum(-1).clamp_min(torch.finfo(X.dtype).tiny)
    return A - degrees[:, :, None] * degrees[:, None, :] / two_m[:, None, None], two_m


def _max_product_sum(S, w):
    """``Σ_ij w_ij max_c S_ic S_jc`` per graph (torch), with a hand-written backward.

    The max is taken one concept at a time (no ``n x n x k`` tensor); backward
    keeps only the winning concept of each pair (``uint8``, ``n x n``) and, ``w``
    being symmetric, ``∂/∂S_ic = 2 Σ_j w_ij [c wins (i, j)] S_jc`` (one gather and
    one scatter-add).
    """
    import torch

    class MaxProductSum(torch.autograd.Function):
        @staticmethod
        def forward(ctx, S, w):
            delta = S[..., :1] * S[..., :1].transpose(1, 2)
            winner = torch.zeros(delta.shape, dtype=torch.uint8, device=S.device)
            for c in range(1, S.shape[-1]):
                product = S[..., c:c + 1] * S[..., c:c + 1].transpose(1, 2)
                better = product > delta
                winner.masked_fill_(better, c)
                delta = torch.maximum(delta, product)
            ctx.save_for_backward(S, w, winner)
            return (w * delta).sum((1, 2))

        @staticmethod
        def backward(ctx, grad):
            S, w, winner = ctx.saved_tensors
            winner = winner.long()
            # w_ij S_j,c* of each pair, summed into row i's winning concept c*
            partner = torch.gather(S.transpose(1, 2), 1, winner)
            grad_S = torch.zeros_like(S).scatter_add_(2, winner, w * partner)
            return 2 * grad[:, None, None] * grad_S, None

    return MaxProductSum.apply(S, w)


def soft_modularity_loss(X, S, mask=None, *, graph=None):
    """Negative soft modularity of assignments ``S`` on the cosine graph of ``X`` (torch).

    ACSeg's loss (Li et al., CVPR 2023): with ``A_ij = max(0, cos(x_i, x_j))``,
    degrees ``k_i = Σ_j A_ij``, ``2m = Σ_ij A_ij``, ``w_ij = A_ij - k_i k_j / 2m``,
    ``S̄ = max(0, S)`` and ``δ_ij = max_c S̄_ic S̄_jc``,
    ``L = -(1 / 2m) Σ_ij w_ij δ_ij``. Differentiable in ``S``; the graph of ``X``
    is a constant. No ``n x n x k`` tensor is formed: the max runs one concept at
    a time and the backward keeps only each pair's winning concept (with ties, the
    first concept gets the gradient; they have measure zero unless ``S̄`` is 0).

    Parameters
    ----------
    X : torch.Tensor of shape (B, n, d)
        Node features of ``B`` graphs (rows need not be normalised); unused when
        ``graph`` is given.
    S : torch.Tensor of shape (B, n, k)
        Soft assignments (e.g. cosine similarities to ``k`` concepts).
    mask : torch.Tensor of shape (B, n), bool, optional
        Valid nodes (padding rows are ``False``); all valid when omitted.
    graph : tuple of torch.Tensor, optional
        ``(w, two_m)`` from :func:`modularity_graph` (computed here when omitted).

    Returns
    -------
    torch.Tensor of shape (B,)
        The loss of each graph (``-Q``, lower is better).
    """
    w, two_m = modularity_graph(X, mask) if graph is None else graph
    S = S.clamp_min(0)
    if mask is not None:
        S = S * mask.to(S.dtype)[..., None]
    return -_max_product_sum(S, w) / two_m


def grid_edges(shape, connectivity=4):
    """Edge list of the grid graph of :func:`grid_adjacency`.

    Parameters
    ----------
    shape : tuple of int
        Grid shape ``(h, w)``; cell ``(r, c)`` is node ``r * w + c``.
    connectivity : {4, 8}
        4-neighbours, or 4-neighbours plus diagonals.

    Returns
    -------
    ndarray of shape (m, 2), int64
        Each undirected edge once, as ``(i, j)`` with ``i < j``, sorted.
    """
    upper = sp.triu(grid_adjacency(shape, connectivity), k=1).tocoo()
    edges = np.stack([upper.row, upper.col], axis=1).astype(np.int64)
    return edges[np.lexsort((edges[:, 1], edges[:, 0]))]


def pixel_patch_counts(labels, grid_shape):
    """How many pixels of each region fall in each cell of the patch grid.

    Pixel ``(y, x)`` of an ``(H, W)`` map lies in grid cell
    ``(⌊(y + ½) h / H⌋, ⌊(x + ½) w / W⌋)``, the convention of
    :func:`~sklearn_useg.refine.upsample_labels`.

    Parameters
    ----------
    labels : ndarray of shape (H, W), int
        Region ids ``0..k-1``.
    grid_shape : tuple of int
        ``(h, w)`` of the patch grid.

    Returns
    -------
    scipy.sparse.csr_matrix of shape (k, h * w), float64
        ``counts[r, p]``: pixels of region ``r`` in cell ``p``; ``counts @ F`` sums the
        cell features ``F`` (h * w, d) over each region's pixels.
    """
    labels = np.asarray(labels)
    h, w = grid_shape
    cell = upsample_labels(np.arange(h * w).reshape(h, w), labels.shape).ravel()
    k = int(labels.max()) + 1
    return sp.csr_matrix((np.ones(labels.size), (labels.ravel().astype(np.intp), cell)),
                         shape=(k, h * w))


def region_mean_features(regions, features):
    """Mean patch feature under each region's pixels, and the region's pixel count.

    Parameters
    ----------
    regions : ndarray of shape (H, W), int
        Region ids ``0..s-1`` (e.g. :func:`~sklearn_useg.refine.superpixels`).
    features : ndarray of shape (h, w, d)
        Patch features on the grid the image was cut into.

    Returns
    -------
    means : ndarray of shape (s, d), float64
        Each region's patch features weighted by its pixels in each patch
        (:func:`pixel_patch_counts`).
    pixels : ndarray of shape (s,), float64
        Pixels per region.
    """
    h, w, d = np.shape(features)
    counts = pixel_patch_counts(regions, (h, w))
    pixels = np.asarray(counts.sum(axis=1)).ravel()
    sums = counts @ np.asarray(features, dtype=np.float64).reshape(h * w, d)
    return sums / np.maximum(pixels, 1)[:, None], pixels


def region_adjacency(labels):
    """Sparse symmetric adjacency of the regions of a label map (4-connectivity).

    Parameters
    ----------
    labels : ndarray of shape (H, W), int
        Region ids ``0..k-1``.

    Returns
    -------
    scipy.sparse.csr_matrix of shape (k, k), 0/1 entries, no self-loops
        1 where two regions share a horizontal or vertical pixel border.
    """
    labels = np.asarray(labels)
    k = int(labels.max()) + 1
    a = np.concatenate([labels[:, :-1].ravel(), labels[:-1].ravel()])
    b = np.concatenate([labels[:, 1:].ravel(), labels[1:].ravel()])
    keep = a != b
    adj = sp.coo_matrix((np.ones(2 * keep.sum()), (np.r_[a[keep], b[keep]],
                                                   np.r_[b[keep], a[keep]])), shape=(k, k))
    adj = adj.tocsr()
    adj.data[:] = 1.0
    return adj
