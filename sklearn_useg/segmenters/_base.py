"""BaseSegmenter: the shared fit/predict machinery of every method."""

import sys
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import replace
from numbers import Integral

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .._torch_utils import available_device, draw_seed, resolve_device, single_thread
from .._validation import PipelineStepMixin, check_features
from ..metrics import hungarian_miou
from ..refine import REFINEMENTS, check_refine_params, refine_labels, relabel_consecutive, \
    upsample_argmax, upsample_labels

_SHOW_TRAINING = ContextVar("sklearn_useg_show_training", default=False)


@contextmanager
def training_progress(enabled=True):
    """Within this context, the training loops of ACSeg and IL2VSeg show a tqdm progress
    bar with the loss on standard error (only when it is a terminal)."""
    token = _SHOW_TRAINING.set(bool(enabled))
    try:
        yield
    finally:
        _SHOW_TRAINING.reset(token)


def training_bar(n_steps, name):
    """A tqdm bar over ``n_steps`` training steps, shown inside :func:`training_progress`
    on a terminal; update it with ``bar.set_postfix(loss=...)`` and ``bar.update()``."""
    from tqdm.auto import tqdm

    return tqdm(total=n_steps, desc=name, unit="step", file=sys.stderr, leave=False,
                disable=None if _SHOW_TRAINING.get() else True)


def pool_patches(pf, max_patches):
    """Average-pool a :class:`~sklearn_useg.PatchFeatures` grid to at most ``max_patches``.

    Parameters
    ----------
    pf : PatchFeatures
        Features of one image.
    max_patches : int or None
        Largest ``h * w`` kept; ``None`` (or a grid already small enough) returns
        ``pf`` unchanged.

    Returns
    -------
    PatchFeatures
        Same image, shape and metadata, on a grid of at most ``max_patches`` cells.
    """
    if max_patches is None or pf.n_patches <= max_patches:
        return pf
    import torch
    import torch.nn.functional as F

    h, w = pf.grid_shape
    scale = np.sqrt(max_patches / (h * w))
    size = (max(1, int(h * scale)), max(1, int(w * scale)))

    def pool(grid_last):  # (h, w, c) -> (h', w', c)
        tensor = torch.from_numpy(np.ascontiguousarray(grid_last, dtype=np.float32))
        pooled = F.adaptive_avg_pool2d(tensor.permute(2, 0, 1)[None], size)[0]
        return pooled.permute(1, 2, 0).contiguous().numpy()

    attention = None if pf.attention is None else \
        pool(np.moveaxis(pf.attention, 0, -1)).transpose(2, 0, 1).copy()
    return replace(pf, features=pool(pf.features), attention=attention)


def map_images(func, items, n_jobs, *args):
    """``[func(item, *args) for item in items]``, spread over ``n_jobs`` by joblib, each
    call on one thread (``single_thread``).

    ``items`` holds one entry per image (its features, or a tuple starting with them).
    Runs under whatever joblib backend is active (loky processes by default, dask
    inside ``joblib.parallel_backend("dask")``). Items travel pickled
    (``max_nbytes=None``): joblib's default memmapping of arrays above 1 MB, the
    size of one BSDS image's grid, costs as much as OAP's work on that image.
    """
    return Parallel(n_jobs=n_jobs, max_nbytes=None)(
        delayed(_one_thread)(func, item, *args) for item in items)


def _one_thread(func, *args):
    with single_thread():
        return func(*args)


class SegmentResult:
    """What a method returns for one image: hard grid labels or soft grid scores.

    Parameters
    ----------
    labels : ndarray of shape (h, w), optional
        Hard labels on the patch grid (upsampled with nearest neighbours).
    scores : ndarray of shape (k, h, w), optional
        Soft per-segment scores (upsampled bilinearly, then argmax).
    details : dict, optional
        Per-image facts a user may inspect (chosen number of segments, ...).
    """

    __slots__ = ("labels", "scores", "details")

    def __init__(self, labels=None, scores=None, details=None):
        if (labels is None) == (scores is None):
            raise ValueError("give exactly one of labels and scores")
        self.labels = labels
        self.scores = scores
        self.details = details or {}


class BaseSegmenter(PipelineStepMixin, BaseEstimator):
    """Base class of the segmenters.

    Subclasses implement :meth:`_segment` (one image's features -> a
    :class:`SegmentResult` on the grid), and, if they learn from the dataset,
    :meth:`_fit`. The base validates the parameters (scikit-learn's
    ``_parameter_constraints``, then :meth:`_check_params`) and the input, loops over
    images with joblib (``n_jobs``), each image on one thread, returns int32 labels
    ``0..k-1`` at each image's resolution and refines them to the image's edges as
    ``refine`` says.

    The parameters the base reads are declared here: ``refine``, ``refine_params``,
    ``max_patches`` and ``n_jobs``, which every segmenter of the library takes
    (their constraints are ``BaseSegmenter._parameter_constraints``, which a
    subclass extends: ``{**BaseSegmenter._parameter_constraints, ...}``), and
    ``random_state`` and ``device``, which a subclass declares when it has them. A
    subclass without one of them gets the class attribute's value: no refinement,
    no pooling, one job, the seed 0 (deterministic) and the CPU.

    Class attributes a subclass may set: ``_dataset_labels = True`` when its labels
    are dataset-wide class ids (their values are kept: no per-image relabelling, also
    through the refinement); ``_uses_image = False`` when :meth:`_segment` never reads
    ``PatchFeatures.image`` (the image is then not sent to the workers, unless the
    refinement needs it). A method that segments all images of a :meth:`predict` call
    in one pass (e.g. a network run batched on ``device_``) overrides
    :meth:`_segment_batch` instead of :meth:`_segment`.

    Attributes
    ----------
    n_features_in_ : int
        Feature dimension seen in :meth:`fit`.
    device_ : torch.device
        Where the method's torch computations run, resolved from ``device`` in
        :meth:`fit` (the CPU for methods without a ``device`` parameter).
    """

    _parameter_constraints = {
        "refine": [StrOptions({"auto", *REFINEMENTS}), None],
        "refine_params": [dict, None],
        "max_patches": [Interval(Integral, 1, None, closed="left"), None],
        "n_jobs": [Integral, None],
    }
    _dataset_labels = False
    _uses_image = True  # False when _segment never reads PatchFeatures.image
    # fitted attributes holding torch modules: pickled as their weights (the modules'
    # classes are built in fit, torch is imported lazily), rebuilt by _new_module on load
    _torch_modules = ()
    # values of the parameters the base reads, for subclasses without them
    refine = None
    refine_params = None
    max_patches = None
    n_jobs = None
    random_state = 0
    device = "cpu"

    def _check_params(self):
        """Checks beyond ``_parameter_constraints``; raise ``ValueError``/``TypeError``."""

    def _fit(self, features, random_state):
        """Learn from the training features (per-image methods learn nothing)."""

    def _auto_refine(self):
        """The refinement ``refine="auto"`` runs when the features carry their image
        (None where the labels already follow the image)."""
        return "superpixels"

    def _segment(self, pf, random_state):
        """Segment one image: its :class:`~sklearn_useg.PatchFeatures` (pooled to
        ``max_patches``) -> a :class:`SegmentResult` on its grid."""
        raise NotImplementedError

    def _segment_batch(self, features):
        """Segment all images of a :meth:`predict` call at once, or None (the default)
        to call :meth:`_segment` on each image in the workers.

        Returns a list with one :class:`SegmentResult` per image; the base then
        upsamples and refines them in the workers.
        """
        return None

    def _check_input(self, X):
        """Validated features, each grid pooled to ``max_patches``."""
        return [pool_patches(pf, self.max_patches) for pf in check_features(X)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.non_deterministic = self.random_state is None
        return tags

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None):
        """Fit the segmenter.

        Parameters
        ----------
        X : list of PatchFeatures or ndarray of shape (h, w, d)
            Per-image features (from :class:`~sklearn_useg.DinoFeatures` or your own).
        y : ignored
            Unsupervised; present for Pipeline compatibility.

        Returns
        -------
        self
        """
        self._check_params()
        if self.refine is not None:
            check_refine_params("superpixels" if self.refine == "auto" else self.refine,
                                self.refine_params)
        device = resolve_device(self.device)
        features = self._check_input(X)
        self.n_features_in_ = features[0].features.shape[-1]
        self.device_ = device
        self._fit(features, check_random_state(self.random_state))
        return self

    def predict(self, X, *, return_details=False):
        """Segment each image.

        Parameters
        ----------
        X : list of PatchFeatures or ndarray of shape (h, w, d)
            Per-image features.
        return_details : bool, default=False
            Also return a list of per-image dicts describing the method's choices.

        Returns
        -------
        labels : list of ndarray of shape (H, W), int32
            One label map per image, at the image's resolution (the grid's for plain
            arrays), labels consecutive from 0.
        details : list of dict
            Only when ``return_details=True``.
        """
        check_is_fitted(self)
        features = self._check_input(X)
        for i, pf in enumerate(features):
            if pf.features.shape[-1] != self.n_features_in_:
                raise ValueError(
                    f"X[{i}] has {pf.features.shape[-1]} features per patch, but "
                    f"{type(self).__name__} was fitted with {self.n_features_in_}.")
        # One seed for every image: results do not depend on order, batching or n_jobs.
        seed = draw_seed(check_random_state(self.random_state))
        if not (self._uses_image or self.refine is not None):
            # what is not used is not shipped to the workers
            features = [replace(pf, image=None) for pf in features]
        results = self._segment_batch(features) or [None] * len(features)
        outputs = map_images(self._predict_one, list(zip(features, results)), self.n_jobs,
                             seed)
        labels = [out[0] for out in outputs]
        if return_details:
            return labels, [out[1] for out in outputs]
        return labels

    def fit_predict(self, X, y=None, **predict_params):
        """Fit, then segment the same images (see :meth:`predict`)."""
        X = check_features(X)  # read once: a generator feeds both fit and predict
        return self.fit(X, y).predict(X, **predict_params)

    def score(self, X, y):
        """Mean Hungarian mIoU of the predicted segmentations against ``y``.

        Per image (and per annotation), each ground-truth region is matched to one
        predicted segment maximising the total IoU; the IoUs are averaged over the
        regions, then over annotations and images: :func:`~sklearn_useg.hungarian_miou`
        with ``matching="image"``, what :data:`~sklearn_useg.miou_scorer` computes.
        This is the score of ``GridSearchCV`` without ``scoring=``.

        Parameters
        ----------
        X : list of PatchFeatures or ndarray of shape (h, w, d)
            Per-image features.
        y : list of ndarray of shape (H, W), or of lists of them
            Ground-truth label maps, one item per image (several annotations of an
            image in a list); pixels labelled 255 are ignored.

        Returns
        -------
        float
            Mean IoU in [0, 1], greater is better.
        """
        return hungarian_miou(y, self.predict(X))

    def _new_module(self, name):
        """A fresh module for the fitted attribute ``name`` of :attr:`_torch_modules`, on
        the device it is used on (its weights are loaded after)."""
        raise NotImplementedError

    def __getstate__(self):
        state = dict(super().__getstate__())
        for name in self._torch_modules:
            if name in state:
                state[name] = {key: value.cpu()
                               for key, value in state[name].state_dict().items()}
        return state

    def __setstate__(self, state):
        if "device_" in state:  # fitted on a GPU, loaded on a machine without one
            state = dict(state, device_=available_device(state["device_"]))
        weights = {name: state[name] for name in self._torch_modules if name in state}
        super().__setstate__(state)
        for name, module_weights in weights.items():
            module = self._new_module(name)
            module.load_state_dict(module_weights)
            setattr(self, name, module.eval())

    def _predict_one(self, item, seed):
        """Labels at the image's resolution and details of one image: ``item`` is its
        features and its :meth:`_segment_batch` result (None: segmented here)."""
        pf, result = item
        if result is None:
            result = self._segment(pf, np.random.RandomState(seed))
        shape = tuple(pf.image_shape)
        if result.scores is not None:
            labels = upsample_argmax(result.scores, shape)
        else:
            labels = upsample_labels(np.asarray(result.labels, dtype=np.int32), shape)
        method = self.refine
        if method == "auto":
            method = None if pf.image is None else self._auto_refine()
        if method is not None:
            if pf.image is None:
                raise ValueError(f"refine={method!r} needs the image: pass PatchFeatures "
                                 f"from DinoFeatures(keep_image=True), not plain arrays.")
            labels = refine_labels(pf.image, labels, method, self.refine_params,
                                   keep_labels=self._dataset_labels)
        if self._dataset_labels:
            return labels.astype(np.int32), result.details
        return relabel_consecutive(labels), result.details
