"""From patch-grid outputs to pixel labels: upsampling, relabelling, DenseCRF, border rule."""

import numpy as np

CRF_DEFAULTS = dict(n_iter=20, gt_prob=0.8, sxy_gaussian=4, compat_gaussian=4,
                    sxy_bilateral=80, srgb=13, compat_bilateral=10)


def relabel_consecutive(labels):
    """Map the values of ``labels`` to ``0..k-1`` (in increasing order), as int32."""
    labels = np.asarray(labels)
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


def upsample_scores(scores, shape):
    """Bilinear upsampling of per-class scores ``(k, h, w)`` to ``(k, H, W)``.

    Uses the same cell-centred convention as :func:`upsample_labels`.
    """
    import torch
    import torch.nn.functional as F

    tensor = torch.as_tensor(np.asarray(scores, dtype=np.float32))[None]
    out = F.interpolate(tensor, size=tuple(shape), mode="bilinear", align_corners=False)
    return out[0].numpy()


def dense_crf(image, labels, *, n_iter=20, gt_prob=0.8, sxy_gaussian=4, compat_gaussian=4,
              sxy_bilateral=80, srgb=13, compat_bilateral=10, keep_labels=False):
    """Refine a pixel label map with a fully connected CRF (Krähenbühl & Koltun).

    The unary comes from the labels themselves (probability ``gt_prob`` on the given
    label); a Gaussian (smoothness) and a bilateral (appearance) kernel follow. Needs
    the ``crf`` extra (``pip install "sklearn-useg[crf]"``).

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
    crf = dcrf.DenseCRF2D(W, H, n_labels)
    unary = unary_from_labels(labels, n_labels, gt_prob=gt_prob, zero_unsure=False)
    crf.setUnaryEnergy(np.ascontiguousarray(unary))
    crf.addPairwiseGaussian(sxy=sxy_gaussian, compat=compat_gaussian)
    crf.addPairwiseBilateral(sxy=sxy_bilateral, srgb=srgb,
                             rgbim=np.ascontiguousarray(image, dtype=np.uint8),
                             compat=compat_bilateral)
    q = np.asarray(crf.inference(n_iter)).reshape(n_labels, H, W)
    out = q.argmax(axis=0)
    return values[out] if keep_labels else relabel_consecutive(out)


def border_background(labels):
    """The border rule: the segment covering most of the image border is background.

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
