"""SemanticLabeler: per-image segments of any segmenter -> dataset-wide classes."""

from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.cluster import KMeans
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._torch_utils import draw_seed
from ._validation import PipelineStepMixin, check_features
from .graph import l2_normalize, pixel_patch_counts
from .metrics import hungarian_miou

CLS_SIZE = 224  # side of the region crops fed to the backbone (the paper's)


def _cls_embeddings(pf, labels, extractor, index):
    """The paper's region embedding: CLS token of each masked bounding-box crop, by the
    backbone of ``extractor`` (the DinoFeatures that made ``pf``)."""
    import torch
    import torch.nn.functional as F

    from . import _backbones

    if pf.image is None or pf.backbone is None:
        raise ValueError(f"X[{index}]: region_embedding='cls' needs PatchFeatures with the "
                         f"image and the backbone name (DinoFeatures(keep_image=True)).")
    backbone = _backbones.get_backbone_spec(extractor.backbone).name
    if pf.backbone != backbone:
        raise ValueError(f"X[{index}] was made by the backbone {pf.backbone!r}, but "
                         f"feature_extractor runs {backbone!r}: pass the DinoFeatures that "
                         f"made X.")
    model = extractor.load_backbone()
    device = next(model.parameters()).device
    image = _backbones.normalize_batch([pf.image], device)  # (1, 3, H, W)
    crops = []
    for r in range(int(labels.max()) + 1):
        ys, xs = np.nonzero(labels == r)
        box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
        inside = torch.from_numpy(labels[box] == r).to(device, torch.float32)
        crop = image[:, :, box[0], box[1]] * inside  # mask after normalisation
        crops.append(F.interpolate(crop, size=(CLS_SIZE, CLS_SIZE), mode="bilinear",
                                   align_corners=False))
    with torch.inference_mode():
        return model.forward_features(torch.cat(crops))[:, 0].float().cpu().numpy()


def _background(scores):
    """Per image, 2-means on the regions' foreground scores; True = background."""
    if len(scores) < 2 or np.ptp(scores) == 0:
        return np.zeros(len(scores), dtype=bool)
    km = KMeans(n_clusters=2, n_init=1, init=np.array([[scores.min()], [scores.max()]]))
    assignment = km.fit_predict(scores.reshape(-1, 1))
    return assignment == np.argmin(km.cluster_centers_.ravel())


class SemanticLabeler(PipelineStepMixin, BaseEstimator):
    """Turn any segmenter's per-image segments into dataset-wide classes.

    ACSeg's concept classifier (Li et al., CVPR 2023), for every method: each
    segment of each image gets an embedding; ``fit`` clusters the embeddings of the
    training images into classes with (seeded) k-means; ``predict`` gives each
    segment the class of the nearest centre. The output label maps share one
    dataset-wide vocabulary, so they can be scored with
    ``hungarian_miou(..., matching="dataset")`` / ``dataset_miou_scorer``.

    Parameters
    ----------
    segmenter : BaseSegmenter
        Any segmenter of this library (cloned and fitted on the training images).
    n_classes : int, default=27
        Number of dataset-wide classes, background included when ``background``.
    region_embedding : {"mean", "cls"}, default="mean"
        ``"mean"``: mean of the segment's (L2-normalised) patch features, each patch
        weighted by the segment's pixels in it. ``"cls"`` (the paper's): crop the
        segment's bounding box from the image, mask out pixels outside the segment
        after ImageNet normalisation (set to 0), resize to 224 x 224 and take the
        final CLS embedding of ``feature_extractor``'s backbone (needs
        ``PatchFeatures`` with ``image`` and ``backbone``, i.e. from that extractor).
    background : bool, default=False
        Reserve class 0 for background. A segment's foreground score is the sum over
        its pixels of the last-layer CLS attention, minimum over heads; per image,
        2-means on the scores of its segments puts the lower cluster in the
        background (an image with a single segment, or equal scores, has no
        background). Needs ``DinoFeatures(return_attention=True)`` features.
    n_init : int, default=10
        k-means restarts.
    feature_extractor : DinoFeatures or None, default=None
        The extractor that made ``X``; ``region_embedding="cls"`` needs it and runs its
        backbone, checkpoint and device, so that the CLS embeddings come from the
        model of the patch features.
    random_state : int, RandomState or None, default=None
        Seeds the segmenter (when it has a ``random_state`` that is None, it is set
        from this one) and the k-means.

    Attributes
    ----------
    segmenter_ : BaseSegmenter
        The fitted clone of ``segmenter``.
    kmeans_ : sklearn.cluster.KMeans
        The class centres (of the foreground segments when ``background``).
    n_features_in_ : int
        Feature dimension seen in ``fit``.

    Notes
    -----
    Choices where the paper is vague: mean embeddings are L2-normalised (k-means on
    the unit sphere, i.e. cosine); the 2-means for the background runs per image;
    predicted labels are class ids ``0..n_classes-1`` (not relabelled per image).

    Examples
    --------
    >>> from sklearn_useg import KMeansSegmenter, SemanticLabeler
    >>> from sklearn_useg.datasets import make_segmentation_blobs
    >>> X, y = make_segmentation_blobs(n_images=3, random_state=0)
    >>> sem = SemanticLabeler(KMeansSegmenter(4), n_classes=6, random_state=0).fit(X)
    >>> labels = sem.predict(X)
    >>> labels[0].shape, int(labels[0].max()) < 6
    ((24, 32), True)
    """

    _parameter_constraints = {
        "segmenter": [HasMethods(["fit", "predict"])],
        "n_classes": [Interval(Integral, 1, None, closed="left")],
        "region_embedding": [StrOptions({"mean", "cls"})],
        "background": ["boolean"],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "feature_extractor": [HasMethods(["load_backbone"]), None],
        "random_state": ["random_state"],
    }

    def __init__(self, segmenter, n_classes=27, *, region_embedding="mean",
                 background=False, n_init=10, feature_extractor=None, random_state=None):
        self.segmenter = segmenter
        self.n_classes = n_classes
        self.region_embedding = region_embedding
        self.background = background
        self.n_init = n_init
        self.feature_extractor = feature_extractor
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.non_deterministic = self.random_state is None
        return tags

    def _check_params(self):
        self._validate_params()
        if self.background and self.n_classes < 2:
            raise ValueError(f"background=True needs n_classes >= 2 (background plus at "
                             f"least one class), got n_classes={self.n_classes}.")
        if self.region_embedding == "cls" and self.feature_extractor is None:
            raise ValueError("region_embedding='cls' needs feature_extractor: the "
                             "DinoFeatures that made X (its backbone embeds the regions).")

    def _regions(self, features):
        """Segment each image; return its labels, region embeddings and background."""
        segments = self.segmenter_.predict(features)
        out = []
        for i, (pf, labels) in enumerate(zip(features, segments)):
            counts = pixel_patch_counts(labels, pf.grid_shape)
            if self.region_embedding == "mean":
                emb = np.asarray(counts @ l2_normalize(pf.flat).astype(np.float64))
            else:
                emb = _cls_embeddings(pf, labels, self.feature_extractor, i)
            if self.background:
                if pf.attention is None:
                    raise ValueError(f"X[{i}] has no attention maps: background=True needs "
                                     f"DinoFeatures(return_attention=True).")
                fg = counts @ pf.attention.min(axis=0).ravel().astype(np.float64)
                bg = _background(fg)
            else:
                bg = np.zeros(counts.shape[0], dtype=bool)
            out.append((labels, l2_normalize(emb), bg))
        return out

    def fit(self, X, y=None):
        """Fit the segmenter, then cluster the training segments into classes.

        Parameters
        ----------
        X : list of PatchFeatures or ndarray of shape (h, w, d)
            Per-image features of the training images.
        y : ignored
            Unsupervised; present for Pipeline compatibility.

        Returns
        -------
        self
        """
        self._check_params()
        features = check_features(X)
        rng = check_random_state(self.random_state)
        self.segmenter_ = clone(self.segmenter)
        seed = draw_seed(rng)
        if "random_state" in self.segmenter_.get_params() and \
                self.segmenter_.random_state is None:
            self.segmenter_.set_params(random_state=seed)
        self.segmenter_.fit(features)
        self.n_features_in_ = self.segmenter_.n_features_in_
        regions = self._regions(features)
        emb = np.concatenate([e[~bg] for _, e, bg in regions])
        n_fg = self.n_classes - int(self.background)
        if len(emb) < n_fg:
            raise ValueError(f"the training images gave {len(emb)} (foreground) segments, "
                             f"fewer than the {n_fg} classes asked for; lower n_classes or "
                             f"fit on more images.")
        self.kmeans_ = KMeans(n_clusters=n_fg, n_init=self.n_init,
                              random_state=draw_seed(rng)).fit(emb)
        return self

    def predict(self, X):
        """Label each image's segments with dataset-wide classes.

        Parameters
        ----------
        X : list of PatchFeatures or ndarray of shape (h, w, d)
            Per-image features.

        Returns
        -------
        list of ndarray of shape (H, W), int32
            Class ids ``0..n_classes-1`` (0 is background when ``background``), the
            same vocabulary for every image.
        """
        check_is_fitted(self)
        out = []
        for labels, emb, bg in self._regions(check_features(X)):
            classes = self.kmeans_.predict(emb) + int(self.background)
            classes[bg] = 0
            out.append(classes.astype(np.int32)[labels])
        return out

    def fit_predict(self, X, y=None):
        """Fit on ``X``, then label the same images (see :meth:`predict`)."""
        X = check_features(X)  # read once: a generator feeds both fit and predict
        return self.fit(X, y).predict(X)

    def score(self, X, y):
        """Dataset-wide Hungarian mIoU of the predicted classes against ``y``.

        One matching of predicted classes to ground-truth classes over all the
        images: :func:`~sklearn_useg.hungarian_miou` with ``matching="dataset"``,
        what :data:`~sklearn_useg.dataset_miou_scorer` computes. This is the score
        of ``GridSearchCV`` without ``scoring=``.

        Parameters
        ----------
        X : list of PatchFeatures or ndarray of shape (h, w, d)
            Per-image features.
        y : list of ndarray of shape (H, W)
            One ground-truth label map per image; pixels labelled 255 are ignored.

        Returns
        -------
        float
            Mean IoU over the ground-truth classes, in [0, 1], greater is better.
        """
        return hungarian_miou(y, self.predict(X), matching="dataset")
