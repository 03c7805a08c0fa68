"""From patch-grid outputs to pixel labels: upsampling, relabelling, DenseCRF, border rule."""

import numpy as np

CRF_DEFAULTS = dict(n_iter=20, gt_prob=0.8, sxy_gaussian=4, compat_gaussian=4,
                    sxy_bilateral=80, srgb=13, compat_bilateral=10)


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
                             # pydensecrf's typed memoryview refuses read-only buffers
                             rgbim=np.require(image, np.uint8, ["C", "W"]),
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
