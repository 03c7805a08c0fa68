"""Evaluation metrics for unsupervised image segmentation.

All metrics compare ground-truth label maps ``y_true`` with predicted label
maps ``y_pred``. Label maps are 2-D integer arrays indexed ``(row, col)``.

Input conventions
-----------------
``y_pred``
    A list of 2-D label maps, one per image (a 3-D array ``(n_images, H, W)``
    or a single 2-D map for one image are accepted too). Predicted ids are
    arbitrary integers; they need not be consecutive and carry no meaning
    other than grouping pixels.
``y_true``
    A list with one item per image. Each item is either a 2-D label map or,
    for datasets with several human annotations per image (e.g. BSDS500), a
    list/tuple of 2-D label maps of the same image. A single 2-D map is
    treated as one image.
``ignore_index``
    Pixels whose ground-truth value equals ``ignore_index`` (255 by default)
    are excluded from every computation; ``None`` disables this. Annotations
    without any non-ignored pixel are skipped; images whose annotations are
    all skipped are skipped; if nothing is left a ``ValueError`` is raised.

Matching
--------
Because unsupervised predictions carry no class semantics, the IoU-based
metrics match predicted segments to ground-truth segments one-to-one with the
Hungarian algorithm (maximising the total IoU). With ``matching="image"`` the
matching is done independently per image (and annotation); with
``matching="dataset"`` predicted ids are treated as dataset-wide clusters and
a single matching is computed from the confusion matrix accumulated over all
images.

Scorers
-------
:func:`make_segmentation_scorer` and :func:`make_miou_scorer` build
picklable ``scorer(estimator, X, y)`` callables for
:class:`sklearn.model_selection.GridSearchCV` and friends.
"""

import inspect
import numbers

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

__all__ = [
    "hungarian_miou",
    "pixel_accuracy",
    "segmentation_covering",
    "probabilistic_rand_index",
    "variation_of_information",
    "foreground_iou",
    "corloc",
    "make_segmentation_scorer",
    "make_miou_scorer",
    "miou_scorer",
    "dataset_miou_scorer",
]

_MATCHING_MODES = ("image", "dataset")


# --------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------


def _check_label_map(arr, name):
    """Validate one label map and return it as a 2-D integer array.

    Parameters
    ----------
    arr : array-like
        Candidate label map.
    name : str
        Name used in error messages, e.g. ``"y_true[3]"``.

    Returns
    -------
    ndarray of shape (H, W)
        Integer array (booleans and integral floats are cast to int64).

    Raises
    ------
    ValueError
        If the map is not 2-D or holds non-integral / non-finite floats.
    TypeError
        If the dtype is neither integer, boolean nor floating point.
    """
    try:
        a = np.asarray(arr)
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"{name} must be a 2-D integer label map; got an object that "
            f"cannot be converted to an array ({exc})"
        ) from None
    if a.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D integer label map; got an array with "
            f"{a.ndim} dimension(s) and shape {a.shape}"
        )
    kind = a.dtype.kind
    if kind in "iu":
        return a
    if kind == "b":
        return a.astype(np.int64)
    if kind == "f":
        finite = np.isfinite(a)
        bad = ~finite
        bad[finite] = a[finite] != np.round(a[finite])
        if bad.any():
            example = a[bad].flat[0]
            raise ValueError(
                f"{name} must hold integer labels; got floating-point values "
                f"that are not integral (e.g. {example!r})"
            )
        return a.astype(np.int64)
    raise TypeError(
        f"{name} must be an integer label map; got an array of dtype "
        f"{a.dtype}"
    )


def _safe_ndim(obj):
    """Return ``np.ndim(obj)`` or -1 if ``obj`` cannot become an array."""
    if isinstance(obj, (str, bytes)):
        return -1
    try:
        return np.ndim(obj)
    except (ValueError, TypeError):
        return -1


def _is_single_nested_map(seq):
    """True if a list/tuple is itself one 2-D map written as nested rows.

    Rows must be non-empty Python lists/tuples of scalars (a list of 1-D
    NumPy arrays is treated as a list of maps and rejected later as not 2-D).
    """
    return len(seq) > 0 and all(
        isinstance(row, (list, tuple)) and len(row) > 0 and _safe_ndim(row) == 1
        for row in seq
    )


def _as_item_list(y, name):
    """Turn ``y`` into a list with one item per image."""
    if isinstance(y, np.ndarray):
        if y.ndim == 2:
            return [y]
        if y.ndim == 3:
            return list(y)
        raise ValueError(
            f"{name} must be a list of 2-D label maps (or a 2-D / 3-D array); "
            f"got an array with shape {y.shape}"
        )
    if isinstance(y, (str, bytes, dict)) or y is None:
        raise TypeError(
            f"{name} must be a list of 2-D label maps; got {type(y).__name__}"
        )
    try:
        items = list(y)
    except TypeError:
        raise TypeError(
            f"{name} must be a list of 2-D label maps; got {type(y).__name__}"
        ) from None
    if len(items) == 0:
        raise ValueError(f"{name} is empty; expected at least one label map")
    if _is_single_nested_map(items):
        return [np.asarray(items)]
    return items


def _check_inputs(y_true, y_pred, single_annotation=False):
    """Validate ``y_true``/``y_pred`` and pair them per image.

    Parameters
    ----------
    y_true : list or array-like
        Ground truth, see the module docstring.
    y_pred : list or array-like
        Predictions, see the module docstring.
    single_annotation : bool, default=False
        If True, raise when an image has more than one annotation.

    Returns
    -------
    list of tuple (list of ndarray, ndarray)
        For each image, its validated annotations and prediction.
    """
    true_items = _as_item_list(y_true, "y_true")
    pred_items = _as_item_list(y_pred, "y_pred")
    if len(true_items) != len(pred_items):
        raise ValueError(
            "y_true and y_pred must contain the same number of images; got "
            f"{len(true_items)} and {len(pred_items)}"
        )
    pairs = []
    for i, (t_item, p_item) in enumerate(zip(true_items, pred_items)):
        if isinstance(t_item, (list, tuple)) and not _is_single_nested_map(
            t_item
        ):
            if len(t_item) == 0:
                raise ValueError(
                    f"y_true[{i}] is an empty list; expected a 2-D label map "
                    "or a non-empty list of 2-D label maps (annotations)"
                )
            anns = [
                _check_label_map(a, f"y_true[{i}][{j}]")
                for j, a in enumerate(t_item)
            ]
            names = [f"y_true[{i}][{j}]" for j in range(len(anns))]
        else:
            anns = [_check_label_map(t_item, f"y_true[{i}]")]
            names = [f"y_true[{i}]"]
        pred = _check_label_map(p_item, f"y_pred[{i}]")
        if single_annotation and len(anns) > 1:
            raise ValueError(
                'matching="dataset" needs exactly one ground-truth map per '
                f"image; y_true[{i}] has {len(anns)} annotations. Use "
                'matching="image" for multi-annotator ground truth.'
            )
        for ann, nm in zip(anns, names):
            if ann.shape != pred.shape:
                raise ValueError(
                    f"Shape mismatch at image index {i}: {nm} has shape "
                    f"{ann.shape} but y_pred[{i}] has shape {pred.shape}"
                )
        pairs.append((anns, pred))
    return pairs


def _check_matching(matching):
    if matching not in _MATCHING_MODES:
        raise ValueError(
            f'matching must be "image" or "dataset"; got {matching!r}'
        )


def _check_ignore_index(ignore_index):
    if ignore_index is None:
        return None
    if isinstance(ignore_index, (bool, np.bool_)) or not isinstance(
        ignore_index, numbers.Integral
    ):
        raise TypeError(
            f"ignore_index must be an integer or None; got {ignore_index!r}"
        )
    return int(ignore_index)


# --------------------------------------------------------------------------
# Core computations
# --------------------------------------------------------------------------


def _confusion(gt, pred, ignore_index):
    """Confusion matrix between two label maps over non-ignored pixels.

    Parameters
    ----------
    gt, pred : ndarray of shape (H, W)
        Integer label maps of equal shape.
    ignore_index : int or None
        Ground-truth value whose pixels are excluded.

    Returns
    -------
    conf : ndarray of shape (n_gt, n_pred), dtype int64
        ``conf[i, j]`` is the number of pixels with ``gt == gt_ids[i]`` and
        ``pred == pred_ids[j]``.
    gt_ids : ndarray of shape (n_gt,)
        Sorted ground-truth ids present among non-ignored pixels.
    pred_ids : ndarray of shape (n_pred,)
        Sorted predicted ids present among non-ignored pixels.
    """
    g = gt.ravel()
    p = pred.ravel()
    if ignore_index is not None:
        keep = g != ignore_index
        g = g[keep]
        p = p[keep]
    gt_ids, g_inv = np.unique(g, return_inverse=True)
    pred_ids, p_inv = np.unique(p, return_inverse=True)
    n_gt, n_pred = len(gt_ids), len(pred_ids)
    flat = g_inv.ravel().astype(np.int64) * n_pred + p_inv.ravel()
    conf = np.bincount(flat, minlength=n_gt * n_pred).reshape(n_gt, n_pred)
    return conf.astype(np.int64, copy=False), gt_ids, pred_ids


def _dataset_confusion(pairs, ignore_index):
    """Accumulate per-image confusion matrices into one dataset-wide matrix."""
    parts = [_confusion(anns[0], pred, ignore_index) for anns, pred in pairs]
    gt_ids = np.unique(np.concatenate([g for _, g, _ in parts]))
    pred_ids = np.unique(np.concatenate([p for _, _, p in parts]))
    total = np.zeros((len(gt_ids), len(pred_ids)), dtype=np.int64)
    for conf, g, p in parts:
        if conf.size:
            rows = np.searchsorted(gt_ids, g)
            cols = np.searchsorted(pred_ids, p)
            total[np.ix_(rows, cols)] += conf
    return total, gt_ids, pred_ids


def _iou_matrix(conf):
    """IoU between every GT segment (row) and predicted segment (column)."""
    inter = conf.astype(np.float64)
    union = conf.sum(axis=1)[:, None] + conf.sum(axis=0)[None, :] - conf
    return np.divide(
        inter, union, out=np.zeros_like(inter), where=union > 0
    )


def _hungarian_match(conf):
    """One-to-one matching of GT rows to predicted columns maximising IoU.

    Columns are first put into a canonical order that depends only on their
    content, so the result (including tie-breaking) is invariant to how
    predicted segments are numbered.

    Parameters
    ----------
    conf : ndarray of shape (n_gt, n_pred)
        Confusion matrix; rectangular matrices are allowed.

    Returns
    -------
    rows : ndarray of int
        Matched row indices.
    cols : ndarray of int
        Matched column indices (into the original column order).
    iou : ndarray of shape (n_gt, n_pred)
        IoU matrix in the original column order.
    """
    iou = _iou_matrix(conf)
    if conf.shape[0] == 0 or conf.shape[1] == 0:
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty, iou
    order = np.lexsort(conf[::-1])  # row 0 is the primary sort key
    rows, cols_sorted = linear_sum_assignment(iou[:, order], maximize=True)
    return rows, order[cols_sorted], iou


def _matched_iou_per_gt(conf):
    """IoU of each GT segment with its matched prediction (0 if unmatched)."""
    rows, cols, iou = _hungarian_match(conf)
    per_gt = np.zeros(conf.shape[0])
    per_gt[rows] = iou[rows, cols]
    return per_gt, rows, cols


def _aggregate(pairs, per_annotation):
    """Average ``per_annotation(gt, pred)`` over annotations, then images.

    ``per_annotation`` returns NaN for annotations without valid pixels; such
    annotations (and images with only such annotations) are skipped.

    Returns
    -------
    score : float
    per_image : ndarray of shape (n_images,)
        Per-image scores (NaN for skipped images).
    """
    per_image = np.full(len(pairs), np.nan)
    for i, (anns, pred) in enumerate(pairs):
        vals = [per_annotation(ann, pred) for ann in anns]
        vals = [v for v in vals if not np.isnan(v)]
        if vals:
            per_image[i] = float(np.mean(vals))
    valid = ~np.isnan(per_image)
    if not valid.any():
        raise ValueError(
            "y_true contains no pixel that is not equal to ignore_index; the "
            "metric is undefined"
        )
    return float(np.mean(per_image[valid])), per_image


def _aggregate_confusions(pairs, ignore_index, measure):
    """:func:`_aggregate` of ``measure(confusion, gt, pred)`` per annotation, NaN for an
    annotation without valid pixels; the one loop of every per-annotation measure."""
    def per_annotation(gt, pred):
        conf, _, _ = _confusion(gt, pred, ignore_index)
        return np.nan if conf.shape[0] == 0 else measure(conf, gt, pred)

    return _aggregate(pairs, per_annotation)


# --------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------


def hungarian_miou(
    y_true, y_pred, *, matching="image", ignore_index=255, return_details=False
):
    """Mean IoU after Hungarian matching of predicted to GT segments.

    Parameters
    ----------
    y_true : list of (2-D array or list of 2-D arrays), or 2-D array
        Ground-truth label maps, one item per image; an item may be a
        list/tuple of several annotations of the same image.
    y_pred : list of 2-D arrays, or 2-D array
        Predicted label maps (arbitrary integer ids).
    matching : {"image", "dataset"}, default="image"
        ``"image"``: per image (and annotation), match GT segments to
        predicted segments one-to-one maximising IoU; unmatched GT segments
        score 0; average IoU over the GT segments, then over annotations,
        then over images. ``"dataset"``: accumulate one confusion matrix over
        all images (predicted ids are dataset-wide clusters, GT classes are
        the union of GT ids), match once, and average the IoU over GT
        classes; unmatched GT classes score 0. The number of predicted
        clusters may differ from the number of GT classes. Requires one
        ground-truth map per image.
    ignore_index : int or None, default=255
        Ground-truth value of pixels excluded from the evaluation.
    return_details : bool, default=False
        If True, also return a dict of details.

    Returns
    -------
    score : float
        Mean IoU in [0, 1].
    details : dict
        Only if ``return_details``. For ``matching="image"``:
        ``"per_image"`` (ndarray of per-image scores, NaN for skipped
        images). For ``matching="dataset"``: ``"per_class"`` (dict GT class
        -> IoU), ``"assignment"`` (dict GT class -> predicted cluster, only
        pairs with non-zero overlap), ``"confusion"`` (ndarray),
        ``"gt_classes"`` and ``"pred_classes"`` (ndarrays labelling the rows
        and columns of ``"confusion"``).

    Raises
    ------
    ValueError
        On invalid inputs, on multi-annotator input with
        ``matching="dataset"``, or if every pixel is ignored.

    Examples
    --------
    >>> import numpy as np
    >>> gt = np.array([[0, 0, 1, 1]])
    >>> pred = np.array([[7, 7, 3, 3]])
    >>> hungarian_miou([gt], [pred])
    1.0
    """
    _check_matching(matching)
    ignore_index = _check_ignore_index(ignore_index)
    pairs = _check_inputs(y_true, y_pred, single_annotation=matching == "dataset")

    if matching == "image":

        score, per_image = _aggregate_confusions(
            pairs, ignore_index, lambda conf, *_: float(_matched_iou_per_gt(conf)[0].mean()))
        return (score, {"per_image": per_image}) if return_details else score

    conf, gt_ids, pred_ids = _dataset_confusion(pairs, ignore_index)
    if conf.shape[0] == 0:
        raise ValueError(
            "y_true contains no pixel that is not equal to ignore_index; the "
            "metric is undefined"
        )
    per_gt, rows, cols = _matched_iou_per_gt(conf)
    score = float(per_gt.mean())
    if not return_details:
        return score
    details = {
        "per_class": {int(c): float(v) for c, v in zip(gt_ids, per_gt)},
        "assignment": {
            int(gt_ids[r]): int(pred_ids[c])
            for r, c in zip(rows, cols)
            if conf[r, c] > 0
        },
        "confusion": conf,
        "gt_classes": gt_ids,
        "pred_classes": pred_ids,
    }
    return score, details


def pixel_accuracy(y_true, y_pred, *, matching="image", ignore_index=255):
    """Pixel accuracy after Hungarian matching of predictions to GT.

    Predicted segments are mapped to GT segments with the same one-to-one
    IoU-maximising matching as :func:`hungarian_miou`; pixels of unmatched
    predicted segments count as wrong.

    Parameters
    ----------
    y_true : list of (2-D array or list of 2-D arrays), or 2-D array
        Ground-truth label maps (see :func:`hungarian_miou`).
    y_pred : list of 2-D arrays, or 2-D array
        Predicted label maps.
    matching : {"image", "dataset"}, default="image"
        ``"image"``: match and score per image (and annotation), then average
        over annotations and images. ``"dataset"``: one matching from the
        dataset-wide confusion matrix; accuracy over all non-ignored pixels
        of the dataset.
    ignore_index : int or None, default=255
        Ground-truth value of pixels excluded from the evaluation.

    Returns
    -------
    float
        Fraction of correctly labelled non-ignored pixels, in [0, 1].

    Raises
    ------
    ValueError
        On invalid inputs, on multi-annotator input with
        ``matching="dataset"``, or if every pixel is ignored.

    Examples
    --------
    >>> import numpy as np
    >>> pixel_accuracy([np.array([[0, 0, 1, 1]])], [np.array([[5, 5, 5, 7]])])
    0.75
    """
    _check_matching(matching)
    ignore_index = _check_ignore_index(ignore_index)
    pairs = _check_inputs(y_true, y_pred, single_annotation=matching == "dataset")

    def _acc(conf):
        rows, cols, _ = _hungarian_match(conf)
        return float(conf[rows, cols].sum() / conf.sum())

    if matching == "image":

        return _aggregate_confusions(pairs, ignore_index, lambda conf, *_: _acc(conf))[0]

    conf, _, _ = _dataset_confusion(pairs, ignore_index)
    if conf.shape[0] == 0:
        raise ValueError(
            "y_true contains no pixel that is not equal to ignore_index; the "
            "metric is undefined"
        )
    return _acc(conf)


def segmentation_covering(y_true, y_pred, ignore_index=255):
    """Segmentation covering of the ground truth by the prediction (BSDS).

    ``C(S_gt -> S_pred) = (1 / N) * sum_{R in S_gt} |R| * max_{R' in S_pred}
    IoU(R, R')``, with ``N`` the number of non-ignored pixels. Computed per
    annotation, averaged over the annotations of an image, then over images.

    Parameters
    ----------
    y_true : list of (2-D array or list of 2-D arrays), or 2-D array
        Ground-truth label maps (see :func:`hungarian_miou`).
    y_pred : list of 2-D arrays, or 2-D array
        Predicted label maps.
    ignore_index : int or None, default=255
        Ground-truth value of pixels excluded from the evaluation.

    Returns
    -------
    float
        Covering in [0, 1].

    Raises
    ------
    ValueError
        On invalid inputs or if every pixel is ignored.

    Examples
    --------
    >>> import numpy as np
    >>> segmentation_covering([np.array([[0, 1, 2, 2]])],
    ...                       [np.array([[0, 0, 0, 0]])])
    0.375
    """
    ignore_index = _check_ignore_index(ignore_index)
    pairs = _check_inputs(y_true, y_pred)

    def _covering(conf, *_):
        sizes = conf.sum(axis=1)
        best = _iou_matrix(conf).max(axis=1)
        return float((sizes * best).sum() / sizes.sum())

    return _aggregate_confusions(pairs, ignore_index, _covering)[0]


def _rand_index(conf):
    """Rand index from a contingency table: the fraction of pixel pairs on which two
    maps agree (both together or both apart), in O(k * l) for a k x l table."""
    n = float(conf.sum())
    if n < 2:  # no pair of pixels to disagree on
        return 1.0
    conf = conf.astype(np.float64)
    apart_in_one = (np.square(conf.sum(axis=1)).sum() + np.square(conf.sum(axis=0)).sum()
                    ) / 2 - np.square(conf).sum()
    return float(1.0 - apart_in_one / (n * (n - 1) / 2))


def probabilistic_rand_index(y_true, y_pred, ignore_index=255):
    """Probabilistic Rand index (PRI) of the prediction against the annotators (BSDS).

    The Rand index of two label maps is the fraction of pixel pairs on which they
    agree: both maps put the two pixels in the same segment, or both in different
    ones. The probabilistic Rand index of Unnikrishnan et al. weights each pair by
    the fraction of annotators that keep it together, which equals the mean of the
    Rand indices against each annotator: computed per annotation, averaged over the
    annotations of an image, then over images, as in the BSDS500 benchmark
    (Arbeláez et al., TPAMI 2011).

    Parameters
    ----------
    y_true : list of (2-D array or list of 2-D arrays), or 2-D array
        Ground-truth label maps (see :func:`hungarian_miou`).
    y_pred : list of 2-D arrays, or 2-D array
        Predicted label maps.
    ignore_index : int or None, default=255
        Ground-truth value of pixels excluded from the evaluation.

    Returns
    -------
    float
        PRI in [0, 1]; 1 when the prediction is the same partition as every
        annotation (with any label ids). An annotation with a single pixel scores 1.

    Raises
    ------
    ValueError
        On invalid inputs or if every pixel is ignored.

    See Also
    --------
    variation_of_information : the other BSDS region measure.

    Examples
    --------
    >>> import numpy as np
    >>> probabilistic_rand_index([np.array([[0, 0, 1, 1]])],
    ...                          [np.array([[5, 5, 5, 7]])])
    0.5
    """
    ignore_index = _check_ignore_index(ignore_index)
    pairs = _check_inputs(y_true, y_pred)

    return _aggregate_confusions(pairs, ignore_index, lambda conf, *_: _rand_index(conf))[0]


def variation_of_information(y_true, y_pred, ignore_index=255):
    """Variation of information (VoI) between the prediction and the annotators (BSDS).

    ``VoI(X, Y) = H(X | Y) + H(Y | X)`` in bits, from the joint distribution of the
    labels of the two maps over the non-ignored pixels (Meilă, 2007): a distance
    between partitions, 0 for the same partition, larger for worse ones, counting
    under-segmentation (``H(X | Y)``) and over-segmentation (``H(Y | X)``) alike.
    Computed with :func:`skimage.metrics.variation_of_information` per annotation,
    averaged over the annotations of an image, then over images, as in the BSDS500
    benchmark (Arbeláez et al., TPAMI 2011).

    Parameters
    ----------
    y_true : list of (2-D array or list of 2-D arrays), or 2-D array
        Ground-truth label maps (see :func:`hungarian_miou`).
    y_pred : list of 2-D arrays, or 2-D array
        Predicted label maps.
    ignore_index : int or None, default=255
        Ground-truth value of pixels excluded from the evaluation.

    Returns
    -------
    float
        VoI >= 0, in bits; lower is better (a scorer needs its negative).

    Raises
    ------
    ValueError
        On invalid inputs or if every pixel is ignored.

    See Also
    --------
    probabilistic_rand_index : the other BSDS region measure.

    Examples
    --------
    >>> import numpy as np
    >>> variation_of_information([np.array([[0, 0, 1, 1]])],
    ...                          [np.array([[0, 0, 0, 0]])])
    1.0
    """
    from scipy import sparse
    from skimage.metrics import variation_of_information as conditional_entropies

    ignore_index = _check_ignore_index(ignore_index)
    pairs = _check_inputs(y_true, y_pred)

    def _voi(conf, gt, pred):
        # scikit-image computes from a normalised table (ours skips ignored pixels)
        table = sparse.csr_array(conf / conf.sum())
        return float(conditional_entropies(gt, pred, table=table).sum())

    return _aggregate_confusions(pairs, ignore_index, _voi)[0]


def foreground_iou(y_true, y_pred, ignore_index=255):
    """IoU of the binary foreground (non-zero labels), averaged over images.

    Parameters
    ----------
    y_true : list of (2-D array or list of 2-D arrays), or 2-D array
        Ground-truth maps; any non-zero value other than ``ignore_index`` is
        foreground.
    y_pred : list of 2-D arrays, or 2-D array
        Predicted maps; any non-zero value is foreground.
    ignore_index : int or None, default=255
        Ground-truth value of pixels excluded from the evaluation.

    Returns
    -------
    float
        Mean foreground IoU in [0, 1]. An image where both foregrounds are
        empty (over non-ignored pixels) scores 1.0.

    Raises
    ------
    ValueError
        On invalid inputs or if every pixel is ignored.

    Examples
    --------
    >>> import numpy as np
    >>> foreground_iou([np.array([[0, 1, 1, 0]])], [np.array([[0, 0, 3, 3]])])
    0.3333333333333333
    """
    ignore_index = _check_ignore_index(ignore_index)
    pairs = _check_inputs(y_true, y_pred)

    def _one(gt, pred):
        valid = np.ones(gt.shape, bool) if ignore_index is None else gt != ignore_index
        if not valid.any():
            return np.nan
        g = (gt != 0) & valid
        p = (pred != 0) & valid
        union = np.count_nonzero(g | p)
        if union == 0:
            return 1.0
        return np.count_nonzero(g & p) / union

    return _aggregate(pairs, _one)[0]


_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def _component_boxes(mask):
    """Bounding boxes ``(r0, c0, r1, c1)`` (exclusive ends) and sizes of the
    8-connected components of a boolean mask."""
    labels, n = ndimage.label(mask, structure=_EIGHT_CONNECTED)
    if n == 0:
        return np.zeros((0, 4), dtype=np.int64), np.zeros(0, dtype=np.int64)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    boxes = np.array(
        [[s[0].start, s[1].start, s[0].stop, s[1].stop]
         for s in ndimage.find_objects(labels)],
        dtype=np.int64,
    )
    return boxes, sizes


def _box_iou(box, boxes):
    """IoU between one box and an array of boxes (exclusive end coords)."""
    r0 = np.maximum(box[0], boxes[:, 0])
    c0 = np.maximum(box[1], boxes[:, 1])
    r1 = np.minimum(box[2], boxes[:, 2])
    c1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(r1 - r0, 0, None) * np.clip(c1 - c0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / (area + areas - inter)


def corloc(y_true, y_pred, threshold=0.5, *, ignore_index=255):
    """Correct localisation (CorLoc) rate for single-object discovery.

    Per image, the predicted box is the bounding box of the largest
    8-connected component of the prediction foreground (non-zero pixels; ties
    go to the component found first in raster order). The GT boxes are the
    bounding boxes of the 8-connected components of the GT foreground
    (non-zero pixels not equal to ``ignore_index``), pooled over all
    annotations of the image. An image is a hit if the predicted box has
    IoU >= ``threshold`` with any GT box. Images with an empty prediction
    (or without GT foreground) are misses.

    Parameters
    ----------
    y_true : list of (2-D array or list of 2-D arrays), or 2-D array
        Ground-truth maps.
    y_pred : list of 2-D arrays, or 2-D array
        Predicted maps.
    threshold : float, default=0.5
        Box IoU needed for a hit, in [0, 1].
    ignore_index : int or None, default=255
        GT value treated as background (not part of any GT object).

    Returns
    -------
    float
        Fraction of images that are hits, in [0, 1].

    Raises
    ------
    ValueError
        On invalid inputs or a threshold outside [0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> gt = np.zeros((4, 4), int); gt[1:3, 1:3] = 1
    >>> corloc([gt], [gt])
    1.0
    """
    if (
        isinstance(threshold, (bool, np.bool_))
        or not isinstance(threshold, numbers.Real)
        or not 0.0 <= threshold <= 1.0
    ):
        raise ValueError(f"threshold must be a number in [0, 1]; got {threshold!r}")
    ignore_index = _check_ignore_index(ignore_index)
    pairs = _check_inputs(y_true, y_pred)
    hits = 0
    for anns, pred in pairs:
        pred_boxes, pred_sizes = _component_boxes(pred != 0)
        if len(pred_sizes) == 0:
            continue
        box = pred_boxes[int(np.argmax(pred_sizes))]
        gt_boxes = []
        for ann in anns:
            fg = ann != 0
            if ignore_index is not None:
                fg &= ann != ignore_index
            gt_boxes.append(_component_boxes(fg)[0])
        gt_boxes = np.concatenate(gt_boxes)
        if len(gt_boxes) and np.any(_box_iou(box, gt_boxes) >= threshold):
            hits += 1
    return hits / len(pairs)


# --------------------------------------------------------------------------
# Scorers
# --------------------------------------------------------------------------

_METRICS = {
    "hungarian_miou": hungarian_miou,
    "pixel_accuracy": pixel_accuracy,
    "segmentation_covering": segmentation_covering,
    "probabilistic_rand_index": probabilistic_rand_index,
    "foreground_iou": foreground_iou,
    "corloc": corloc,
}


class _SegmentationScorer:
    """Picklable ``scorer(estimator, X, y)`` wrapping a segmentation metric.

    Parameters
    ----------
    metric : callable
        ``metric(y_true, y_pred, **kwargs) -> float``; greater is better.
    kwargs : dict
        Keyword arguments forwarded to ``metric``.
    """

    def __init__(self, metric, kwargs):
        self.metric = metric
        self.kwargs = dict(kwargs)

    def __call__(self, estimator, X, y):
        """Score ``estimator.predict(X)`` against ``y``.

        Parameters
        ----------
        estimator : object
            Fitted estimator whose ``predict(X)`` returns label maps.
        X : list
            Input images.
        y : list
            Ground-truth label maps (see :func:`hungarian_miou`).

        Returns
        -------
        float
            The metric value (greater is better).
        """
        y_pred = estimator.predict(X)
        return float(self.metric(y, y_pred, **self.kwargs))

    def __repr__(self):
        name = getattr(self.metric, "__name__", repr(self.metric))
        args = "".join(f", {k}={v!r}" for k, v in self.kwargs.items())
        return f"make_segmentation_scorer({name}{args})"


def make_segmentation_scorer(metric, **kwargs):
    """Make a scikit-learn scorer from a segmentation metric.

    Parameters
    ----------
    metric : callable or str
        One of the metric functions of this module (or its name, e.g.
        ``"pixel_accuracy"``), or any callable
        ``metric(y_true, y_pred, **kwargs) -> float`` where greater is
        better.
    **kwargs
        Keyword arguments forwarded to ``metric`` (e.g. ``matching`` or
        ``ignore_index``). ``return_details`` is not allowed.

    Returns
    -------
    callable
        Picklable ``scorer(estimator, X, y) -> float`` usable as
        ``scoring=`` in :class:`~sklearn.model_selection.GridSearchCV`. It
        calls ``estimator.predict(X)`` and evaluates the metric against
        ``y``.

    Raises
    ------
    ValueError
        If ``metric`` is an unknown name or ``return_details`` is given.
    TypeError
        If ``metric`` is not callable or does not accept ``kwargs``.

    Examples
    --------
    >>> scorer = make_segmentation_scorer(pixel_accuracy, matching="dataset")
    >>> scorer
    make_segmentation_scorer(pixel_accuracy, matching='dataset')
    """
    if isinstance(metric, str):
        if metric not in _METRICS:
            raise ValueError(
                f"metric must be a callable or one of {sorted(_METRICS)}; "
                f"got {metric!r}"
            )
        metric = _METRICS[metric]
    if not callable(metric):
        raise TypeError(
            f"metric must be a callable or a metric name; got "
            f"{type(metric).__name__}"
        )
    if "return_details" in kwargs:
        raise ValueError(
            "return_details cannot be used in a scorer; a scorer must return "
            "a single float"
        )
    try:
        sig = inspect.signature(metric)
    except (TypeError, ValueError):
        sig = None
    if sig is not None:
        try:
            sig.bind(None, None, **kwargs)
        except TypeError as exc:
            name = getattr(metric, "__name__", repr(metric))
            raise TypeError(
                f"Invalid keyword arguments for metric {name}: {exc}"
            ) from None
    if "matching" in kwargs:
        _check_matching(kwargs["matching"])
    return _SegmentationScorer(metric, kwargs)


def make_miou_scorer(matching="image", ignore_index=255):
    """Make a scikit-learn scorer computing :func:`hungarian_miou`.

    Parameters
    ----------
    matching : {"image", "dataset"}, default="image"
        Matching mode, see :func:`hungarian_miou`.
    ignore_index : int or None, default=255
        Ground-truth value of pixels excluded from the evaluation.

    Returns
    -------
    callable
        Picklable ``scorer(estimator, X, y) -> float`` (greater is better).

    Examples
    --------
    >>> make_miou_scorer(matching="dataset")
    make_segmentation_scorer(hungarian_miou, matching='dataset', ignore_index=255)
    """
    return make_segmentation_scorer(
        hungarian_miou, matching=matching, ignore_index=ignore_index
    )


#: Scorer for per-image Hungarian mIoU (``make_miou_scorer()``).
miou_scorer = make_miou_scorer()

#: Scorer for dataset-level Hungarian mIoU
#: (``make_miou_scorer(matching="dataset")``).
dataset_miou_scorer = make_miou_scorer(matching="dataset")
