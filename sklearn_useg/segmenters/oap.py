"""OAPSegmenter: Online Agglomerative Pooling (training-free hierarchical merging)."""

from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ..graph import (contract_edges, grid_edges, normalize_features, quotient_edges,
                     region_adjacency, region_mean_features)
from ..refine import check_refine_params, superpixels
from ._base import BaseSegmenter, SegmentResult, map_images

_CHUNK = 1 << 22  # most entries of an (rows x n) affinity block computed at once
_ROWS = 1 << 24  # most entries of the stored (s x n) mean affinity rows
_EPS = 1e-4  # margin on the similarity bounds (float32 round-off)
#: Default ``thresholds`` and returned ``layer`` of OAPSegmenter for each kind of node.
DEFAULT_HIERARCHY = {"patches": ((0.8, 0.7, 0.6, 0.5, 0.4), 0),
                     "superpixels": ((0.94, 0.88, 0.82, 0.76, 0.7), 1)}


def _torch():
    import torch

    return torch


def _chunks(n_rows, n_cols):
    step = max(1, _CHUNK // max(n_cols, 1))
    return [slice(start, start + step) for start in range(0, n_rows, step)]


@dataclass(frozen=True)
class _Tokens:
    """What every layer of one image shares: its tokens and the pooling parameters."""

    F: Any  # (n, d) torch tensor: unit-norm token features
    second_moment: Any  # Σ = Fᵀ F / n (d, d), for the spatial bounds
    feature_weight: float  # ω_f
    spatial_weight: float  # ω_s
    sigma: float  # temperature of the pooling softmax
    mean_pooling: bool  # pool with the mean affinity row (True) or M A (False)


@dataclass(frozen=True)
class _Nodes:
    """The nodes of one layer (supernodes of the tokens), all torch tensors."""

    counts: Any  # (s,) tokens per node
    C: Any  # (s, d) mean token features, the thin factor of the mean affinity rows c Fᵀ
    R: Any  # (s, n) those rows, or None (computed from C where needed)
    V: Any  # (s, d) node features
    P: Any  # (s, d) C Σ, for the spatial bounds
    pooled: bool  # whether V are pooled features (False for the tokens themselves)


def _merge_mask(tokens, nodes, i, j, sf, tau):
    """Which node pairs ``(i, j)`` have ``S = ω_f S^f + ω_s S^s > tau``.

    ``sf`` are the pairs' feature similarities. With ``x = r_i - r_j = (c_i - c_j) Fᵀ``,
    the spatial distance ``mean|x|`` lies between
    ``mean(x²) / max|x| >= q / ‖c_i - c_j‖`` and ``sqrt(mean(x²)) = sqrt(q)``,
    ``q = (c_i - c_j)ᵀ Σ (c_i - c_j)`` (rows of F have norm <= 1). Pairs decided by
    these bounds skip the L1 distance over all n tokens, which is computed, in
    blocks, for the others only: the result is exact.
    """
    torch = _torch()
    C, P, R, F = nodes.C, nodes.P, nodes.R, tokens.F
    wf, ws = tokens.feature_weight, tokens.spatial_weight
    Ci, Cj = C[i], C[j]
    sq = (C * C).sum(dim=1)
    quad = (P * C).sum(dim=1)
    q = (quad[i] + quad[j] - 2 * (P[i] * Cj).sum(dim=1)).clamp(min=0)
    dc_norm = (sq[i] + sq[j] - 2 * (Ci * Cj).sum(dim=1)).clamp(min=1e-12).sqrt()
    upper = wf * sf + ws  # S for a zero spatial distance
    merge = upper - ws * q.sqrt() > tau + _EPS
    unsure = torch.nonzero(~merge & (upper - ws * q / dc_norm > tau - _EPS)).flatten()
    for rows in _chunks(len(unsure), F.shape[0]):
        a, b = i[unsure[rows]], j[unsure[rows]]
        x = (C[a] - C[b]) @ F.T if R is None else R[a] - R[b]
        merge[unsure[rows]] = upper[unsure[rows]] - ws * x.abs().mean(dim=1) > tau
    return merge


def _pool(tokens, nodes, C, R, counts):
    """Features ``L2N(softmax(r / sigma) F)`` of the nodes ``nodes`` (indices) of mean
    token features ``C``, rows ``R`` and sizes ``counts``; ``r`` is the node's mean
    affinity row (or ``|M| r``, the paper's ``M A``, without ``mean_pooling``)."""
    torch = _torch()
    F = tokens.F
    out = torch.empty((len(nodes), F.shape[1]), dtype=F.dtype, device=F.device)
    for rows in _chunks(len(nodes), F.shape[0]):
        idx = nodes[rows]
        logits = C[idx] @ F.T if R is None else R[idx]
        if not tokens.mean_pooling:
            logits = logits * counts[idx, None]
        out[rows] = torch.softmax(logits / tokens.sigma, dim=1) @ F
    return torch.nn.functional.normalize(out, dim=1)


def _group(tokens, nodes, labels, n_groups):
    """The nodes of the next layer, merging ``nodes`` by ``labels``: sizes,
    count-weighted mean features ``C``, mean affinity rows ``R`` (the count-weighted
    mean of the children's rows, O(s n); None when above ``_ROWS``) and pooled
    features. A group of one child whose feature is already pooled keeps it: same
    mask, same feature."""
    torch = _torch()
    C, R, V, F = nodes.C, nodes.R, nodes.V, tokens.F
    index = torch.as_tensor(labels, device=C.device)
    new_counts = torch.zeros(n_groups, dtype=C.dtype, device=C.device).index_add_(
        0, index, nodes.counts)
    weights = (nodes.counts / new_counts[index])[:, None]
    new_C = torch.zeros((n_groups, C.shape[1]), dtype=C.dtype,
                        device=C.device).index_add_(0, index, C * weights)
    if R is not None:
        new_R = torch.zeros((n_groups, R.shape[1]), dtype=R.dtype,
                            device=R.device).index_add_(0, index, R * weights)
    elif n_groups * F.shape[0] <= _ROWS:
        new_R = torch.cat([new_C[rows] @ F.T for rows in _chunks(n_groups, F.shape[0])])
    else:
        new_R = None
    new_V = torch.empty((n_groups, F.shape[1]), dtype=F.dtype, device=F.device)
    children = torch.bincount(index, minlength=n_groups)
    kept = children[index] == 1 if nodes.pooled else torch.zeros_like(index, dtype=torch.bool)
    new_V[index[kept]] = V[kept]
    todo = torch.ones(n_groups, dtype=torch.bool, device=F.device)
    todo[index[kept]] = False
    todo = torch.nonzero(todo).flatten()
    new_V[todo] = _pool(tokens, todo, new_C, new_R, new_counts)
    return _Nodes(counts=new_counts, C=new_C, R=new_R, V=new_V,
                  P=new_C @ tokens.second_moment, pooled=True)


def oap_hierarchy(features, thresholds=(0.8, 0.7, 0.6, 0.5, 0.4), *, feature_weight=0.6,
                  spatial_weight=0.4, sigma=0.07, mean_pooling=True, semantic_layers=None,
                  min_size=None, regions=None, device="cpu"):
    """Run Online Agglomerative Pooling on one image's unit-norm patch features.

    Parameters
    ----------
    features : ndarray of shape (h, w, d)
        Patch features, rows L2-normalised (zero rows allowed).
    thresholds : sequence of float
        ``τ_t`` of each layer.
    feature_weight, spatial_weight : float
        ``ω_f`` and ``ω_s``.
    sigma : float
        Softmax temperature of the feature pooling.
    mean_pooling : bool
        Pool with the mean affinity row ``M_i A / |M_i|`` (True) or ``M_i A`` (False).
    semantic_layers : container of int, optional
        Layers whose semantic pooling is run (all when None).
    min_size : int, optional
        When given, each layer also holds the label maps of the reported masks
        (``"instance_reported"``, ``"semantic_reported"``): masks smaller than
        ``min_size`` tokens given to the most similar reported mask.
    regions : ndarray of shape (H, W), int, optional
        Regions ``0..s-1`` of the image (e.g. :func:`~sklearn_useg.refine.superpixels`)
        that are the first layer's nodes instead of the tokens: each region's ``c``
        is the mean feature of the tokens under its pixels, its size counts its pixels
        in tokens (one token = ``H W / (h w)`` pixels), and regions sharing a pixel
        border are adjacent. The label maps are then ``(H, W)``.
    device : str or torch.device
        Where the dense maths runs.

    Returns
    -------
    list of dict
        One dict per layer, see :meth:`OAPSegmenter.predict_hierarchy`.
    """
    torch = _torch()
    h, w, d = features.shape
    n = h * w
    F = torch.as_tensor(np.ascontiguousarray(features.reshape(n, d), dtype=np.float32),
                        device=device)
    second_moment = F.T @ F / n
    tokens = _Tokens(F=F, second_moment=second_moment, feature_weight=feature_weight,
                     spatial_weight=spatial_weight, sigma=sigma, mean_pooling=mean_pooling)
    if regions is None:
        # one node per token: its own feature, the mean affinity rows (A itself for
        # the tokens) never built
        nodes = _Nodes(counts=torch.ones(n, dtype=F.dtype, device=F.device), C=F, R=None,
                       V=F, P=F @ second_moment, pooled=False)
        edges = grid_edges((h, w), connectivity=4)
        node_map = np.arange(n).reshape(h, w)
    else:
        nodes, edges = _region_nodes(tokens, regions, (h, w))
        node_map = np.asarray(regions)
    size_dtype = np.int64 if regions is None else np.float64  # sizes count tokens
    base_node = np.arange(len(nodes.counts))  # node of each first-layer node
    layers = []
    for t, tau in enumerate(thresholds):
        # instance pooling on the adjacency graph
        i, j = torch.as_tensor(edges, device=F.device).unbind(dim=1)
        merge = _merge_mask(tokens, nodes, i, j, (nodes.V[i] * nodes.V[j]).sum(dim=1), tau)
        omega, s = contract_edges(len(nodes.C), edges, merge.cpu().numpy())
        nodes = _group(tokens, nodes, omega, s)
        edges = quotient_edges(edges, omega)
        base_node = omega[base_node]
        layer = {"threshold": float(tau), "instance": base_node[node_map],
                 "instance_features": nodes.V.cpu().numpy(), "instance_sizes":
                 nodes.counts.cpu().numpy().astype(size_dtype), "instance_edges": edges}
        if semantic_layers is None or t in semantic_layers:
            # semantic pooling on the fully connected graph over this layer's instances
            sf = nodes.V @ nodes.V.T
            i, j = torch.nonzero(torch.triu(feature_weight * sf + spatial_weight > tau,
                                            diagonal=1), as_tuple=True)
            merge = _merge_mask(tokens, nodes, i, j, sf[i, j], tau)
            group, k = contract_edges(s, torch.stack([i, j], dim=1).cpu().numpy(),
                                      merge.cpu().numpy())
            semantic = _group(tokens, nodes, group, k)
            layer.update(semantic=group[base_node][node_map], semantic_of_instance=group,
                         semantic_features=semantic.V.cpu().numpy(),
                         semantic_sizes=semantic.counts.cpu().numpy().astype(size_dtype))
        layers.append(layer if min_size is None else _add_reported(layer, min_size))
    return layers


def _region_nodes(tokens, regions, grid_shape):
    """First-layer nodes of :func:`oap_hierarchy` from ``regions`` (H, W) of the image,
    and their adjacency edges ``(i, j)``, ``i < j``."""
    torch = _torch()
    F = tokens.F
    means, pixels = region_mean_features(regions, F.cpu().numpy().reshape(*grid_shape, -1))
    C = torch.as_tensor(means, dtype=F.dtype, device=F.device)
    sizes = torch.as_tensor(pixels * F.shape[0] / np.asarray(regions).size, dtype=F.dtype,
                            device=F.device)
    upper = sp.triu(region_adjacency(regions), k=1).tocoo()
    edges = np.stack([upper.row, upper.col], axis=1).astype(np.int64)
    nodes = _Nodes(counts=sizes, C=C, R=None, V=torch.nn.functional.normalize(C, dim=1),
                   P=C @ tokens.second_moment, pooled=False)
    return nodes, edges


def _absorb(sizes, feats, min_size, edges=None):
    """Map each mask smaller than ``min_size`` to the most similar reported mask
    (reached through ``edges`` when given, so regions stay connected).

    Returns the owner (a reported mask) of every mask; all masks are kept when none
    is large enough.
    """
    reported = sizes >= min_size
    owner = np.where(reported, np.arange(len(sizes)), -1)
    if reported.all() or not reported.any():
        return np.arange(len(sizes))
    if edges is None:  # semantic masks may be disjoint: any reported mask will do
        small = np.flatnonzero(~reported)
        big = np.flatnonzero(reported)
        owner[small] = big[np.argmax(feats[small] @ feats[big].T, axis=1)]
        return owner
    both = np.concatenate([edges, edges[:, ::-1]])
    while (owner < 0).any():
        cand = both[(owner[both[:, 0]] < 0) & (owner[both[:, 1]] >= 0)]
        if len(cand) == 0:
            break
        target = owner[cand[:, 1]]
        sim = np.einsum("ij,ij->i", feats[cand[:, 0]], feats[target])
        order = np.lexsort((-sim, cand[:, 0]))
        first = np.unique(cand[order, 0], return_index=True)[1]
        owner[cand[order[first], 0]] = target[order[first]]
    return np.where(owner < 0, np.arange(len(sizes)), owner)


def _add_reported(layer, min_size):
    """Add ``"instance_reported"`` / ``"semantic_reported"`` label maps to a layer: masks
    below ``min_size`` tokens given to the most similar reported mask."""
    owner = _absorb(layer["instance_sizes"], layer["instance_features"], min_size,
                    layer["instance_edges"])
    layer["instance_reported"] = owner[layer["instance"]]
    if "semantic" in layer:
        owner = _absorb(layer["semantic_sizes"], layer["semantic_features"], min_size)
        layer["semantic_reported"] = owner[layer["semantic"]]
    return layer


class OAPSegmenter(BaseSegmenter):
    """Online Agglomerative Pooling: training-free hierarchical instance and semantic masks.

    OAP (Online Agglomerative Pooling, §4.2 and Algorithm 1 of "Online Agglomerative
    Pooling for scalable self-supervised universal segmentation") starts with one node
    per patch token, joined to its 4 neighbours on the grid. At each layer ``t`` it
    scores every edge ``(i, j)`` with
    ``S = ω_f V_i·V_j + ω_s (1 - (1/n) ‖r_i - r_j‖₁)``, where ``V`` are the node
    features and ``r_i = M_i A / |M_i|`` the mean affinity row (over all ``n`` tokens)
    of the node's tokens, ``A = F Fᵀ``. Edges with ``S > τ_t`` are contracted; the
    connected components become the supernodes of the next layer (instance masks,
    each one connected region), with features ``L2N(softmax(r / σ) F)``. The same
    identify/merge step on a fully connected graph over the instance supernodes of
    the layer gives the semantic masks (possibly disjoint).

    Beyond the paper, the first layer's nodes can be the image's superpixels
    (:func:`~sklearn_useg.refine.superpixels`) instead of the tokens (``nodes``; the
    default whenever the features carry their image): each superpixel starts with the
    mean feature of the tokens under its pixels and a size counted in tokens, and is
    joined to the superpixels it borders; the merging is the paper's. The masks are
    then unions of superpixels, so they follow the image's edges without a refinement
    step.

    Parameters
    ----------
    nodes : {"auto", "superpixels", "patches"}, default="auto"
        First-layer nodes: the image's superpixels, one node per patch token (the
        paper's), or superpixels when the features carry their image
        (:class:`~sklearn_useg.DinoFeatures`' default) and patches otherwise. Over the
        full splits (``benchmarks/quality.py --methods oap``, key facet, attention
        rule at 0.25, CamVid through SemanticLabeler), superpixels at the defaults /
        patches at the paper's finest instance layer (the former default) /
        ``KMeansSegmenter(5)``: BSDS500 val mIoU / covering 24.9 / 56.1,
        21.5 / 53.9, 18.8 / 55.1; Weizmann horses foreground IoU 74.9, 70.9, 74.1;
        CamVid val mIoU / pixel accuracy 31.2 / 69.4, 17.7 / 45.1, 20.7 / 52.2 (over
        the labeler's seeds 0-3, ``--seeds 4``, see the user guide). Chosen on the
        training splits (``--split train``): BSDS500 train 25.4 / 58.8 against
        k-means' 19.2 / 57.0, CamVid train (fitted and scored on train) 24.8 / 59.3
        against 20.7 / 51.0, and the horses. On small objects pasted onto photographs
        (``benchmarks/small_objects.py``) superpixels lift OAP by 4.5-5.8 points
        but it stays below k-means (see the user guide). The superpixels replace the
        refinement's, at the same cost: ``predict`` takes 196 ms per BSDS500 image
        (0.41x the key features) against 190 ms for patch nodes with the superpixel
        refinement (``python benchmarks/oap.py speed --n-images 10``, one thread,
        medians; 232 ms either way at 784 px).
    thresholds : sequence of float or None, default=None
        ``τ_t``, one per layer. None: the paper's ``(0.8, 0.7, 0.6, 0.5, 0.4)`` on
        patches; ``(0.94, 0.88, 0.82, 0.76, 0.7)`` on superpixels, whose mean
        features are smoother than single tokens'. Chosen on the first 100 BSDS500
        *train* images (instance masks, mIoU / covering; k-means 20.4 / 58.4) and the
        first 150 horses (semantic masks; k-means 74.8): one layer at τ = 0.85, 0.88,
        0.9, 0.92 gives 24.4 / 57.7, 27.6 / 58.0, 29.3 / 56.8, 30.6 / 54.3 (a single
        threshold trades segments for covering); two layers, returning the second,
        (0.92, 0.85) 28.7 / 61.3 and 75.2, (0.94, 0.88) 29.6 / 62.0 and 75.2,
        (0.92, 0.88) 30.1 / 60.5; three, (0.95, 0.9, 0.85) 29.4 / 61.5.
    feature_weight : float, default=0.6
        ``ω_f``, weight of the feature similarity.
    spatial_weight : float, default=0.4
        ``ω_s``, weight of the spatial (affinity-row) similarity.
    sigma : float, default=0.07
        Temperature of the softmax that pools supernode features.
    min_size : int, default=5
        ``φ``: masks smaller than this many tokens are not reported. They stay in the
        graph (see :meth:`predict_hierarchy`); in the label maps of :meth:`predict`
        each is given to the most similar reported mask (an adjacent one for
        instances, so every instance stays one connected region).
    level : {"semantic", "instance"}, default="semantic"
        Which masks :meth:`predict` returns. Algorithm 1 returns the masks of every
        layer (:meth:`predict_hierarchy`); :meth:`predict` returns one. On
        superpixels the semantic masks (the default) are ahead of k-means on every
        task (see ``nodes``); the instance masks of the same layer score higher on
        scenes of many parts (BSDS500 val 26.9 / 56.9, train 28.4 / 60.6; CamVid val
        29.6, train 24.5) and lower on single objects (horses 72.5): take
        ``level="instance"`` for natural scenes. On patches, layer 0: BSDS500 val
        21.5 / 53.9 instance, 17.9 / 54.0 semantic (the last semantic layer
        12.2 / 47.2); horses 70.9 instance, 73.9 semantic.
    layer : int or None, default=None
        Which layer :meth:`predict` returns (index into ``thresholds``; -1 = last).
        None: 0 on patches, 1 on superpixels.
    normalize : {"center_l2", "l2"}, default="center_l2"
        Feature normalisation (of the tokens, before superpixels average them). The
        paper L2-normalises DINO v1 keys (``"l2"``). The thresholds assume DINO
        v1-like statistics; raw DINOv2 keys are almost parallel (adjacent cosine
        ≈ 0.99, all pairs ≈ 0.9), so the default removes each image's mean key first.
    mean_pooling : bool, default=True
        Pool supernode features with ``softmax(M_i A / (|M_i| σ))`` (True), or with the
        paper's literal ``softmax(M_i A / σ)`` (False), which grows sharper with the
        node's size and becomes an argmax for large nodes.
    superpixel_params : dict or None, default=None
        Overrides of :data:`~sklearn_useg.refine.SUPERPIXEL_DEFAULTS` for the
        superpixel nodes.
    device : str, default="cpu"
        Where the dense maths runs (``"cpu"``, ``"cuda"``, ``"auto"``).
    refine : {"auto", "superpixels", "crf"} or None, default="auto"
        Pixel-accurate labels (:func:`~sklearn_useg.refine.refine_labels`):
        ``"superpixels"`` gives each superpixel of the image the label most of its
        pixels have, ``"crf"`` runs DenseCRF (``crf`` extra), None upsamples the
        patch grid's labels as they are. ``"auto"``: nothing on superpixel nodes
        (the masks follow the superpixels already), superpixels on patch nodes when
        the features carry their image, else None.
    refine_params : dict or None, default=None
        Overrides of :data:`~sklearn_useg.refine.SUPERPIXEL_DEFAULTS` or
        :data:`~sklearn_useg.refine.CRF_DEFAULTS`.
    max_patches : int or None, default=4096
        Largest patch grid the method works on: bigger grids are average-pooled to
        fit (features and attention, aspect ratio kept) before the method runs, which
        bounds its memory; labels still come back at full resolution. ``None`` never
        pools.
    n_jobs : int, optional
        Images processed in parallel (joblib).

    Attributes
    ----------
    n_features_in_ : int
        Feature dimension seen in :meth:`fit`.

    Notes
    -----
    Use it on the ``key`` facet of the last layer
    (``DinoFeatures(facet="key")``), as the paper does. Choices where the paper is
    vague: the spatial similarity of the first layer uses ``A = F Fᵀ`` of the
    normalised features ``F``; the semantic pooling of layer ``t`` uses the same
    ``τ_t`` on the instance supernodes of layer ``t`` (after its instance merge).

    Speed: ``A = F Fᵀ`` is never built. Each node keeps the count-weighted mean
    ``c`` of its tokens' features, the thin factor of its mean affinity row
    ``r = M A / |M| = c Fᵀ``; after the first merge the rows ``R`` (s, n) of the
    supernodes are computed once (O(s n d)) and then updated as the count-weighted
    mean of the children's rows (O(s n) per layer); they also give the pooling
    logits. The L1 distance over the ``n`` tokens is needed only for the pairs that
    the bounds ``sqrt(q) >= (1/n) ‖r_i - r_j‖₁ >= q / ‖c_i - c_j‖``,
    ``q = (c_i - c_j)ᵀ (Fᵀ F / n) (c_i - c_j)``, leave undecided: the result is the
    same as with the dense rows. A supernode that merged with nothing keeps its
    pooled feature. Memory stays O((s + n) d + s n), and rows are not stored when
    ``s n`` exceeds 2²⁴ (computed in blocks instead).

    Examples
    --------
    >>> from sklearn_useg import OAPSegmenter
    >>> from sklearn_useg.datasets import make_segmentation_blobs
    >>> X, y = make_segmentation_blobs(n_images=1, random_state=0)
    >>> labels = OAPSegmenter(level="semantic", layer=0).fit_predict(X)
    >>> labels[0].shape, labels[0].dtype
    ((24, 32), dtype('int32'))
    """

    _parameter_constraints = {
        **BaseSegmenter._parameter_constraints,
        "nodes": [StrOptions({"auto", "superpixels", "patches"})],
        "superpixel_params": [dict, None],
        "thresholds": ["array-like", None],
        "feature_weight": [Interval(Real, 0, None, closed="left")],
        "spatial_weight": [Interval(Real, 0, None, closed="left")],
        "sigma": [Interval(Real, 0, None, closed="neither")],
        "min_size": [Interval(Integral, 1, None, closed="left")],
        "level": [StrOptions({"semantic", "instance"})],
        "layer": [Integral, None],
        "normalize": [StrOptions({"center_l2", "l2"})],
        "mean_pooling": ["boolean"],
        "device": [str],
    }

    def __init__(self, nodes="auto", *, thresholds=None, feature_weight=0.6,
                 spatial_weight=0.4, sigma=0.07, min_size=5, level="semantic", layer=None,
                 normalize="center_l2", mean_pooling=True, superpixel_params=None,
                 device="cpu", refine="auto", refine_params=None, max_patches=4096,
                 n_jobs=None):
        self.nodes = nodes
        self.thresholds = thresholds
        self.feature_weight = feature_weight
        self.spatial_weight = spatial_weight
        self.sigma = sigma
        self.min_size = min_size
        self.level = level
        self.layer = layer
        self.normalize = normalize
        self.mean_pooling = mean_pooling
        self.superpixel_params = superpixel_params
        self.device = device
        self.refine = refine
        self.refine_params = refine_params
        self.max_patches = max_patches
        self.n_jobs = n_jobs

    @property
    def _uses_image(self):
        return self.nodes != "patches"

    def _auto_refine(self):
        # superpixel nodes: the masks are unions of the refinement's superpixels already
        return "superpixels" if self.nodes == "patches" else None

    def _check_params(self):
        for nodes in (("patches", "superpixels") if self.nodes == "auto" else (self.nodes,)):
            thresholds, layer = DEFAULT_HIERARCHY[nodes]
            thresholds = np.asarray(thresholds if self.thresholds is None else self.thresholds)
            layer = layer if self.layer is None else self.layer
            if (thresholds.ndim != 1 or thresholds.size == 0
                    or not (np.issubdtype(thresholds.dtype, np.floating)
                            or np.issubdtype(thresholds.dtype, np.integer))
                    or not np.all(np.isfinite(thresholds))):
                raise ValueError("thresholds must be a non-empty 1-D sequence of finite "
                                 f"numbers, got {self.thresholds!r}.")
            if not -len(thresholds) <= layer < len(thresholds):
                raise ValueError(f"layer must index thresholds (-{len(thresholds)} <= layer "
                                 f"< {len(thresholds)}), got {layer}.")
        if self.feature_weight + self.spatial_weight <= 0:
            raise ValueError("feature_weight and spatial_weight must not both be 0.")
        if self.nodes != "patches":
            check_refine_params("superpixels", self.superpixel_params)

    def _nodes_of(self, pf):
        """The first layer's nodes for one image: ``"superpixels"`` or ``"patches"``."""
        if self.nodes == "auto":
            return "patches" if pf.image is None else "superpixels"
        return self.nodes

    def _hierarchy_settings(self, nodes):
        """``thresholds`` as floats and the index of the layer :meth:`predict` returns,
        the defaults of ``nodes`` where unset (validated in ``fit``)."""
        thresholds, layer = DEFAULT_HIERARCHY[nodes]
        thresholds = [float(t) for t in np.asarray(
            thresholds if self.thresholds is None else self.thresholds)]
        return thresholds, (layer if self.layer is None else self.layer) % len(thresholds)

    def _hierarchy(self, pf, semantic_layers=None, n_layers=None):
        """:func:`oap_hierarchy` of one image, its first ``n_layers`` layers (all when
        None)."""
        nodes = self._nodes_of(pf)
        thresholds = self._hierarchy_settings(nodes)[0][:n_layers]
        F = normalize_features(pf.features, self.normalize)
        if not F.any():  # all patches alike (centring left no direction): one shared feature
            F = np.full_like(F, 1.0 / np.sqrt(F.shape[-1]))
        regions = None
        if nodes == "superpixels":
            if pf.image is None:
                raise ValueError("nodes='superpixels' needs the image: pass PatchFeatures "
                                 "from DinoFeatures(keep_image=True), not plain arrays, "
                                 "or take nodes='patches'.")
            # at the superpixels' working size: memory stays bounded for large photos
            regions = superpixels(pf.image, upsample=False, **(self.superpixel_params or {}))
        return oap_hierarchy(F, thresholds, feature_weight=self.feature_weight,
                             spatial_weight=self.spatial_weight, sigma=self.sigma,
                             mean_pooling=self.mean_pooling, semantic_layers=semantic_layers,
                             min_size=self.min_size, regions=regions, device=self.device_)

    def _segment(self, pf, random_state):
        nodes = self._nodes_of(pf)
        thresholds, t = self._hierarchy_settings(nodes)
        semantic = self.level == "semantic"
        layer = self._hierarchy(pf, semantic_layers={t} if semantic else (),
                                n_layers=t + 1)[t]
        labels = layer[f"{self.level}_reported"]
        return SegmentResult(labels=labels, details={
            "nodes": nodes, "layer": t, "level": self.level, "threshold": thresholds[t],
            "n_instances": len(layer["instance_sizes"]),
            "n_segments": len(np.unique(labels))})

    def predict_hierarchy(self, X):
        """Every layer's instance and semantic masks.

        Parameters
        ----------
        X : list of PatchFeatures or ndarray of shape (h, w, d)
            Per-image features.

        Returns
        -------
        list of list of dict
            Per image, one dict per layer ``t`` with keys ``"threshold"`` (``τ_t``),
            ``"instance"`` ((h, w) int, supernode of each token; supernode ids
            ``0..s-1``), ``"instance_features"`` ((s, d) pooled features),
            ``"instance_sizes"`` ((s,) tokens per supernode), ``"instance_edges"``
            ((m, 2) adjacent supernode pairs), ``"semantic"`` ((h, w) int),
            ``"semantic_of_instance"`` ((s,) semantic mask of each instance),
            ``"semantic_features"`` ((k, d)) and ``"semantic_sizes"`` ((k,)): every
            mask, whatever its size. Instance masks are nested across layers; each
            semantic mask is a union of the instance masks of its layer. The label
            maps that :meth:`predict` returns (masks below ``min_size`` given to the
            most similar reported mask, an adjacent one for instances) are under
            ``"instance_reported"`` and ``"semantic_reported"``. On patch nodes all
            maps are on the patch grid (pooled to ``max_patches``; upsample with
            :func:`sklearn_useg.refine.upsample_labels`), on superpixel nodes at the
            superpixels' working size (the image's, at most ``max_side`` pixels a side,
            :func:`~sklearn_useg.refine.superpixels`; sizes still count tokens, as
            floats: a superpixel covers a fraction of a token's pixels). The
            first layer's nodes and thresholds are those of ``nodes``.
        """
        check_is_fitted(self)
        features = self._check_input(X)
        return map_images(self._hierarchy, features, self.n_jobs)
