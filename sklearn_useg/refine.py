"""From patch-grid outputs to pixel labels: upsampling, relabelling, edge-aware
refinement (superpixel voting, DenseCRF) and foreground rules (border, CLS attention)."""

import warnings

import numpy as np

CRF_DEFAULTS = dict(n_iter=20, gt_prob=0.8, sxy_gaussian=4, compat_gaussian=4,
                    sxy_bilateral=80, srgb=13, compat_bilateral=10)
# Image diagonal (pixels) at which CRF_DEFAULTS' kernel widths apply: CLASP's settings,
# tuned on ~640 x 480 images; other sizes scale both widths by diagonal / this.
CRF_REFERENCE_DIAGONAL = 800.0
SUPERPIXEL_DEFAULTS = dict(scale=100, sigma=0.8, min_area=1 / 3000, max_side=640)
REFINEMENTS = ("superpixels", "crf")


def relabel_consecutive(labels):
    """Map the values of ``labels`` to ``0..k-1`` (in increasing order), as int32."""
    labels = np.asarray(labels)
    if labels.size and np.issubdtype(labels.dtype, np.integer) and labels.min() >= 0 \
            and labels.max() <= 4 * labels.size:
        # small non-negative ids (the usual case): a lookup table, no sort of the pixels
        present = np.zeros(int(labels.max()) + 1, dtype=bool)
        present[labels.ravel()] = True
        lookup = (np.cumsum(present) - 1).astype(np.int32)
        return lookup[labels]
    _, inverse = np.unique(labels, return_inverse=True)
    return inverse.reshape(labels.shape).astype(np.int32)


def upsample_labels(labels, shape):
    """Nearest-neighbour upsampling of a grid label map to ``shape`` ``(H, W)``.

    Grid cell ``i`` of ``h`` covers pixel rows ``[i H / h, (i + 1) H / h)``, so each
    cell is centred on its patch when the grid tiles the image.
    """
    labels = np.asarray(labels)
    h, w = labels.shape
    H, W = shape
    rows = np.minimum((np.arange(H) + 0.5) * h / H, h - 1).astype(np.intp)
    cols = np.minimum((np.arange(W) + 0.5) * w / W, w - 1).astype(np.intp)
    return labels[rows[:, None], cols[None, :]]


def upsample_argmax(scores, shape, *, max_block_bytes=2**24):
    """Argmax over classes of the bilinear upsampling of ``scores`` to ``shape``.

    Equal to ``argmax`` of ``torch.nn.functional.interpolate(..., mode="bilinear",
    align_corners=False)`` (the cell-centred convention of :func:`upsample_labels`),
    computed in bands of rows so the ``(k, H, W)`` upsampled scores never exist at
    once: memory stays within a few ``max_block_bytes`` for any image size.

    Parameters
    ----------
    scores : ndarray of shape (k, h, w)
        Per-class scores on the grid.
    shape : tuple of int
        Output ``(H, W)``.
    max_block_bytes : int, default=2**24
        Size of the band of upsampled scores held at once.

    Returns
    -------
    ndarray of shape (H, W), int32
    """
    import torch
    import torch.nn.functional as F

    scores = torch.as_tensor(np.asarray(scores, dtype=np.float32))
    k, h, _ = scores.shape
    H, W = (int(side) for side in shape)
    # columns first (rows unchanged at scale 1), then rows band by band
    cols = F.interpolate(scores[None], size=(h, W), mode="bilinear", align_corners=False)[0]
    source = ((torch.arange(H, dtype=torch.float64) + 0.5) * (h / H) - 0.5).clamp(min=0)
    top = source.floor().long().clamp(max=h - 1)
    bottom = (top + 1).clamp(max=h - 1)
    weight = (source - top).float()[None, :, None]
    out = np.empty((H, W), dtype=np.int32)
    rows_per_block = max(1, max_block_bytes // (4 * k * W))
    for start in range(0, H, rows_per_block):
        band = slice(start, start + rows_per_block)
        up = cols[:, top[band]] * (1 - weight[:, band]) + cols[:, bottom[band]] * weight[:, band]
        out[band] = up.argmax(dim=0).numpy()
    return out


def superpixels(image, *, scale=SUPERPIXEL_DEFAULTS["scale"],
                sigma=SUPERPIXEL_DEFAULTS["sigma"], min_area=SUPERPIXEL_DEFAULTS["min_area"],
                max_side=SUPERPIXEL_DEFAULTS["max_side"], upsample=True):
    """Felzenszwalb–Huttenlocher superpixels of an RGB image, at a bounded cost.

    :func:`skimage.segmentation.felzenszwalb` on the image, downscaled first so that
    its longer side is at most ``max_side`` (the map is then upsampled back with
    nearest neighbours, unless ``upsample=False``): the cost is bounded for any photo
    size. The defaults are :data:`SUPERPIXEL_DEFAULTS`, the refinement's.

    Parameters
    ----------
    image : ndarray of shape (H, W, 3), uint8
        The RGB image.
    scale, sigma : float
        Felzenszwalb's ``scale`` (higher: larger regions) and pre-smoothing.
    min_area : float, default=1/3000
        Smallest superpixel, as a fraction of the image's pixels (felzenszwalb's
        ``min_size``, so the same setting suits every image size).
    max_side : int or None, default=640
        Longer side of the image the superpixels are computed on (None: full size).
    upsample : bool, default=True
        Return the map at the image's size; False returns it at the working size
        (at most ``max_side`` a side), which bounds the memory of what uses it.

    Returns
    -------
    ndarray of shape (H, W), int64
        Superpixel ids ``0..s-1`` (at the working size with ``upsample=False``).
    """
    from skimage import segmentation

    image = np.asarray(image)
    H, W = image.shape[:2]
    small = image
    if max_side is not None and max(H, W) > max_side:
        from PIL import Image

        factor = max_side / max(H, W)
        size = (max(1, round(W * factor)), max(1, round(H * factor)))
        small = np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize(
            size, Image.BILINEAR))
    min_size = max(1, int(round(min_area * small.shape[0] * small.shape[1])))
    regions = segmentation.felzenszwalb(small, scale=scale, sigma=sigma,
                                        min_size=min_size).astype(np.int64)
    return upsample_labels(regions, (H, W)) if upsample else regions


def vote_superpixels(labels, regions):
    """Give each superpixel the label most of its pixels have.

    Segment borders move onto the image's edges (the superpixels'), at the cost of a
    ``bincount``. No segment is lost: a label that would win no superpixel keeps its
    own pixels (which takes pixels from no other label, so every input label stays).

    Parameters
    ----------
    labels : ndarray of shape (H, W), int
        Non-negative labels (e.g. upsampled from the patch grid).
    regions : ndarray of shape (H, W), int
        Superpixel ids ``0..s-1`` (:func:`superpixels`).

    Returns
    -------
    ndarray of shape (H, W), int32
        The same label values, constant on each superpixel (but for rescued labels).
    """
    labels = np.asarray(labels)
    regions = np.asarray(regions)
    if labels.shape != regions.shape:
        raise ValueError(f"labels and superpixels differ in shape: {labels.shape} vs "
                         f"{regions.shape}.")
    values, flat = np.unique(labels, return_inverse=True)
    flat = flat.ravel()
    k = len(values)
    s = int(regions.max()) + 1
    counts = np.bincount(regions.ravel().astype(np.int64) * k + flat, minlength=s * k)
    winner = counts.reshape(s, k).argmax(axis=1)
    out = winner[regions.ravel()]
    lost = np.setdiff1d(np.arange(k), out)
    if len(lost):
        rescue = np.isin(flat, lost)
        out[rescue] = flat[rescue]
    return values[out].reshape(labels.shape).astype(np.int32)


def refine_labels(image, labels, method, params=None, *, keep_labels=False):
    """Snap pixel labels to the image's edges with ``method``.

    Parameters
    ----------
    image : ndarray of shape (H, W, 3), uint8
        The RGB image.
    labels : ndarray of shape (H, W), int
        Labels to refine.
    method : {"superpixels", "crf"}
        :func:`vote_superpixels` on :func:`superpixels`, or :func:`dense_crf`. Images
        larger than the superpixels' ``max_side`` are voted on at that size (labels
        sampled with nearest neighbours) and the result is upsampled back.
    params : dict, optional
        Overrides of :data:`SUPERPIXEL_DEFAULTS` or :data:`CRF_DEFAULTS`.
    keep_labels : bool, default=False
        Keep the input's label values (dataset-wide class ids).

    Returns
    -------
    ndarray of shape (H, W), int32
    """
    check_refine_params(method, params)
    if method == "crf":
        return dense_crf(image, labels, keep_labels=keep_labels, **(params or {}))
    # vote at the superpixels' working size: memory stays bounded for large photos
    regions = superpixels(image, upsample=False, **(params or {}))
    labels = np.asarray(labels)
    if regions.shape == labels.shape:
        return vote_superpixels(labels, regions)
    return upsample_labels(vote_superpixels(upsample_labels(labels, regions.shape), regions),
                           labels.shape)


def check_refine_params(method, params):
    """Raise ``ValueError`` for an unknown refinement or unknown parameter names."""
    if method not in REFINEMENTS:
        raise ValueError(f"refine must be one of {REFINEMENTS} or None, got {method!r}.")
    defaults = SUPERPIXEL_DEFAULTS if method == "superpixels" else CRF_DEFAULTS
    unknown = sorted(set(params or {}) - set(defaults))
    if unknown:
        raise ValueError(f"refine_params has unknown keys {unknown} for refine={method!r};"
                         f" expected a subset of {sorted(defaults)}.")


def dense_crf(image, labels, *, n_iter=20, gt_prob=0.8, sxy_gaussian=4, compat_gaussian=4,
              sxy_bilateral=80, srgb=13, compat_bilateral=10, keep_labels=False):
    """Refine a pixel label map with a fully connected CRF (Krähenbühl & Koltun).

    The unary comes from the labels themselves (probability ``gt_prob`` on the given
    label); a Gaussian (smoothness) and a bilateral (appearance) kernel follow. The
    kernel widths ``sxy_*`` are given for an image of diagonal
    :data:`CRF_REFERENCE_DIAGONAL` (800 px, e.g. 640 x 480) and scale with the
    image's diagonal, so the same settings smooth alike at every size. Needs the
    ``crf`` extra (``pip install "sklearn-useg[crf]"``).

    Parameters
    ----------
    image : ndarray of shape (H, W, 3), uint8
        The RGB image.
    labels : ndarray of shape (H, W), int
        Labels ``0..k-1``.
    n_iter, gt_prob, sxy_gaussian, compat_gaussian, sxy_bilateral, srgb, compat_bilateral
        CRF settings (defaults: CLASP's).
    keep_labels : bool, default=False
        Return the input's own label values (dataset-wide class ids stay valid)
        instead of relabelling the output to ``0..k-1``.

    Returns
    -------
    ndarray of shape (H, W), int32
        Refined labels, consecutive from 0 (the input's values if ``keep_labels``).
    """
    try:
        import pydensecrf.densecrf as dcrf
        from pydensecrf.utils import unary_from_labels
    except ImportError as exc:
        raise ImportError('DenseCRF refinement needs pydensecrf: pip install '
                          '"sklearn-useg[crf]" (installs pydensecrf2).') from exc
    values = np.unique(labels).astype(np.int32) if keep_labels else None
    labels = relabel_consecutive(labels)
    n_labels = int(labels.max()) + 1
    if n_labels < 2:
        return values[labels] if keep_labels else labels
    H, W = labels.shape
    size = np.hypot(H, W) / CRF_REFERENCE_DIAGONAL
    crf = dcrf.DenseCRF2D(W, H, n_labels)
    unary = unary_from_labels(labels, n_labels, gt_prob=gt_prob, zero_unsure=False)
    crf.setUnaryEnergy(np.ascontiguousarray(unary))
    crf.addPairwiseGaussian(sxy=sxy_gaussian * size, compat=compat_gaussian)
    crf.addPairwiseBilateral(sxy=sxy_bilateral * size, srgb=srgb,
                             # pydensecrf's typed memoryview refuses read-only buffers
                             rgbim=np.require(image, np.uint8, ["C", "W"]),
                             compat=compat_bilateral)
    q = np.asarray(crf.inference(n_iter)).reshape(n_labels, H, W)
    out = q.argmax(axis=0)
    return values[out] if keep_labels else relabel_consecutive(out)


def border_foreground(labels):
    """The border rule's foreground: every segment but the one covering most of the
    image border (the background).

    Parameters
    ----------
    labels : ndarray of shape (H, W), int
        A segmentation.

    Returns
    -------
    ndarray of shape (H, W), int32
        1 for foreground (every other segment), 0 for background.
    """
    labels = np.asarray(labels)
    border = np.concatenate([labels[0], labels[-1], labels[1:-1, 0], labels[1:-1, -1]])
    values, counts = np.unique(border, return_counts=True)
    background = values[np.argmax(counts)]
    return (labels != background).astype(np.int32)


def border_background(labels):
    """Deprecated alias of :func:`border_foreground`, which it returns.

    .. deprecated:: 0.1
        Renamed :func:`border_foreground` (it returns the foreground mask); this
        name will be removed in 0.2.
    """
    warnings.warn("border_background was renamed border_foreground (it returns the "
                  "foreground mask) in 0.1 and will be removed in 0.2.", FutureWarning,
                  stacklevel=2)
    return border_foreground(labels)


FOREGROUND_RULES = ("auto", "attention", "border")

# Default of the attention rule's ``threshold``: a segment is foreground when its mean
# CLS attention is this many standard deviations above the image's mean.
ATTENTION_THRESHOLD = 0.25


def attention_foreground(labels, attention, *, threshold=ATTENTION_THRESHOLD):
    """The attention rule: segments the ViT's CLS token attends to are foreground.

    The last-layer CLS-to-patch attention, averaged over heads, is upsampled
    (bilinearly) to the image; a segment is foreground when its mean attention is
    above the image's mean by more than ``threshold`` standard deviations of the
    image's attention; the segment with the highest mean is foreground in any case.
    Unlike the border rule it finds small, off-centre objects and works with any
    number of segments.

    Parameters
    ----------
    labels : ndarray of shape (H, W), int
        A segmentation.
    attention : ndarray of shape (heads, h, w) or (h, w)
        CLS attention on the patch grid (``DinoFeatures(return_attention=True)``).
    threshold : float, default=0.25
        How far above the image's mean attention (in standard deviations of the
        image's attention) a segment's mean must be. 0 is the image's mean. The
        default keeps background segments that the CLS token only grazes out of the
        foreground; see the user guide ("Which segment is the object") for the
        figures that chose it.

    Returns
    -------
    ndarray of shape (H, W), int32
        1 for foreground, 0 for background.
    """
    import torch
    import torch.nn.functional as F

    labels = np.asarray(labels)
    attention = np.asarray(attention, dtype=np.float32)
    if attention.ndim == 3:
        attention = attention.mean(axis=0)
    if attention.ndim != 2:
        raise ValueError(f"attention must be (heads, h, w) or (h, w), got shape "
                         f"{attention.shape}.")
    pixels = F.interpolate(torch.from_numpy(attention)[None, None], size=labels.shape,
                           mode="bilinear", align_corners=False)[0, 0].numpy().ravel()
    _, flat = np.unique(labels, return_inverse=True)
    flat = flat.ravel()
    mean = np.bincount(flat, pixels) / np.bincount(flat)
    foreground = mean > pixels.mean() + threshold * pixels.std()
    foreground[np.argmax(mean)] = True  # never empty: an image shows at least one object
    return foreground[flat].reshape(labels.shape).astype(np.int32)


def foreground_mask(labels, attention=None, rule="auto", *,
                    threshold=ATTENTION_THRESHOLD):
    """Which segments are the object(s): a binary foreground mask.

    Parameters
    ----------
    labels : ndarray of shape (H, W), int
        A segmentation.
    attention : ndarray of shape (heads, h, w), optional
        CLS attention (``DinoFeatures(return_attention=True)``).
    rule : {"auto", "attention", "border"}, default="auto"
        :func:`attention_foreground`, :func:`border_foreground`, or ``"auto"``:
        attention when given, else the border rule.
    threshold : float, default=0.25
        The attention rule's threshold (:func:`attention_foreground`).

    Returns
    -------
    ndarray of shape (H, W), int32
        1 for foreground, 0 for background.
    """
    if rule not in FOREGROUND_RULES:
        raise ValueError(f"rule must be one of {FOREGROUND_RULES}, got {rule!r}.")
    if rule == "attention" and attention is None:
        raise ValueError("rule='attention' needs the CLS attention: "
                         "DinoFeatures(return_attention=True).")
    if rule == "border" or attention is None:
        return border_foreground(labels)
    return attention_foreground(labels, attention, threshold=threshold)
