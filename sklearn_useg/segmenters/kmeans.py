"""KMeansSegmenter: the baseline every method is compared against."""

from numbers import Integral

import numpy as np
from sklearn.cluster import KMeans
from sklearn.utils._param_validation import Interval, StrOptions

from ..graph import NORMALIZATIONS, normalize_features
from ._base import BaseSegmenter, SegmentResult


class KMeansSegmenter(BaseSegmenter):
    """k-means on the patch features of each image, independently.

    Parameters
    ----------
    n_clusters : int, default=5
        Segments per image (fewer if the image has fewer distinct patches).
    normalize : {"none", "l2", "center", "center_l2"}, default="l2"
        Feature normalisation before clustering.
    n_init : int, default=3
        k-means restarts.
    refine : {"auto", "superpixels", "crf"} or None, default="auto"
        Pixel-accurate labels (:func:`~sklearn_useg.refine.refine_labels`):
        ``"superpixels"`` gives each superpixel of the image the label most of its
        pixels have, ``"crf"`` runs DenseCRF (``crf`` extra), None upsamples the
        patch grid's labels as they are. ``"auto"``: superpixels when the features
        carry their image (:class:`~sklearn_useg.DinoFeatures`' default), else None.
    refine_params : dict or None, default=None
        Overrides of :data:`~sklearn_useg.refine.SUPERPIXEL_DEFAULTS` or
        :data:`~sklearn_useg.refine.CRF_DEFAULTS`.
    max_patches : int or None, default=4096
        Largest patch grid the method works on: bigger grids are average-pooled to
        fit (features and attention, aspect ratio kept) before the method runs, which
        bounds its memory; labels still come back at full resolution. ``None`` never
        pools.
    random_state : int, RandomState or None, default=None
        Seeds k-means; the same seed gives the same labels.
    n_jobs : int, optional
        Images processed in parallel (joblib).

    Examples
    --------
    >>> from sklearn_useg import KMeansSegmenter
    >>> from sklearn_useg.datasets import make_segmentation_blobs
    >>> X, y = make_segmentation_blobs(n_images=2, random_state=0)
    >>> labels = KMeansSegmenter(n_clusters=4, random_state=0).fit_predict(X)
    >>> labels[0].shape, labels[0].dtype
    ((24, 32), dtype('int32'))
    """

    _uses_image = False

    _parameter_constraints = {
        **BaseSegmenter._parameter_constraints,
        "n_clusters": [Interval(Integral, 1, None, closed="left")],
        "normalize": [StrOptions(set(NORMALIZATIONS))],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(self, n_clusters=5, *, normalize="l2", n_init=3, refine="auto",
                 refine_params=None, max_patches=4096, random_state=None, n_jobs=None):
        self.n_clusters = n_clusters
        self.normalize = normalize
        self.n_init = n_init
        self.refine = refine
        self.refine_params = refine_params
        self.max_patches = max_patches
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _segment(self, pf, random_state):
        X = normalize_features(pf.flat, self.normalize)
        k = min(self.n_clusters, len(np.unique(X, axis=0)))  # no more than distinct patches
        km = KMeans(n_clusters=k, n_init=self.n_init, random_state=random_state).fit(X)
        return SegmentResult(labels=km.labels_.reshape(pf.grid_shape))
