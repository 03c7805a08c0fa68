"""SuperpixelSegmenter: image superpixels merged by their ViT features and colour."""

from numbers import Integral, Real

import numpy as np
from sklearn.cluster import AgglomerativeClustering
from sklearn.utils._param_validation import Interval, StrOptions

from ..graph import l2_normalize, normalize_features, region_adjacency, region_mean_features
from ..refine import check_refine_params, superpixels
from ._base import BaseSegmenter, SegmentResult


def region_descriptors(pf, regions, *, normalize="center_l2", color_weight=2.0):
    """One row per region: its mean ViT feature and its mean CIELAB colour.

    Parameters
    ----------
    pf : PatchFeatures
        Features of the image, with the image.
    regions : ndarray of shape (H, W), int
        Region ids ``0..s-1`` (e.g. :func:`~sklearn_useg.refine.superpixels`).
    normalize : {"none", "l2", "center", "center_l2"}, default="center_l2"
        Normalisation of the patch features before averaging.
    color_weight : float, default=2.0
        Scale of the colour part: CIELAB / 100 times this (L* spans 0..1 at 1).

    Returns
    -------
    ndarray of shape (s, d + 3), float64
        ``[unit mean feature, color_weight * Lab / 100]``, each region's patch
        features weighted by its pixels in each patch.
    """
    from skimage.color import rgb2lab

    means, sizes = region_mean_features(regions, normalize_features(pf.features, normalize))
    feats = l2_normalize(means)
    lab = rgb2lab(pf.image).reshape(-1, 3)
    colour = np.stack([np.bincount(regions.ravel(), lab[:, c], minlength=len(sizes))
                       for c in range(3)], axis=1) / np.maximum(sizes, 1)[:, None]
    return np.hstack([feats, color_weight * colour / 100.0])


class SuperpixelSegmenter(BaseSegmenter):
    """Superpixels of the image, merged by their ViT features and colour.

    Training-free and beyond the five papers: the image is over-segmented into a few
    hundred Felzenszwalb–Huttenlocher superpixels
    (:func:`~sklearn_useg.refine.superpixels`), each described by the mean of the
    (centred, unit) patch features under its pixels and its mean CIELAB colour
    (:func:`region_descriptors`); adjacent superpixels are then merged by
    connectivity-constrained average-linkage agglomeration
    (:class:`sklearn.cluster.AgglomerativeClustering`) down to ``n_segments``
    segments. Segments follow the image's edges (they are unions of superpixels) and
    stay connected, and their meaning comes from the ViT.

    Parameters
    ----------
    n_segments : int, default=40
        Segments per image (fewer when the image has fewer superpixels). Chosen on
        BSDS500 *train* (``benchmarks/superpixel.py``); see the user guide for the
        figures and for object discovery, where the segments feed a foreground rule.
    color_weight : float, default=2.0
        Weight of the mean CIELAB colour (/100) against the unit ViT feature.
    linkage : {"average", "complete", "single", "ward"}, default="average"
        Agglomeration linkage (Euclidean distance between descriptors).
    normalize : {"none", "l2", "center", "center_l2"}, default="center_l2"
        Patch-feature normalisation before averaging over a superpixel.
    superpixel_params : dict or None, default=None
        Overrides of :data:`~sklearn_useg.refine.SUPERPIXEL_DEFAULTS`.
    refine : {"auto", "superpixels", "crf"} or None, default=None
        The segments already follow the superpixels; ``"crf"`` adds DenseCRF
        (``"auto"`` and ``"superpixels"`` vote on the same superpixels: no change).
    refine_params : dict or None, default=None
        Overrides of :data:`~sklearn_useg.refine.CRF_DEFAULTS` for ``refine="crf"``.
    max_patches : int or None, default=4096
        Largest patch grid the method works on: bigger grids are average-pooled to
        fit before the method runs; labels still come back at full resolution.
    n_jobs : int, optional
        Images processed in parallel (joblib).

    Attributes
    ----------
    n_features_in_ : int
        Feature dimension seen in :meth:`fit`.

    Examples
    --------
    >>> from sklearn_useg import DinoFeatures, SuperpixelSegmenter
    >>> from sklearn_useg.datasets import load_sample_images
    >>> images = load_sample_images().images[:1]
    >>> X = DinoFeatures(backbone="test_vit", weights=None).transform(images)
    >>> labels = SuperpixelSegmenter(n_segments=10).fit_predict(X)
    >>> labels[0].shape == images[0].shape[:2], int(labels[0].max()) + 1
    (True, 10)
    """

    _parameter_constraints = {
        **BaseSegmenter._parameter_constraints,
        "n_segments": [Interval(Integral, 1, None, closed="left")],
        "color_weight": [Interval(Real, 0, None, closed="left")],
        "linkage": [StrOptions({"average", "complete", "single", "ward"})],
        "normalize": [StrOptions({"none", "l2", "center", "center_l2"})],
        "superpixel_params": [dict, None],
    }

    def __init__(self, n_segments=40, *, color_weight=2.0, linkage="average",
                 normalize="center_l2", superpixel_params=None, refine=None,
                 refine_params=None, max_patches=4096, n_jobs=None):
        self.n_segments = n_segments
        self.color_weight = color_weight
        self.linkage = linkage
        self.normalize = normalize
        self.superpixel_params = superpixel_params
        self.refine = refine
        self.refine_params = refine_params
        self.max_patches = max_patches
        self.n_jobs = n_jobs

    def _check_params(self):
        check_refine_params("superpixels", self.superpixel_params)

    def _segment(self, pf, random_state):
        if pf.image is None:
            raise ValueError("SuperpixelSegmenter needs the image: pass PatchFeatures from "
                             "DinoFeatures(keep_image=True), not plain arrays.")
        regions = superpixels(pf.image, **(self.superpixel_params or {}))
        n_regions = int(regions.max()) + 1
        if n_regions <= self.n_segments:
            labels = np.arange(n_regions)
        else:
            descriptors = region_descriptors(pf, regions, normalize=self.normalize,
                                             color_weight=self.color_weight)
            labels = AgglomerativeClustering(
                n_clusters=self.n_segments, linkage=self.linkage,
                connectivity=region_adjacency(regions)).fit_predict(descriptors)
        return SegmentResult(labels=labels[regions], details={
            "n_superpixels": n_regions, "n_segments": len(np.unique(labels))})
