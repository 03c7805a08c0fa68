"""Turning user input into images and patch features, with clear errors."""

import operator
import os
from collections.abc import Iterable
from dataclasses import replace

import numpy as np

from ._patch_features import PatchFeatures

#: Largest feature magnitude accepted: squared distances of larger values overflow float32.
MAX_FEATURE_MAGNITUDE = 1e15


def _as_list(X, name, what):
    """Return ``X`` as a non-empty list, refusing single arrays and strings."""
    if isinstance(X, (str, os.PathLike)):
        raise TypeError(
            f"{name} must be a list of {what}, got a single path {str(X)!r}; "
            f"wrap it in a list: [{str(X)!r}]."
        )
    if isinstance(X, np.ndarray):
        if X.ndim == 4:
            return list(X)
        hint = f"; wrap it in a list: [{name}]" if X.ndim in (2, 3) else ""
        raise TypeError(
            f"{name} must be a list of {what} (or a 4-D array stacking them), got a "
            f"single {X.ndim}-D array of shape {X.shape}{hint}."
        )
    if not isinstance(X, Iterable):
        raise TypeError(f"{name} must be a list of {what}, got {type(X).__name__}.")
    items = list(X)
    if not items:
        raise ValueError(f"{name} is empty: expected at least one of {what}.")
    return items


def _read_image(path, name, index):
    from PIL import Image, UnidentifiedImageError

    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"{name}[{index}]: expected an image file, got the folder {path!r}.")
    if not os.path.isfile(path):
        raise ValueError(f"{name}[{index}]: no such image file {path!r}.")
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"{name}[{index}]: cannot read {path!r} as an image ({exc}).") from exc


def check_image(image, *, name="X", index=0):
    """Convert one image (array or path) to a contiguous ``(H, W, 3)`` uint8 array.

    Grayscale (``(H, W)`` or ``(H, W, 1)``) is replicated to RGB, the alpha channel
    of RGBA is dropped, booleans map to {0, 255}, uint16 is rescaled, floats must
    lie in [0, 1].

    Parameters
    ----------
    image : ndarray or path-like
        The image.
    name : str
        Argument name used in error messages.
    index : int
        Position of the image in its list, used in error messages.

    Returns
    -------
    ndarray of shape (H, W, 3), dtype uint8
    """
    where = f"{name}[{index}]"
    if isinstance(image, (str, os.PathLike)):
        image = _read_image(image, name, index)
    if not isinstance(image, np.ndarray):
        given = type(image).__name__
        try:
            image = np.asarray(image)
        except Exception as exc:  # noqa: BLE001 - report any conversion failure
            raise TypeError(f"{where}: expected an image array or a path, got "
                            f"{given}.") from exc
        if image.dtype == object:
            raise TypeError(f"{where}: expected an image array or a path, got {given}.")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"{where}: expected an image of shape (H, W), (H, W, 1), "
                         f"(H, W, 3) or (H, W, 4), got shape {image.shape}.")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{where}: image has an empty dimension, shape {image.shape}.")
    image = image[:, :, :3] if image.shape[2] == 4 else image
    image = _to_uint8(image, where)
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image)


def _to_uint8(image, where):
    dtype = image.dtype
    if dtype == np.uint8:
        return image
    if dtype == bool:
        return image.astype(np.uint8) * 255
    if dtype == np.uint16:
        return (image.astype(np.uint32) * 255 // 65535).astype(np.uint8)
    if np.issubdtype(dtype, np.integer):
        lo, hi = int(image.min()), int(image.max())
        if lo < 0 or hi > 255:
            raise ValueError(f"{where}: integer image of dtype {dtype} must have values "
                             f"in [0, 255], got [{lo}, {hi}].")
        return image.astype(np.uint8)
    if np.issubdtype(dtype, np.floating):
        if not np.all(np.isfinite(image)):
            raise ValueError(f"{where}: float image contains NaN or inf.")
        lo, hi = float(image.min()), float(image.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"{where}: float images must have values in [0, 1], got "
                             f"[{lo:.4g}, {hi:.4g}]; divide uint8-range data by 255.")
        return np.round(image * 255.0).astype(np.uint8)
    raise TypeError(f"{where}: unsupported image dtype {dtype}; expected uint8, uint16, "
                    f"bool, another integer type in [0, 255] or float in [0, 1].")


def check_images(X, *, name="X"):
    """Validate a collection of images.

    Parameters
    ----------
    X : list of ndarray or path-like
        Images as arrays (any of the forms accepted by :func:`check_image`) or paths.
        A 4-D array is read as a stack of images.
    name : str
        Argument name used in error messages.

    Returns
    -------
    list of ndarray of shape (H, W, 3), dtype uint8
    """
    items = _as_list(X, name, "images (H x W x 3 arrays or paths)")
    return [check_image(image, name=name, index=i) for i, image in enumerate(items)]


def check_feature_grid(features, *, name="X", index=0):
    """Validate one ``(h, w, d)`` feature grid and return it as float32.

    Parameters
    ----------
    features : array-like of shape (h, w, d)
        Patch features on their grid.
    name : str
        Argument name used in error messages.
    index : int
        Position in the list, used in error messages.

    Returns
    -------
    ndarray of shape (h, w, d), dtype float32, C-contiguous
    """
    where = f"{name}[{index}]"
    try:
        arr = np.asarray(features)
    except ValueError as exc:  # ragged nested sequences
        raise TypeError(f"{where}: expected a numeric (h, w, d) feature array, got a "
                        f"{type(features).__name__} that is not one ({exc}).") from exc
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating)
                                   or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"{where}: expected a numeric (h, w, d) feature array, got "
                        f"dtype {arr.dtype}.")
    if arr.ndim != 3 or min(arr.shape) == 0:
        raise ValueError(f"{where}: expected features of shape (h, w, d) with h, w, d >= 1,"
                         f" got shape {arr.shape}.")
    n_bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
    if n_bad:
        raise ValueError(f"{where}: features must be finite, got {n_bad} NaN or inf "
                         f"value(s).")
    # checked before the float32 cast, which would turn such values into inf
    largest = max(abs(float(arr.min())), abs(float(arr.max())))
    if largest > MAX_FEATURE_MAGNITUDE:
        raise ValueError(f"{where}: feature values must lie within +-{MAX_FEATURE_MAGNITUDE:g}"
                         f" (larger ones overflow float32 distances), got magnitude "
                         f"{largest:.3g}; rescale the features.")
    # C order: results must not depend on the memory layout of the input
    return np.ascontiguousarray(arr, dtype=np.float32)


def _check_patch_features(pf, name, index):
    """Validate the fields of one ``PatchFeatures``; return a copy with a float32 grid."""
    where = f"{name}[{index}]"
    grid = check_feature_grid(pf.features, name=name, index=index)
    try:
        H, W = (operator.index(side) for side in pf.image_shape)
        valid = H >= 1 and W >= 1
    except (TypeError, ValueError):  # not a pair of integers
        valid = False
    if not valid:
        raise ValueError(f"{where}.image_shape must be a pair of positive ints (H, W), got "
                         f"{pf.image_shape!r}.")
    image = pf.image
    if image is not None and (not isinstance(image, np.ndarray) or image.dtype != np.uint8
                              or image.shape != (H, W, 3)):
        got = (f"shape {image.shape}, dtype {image.dtype}" if isinstance(image, np.ndarray)
               else type(image).__name__)
        raise ValueError(f"{where}.image must be an (H, W, 3) uint8 array with (H, W) = "
                         f"image_shape {(H, W)}, got {got}.")
    attention = pf.attention
    if attention is not None:
        attention = np.asarray(attention)
        if (attention.ndim != 3 or attention.shape[1:] != grid.shape[:2]
                or not np.issubdtype(attention.dtype, np.floating)
                or not np.all(np.isfinite(attention))):
            raise ValueError(f"{where}.attention must be finite floats of shape (heads, "
                             f"{grid.shape[0]}, {grid.shape[1]}), got shape "
                             f"{attention.shape}, dtype {attention.dtype}.")
    return replace(pf, features=grid, image_shape=(H, W), attention=attention)


def check_features(X, *, name="X"):
    """Validate segmenter input: a list of ``PatchFeatures`` or ``(h, w, d)`` arrays.

    Plain arrays become :class:`~sklearn_useg.PatchFeatures` with no image and an
    ``image_shape`` equal to their grid, so labels come back at grid resolution.

    Parameters
    ----------
    X : list of PatchFeatures or array-like of shape (h, w, d)
        Per-image features, all with the same ``d``. A 4-D array is read as a stack
        of grids.
    name : str
        Argument name used in error messages.

    Returns
    -------
    list of PatchFeatures
        Validated copies (float32 grids; ``image_shape``, ``image`` and ``attention``
        checked against each other).
    """
    items = _as_list(X, name, "PatchFeatures or (h, w, d) feature arrays")
    out = []
    for i, item in enumerate(items):
        if isinstance(item, PatchFeatures):
            out.append(_check_patch_features(item, name, i))
        else:
            grid = check_feature_grid(item, name=name, index=i)
            out.append(PatchFeatures(features=grid, image_shape=grid.shape[:2]))
        d, d_first = out[-1].features.shape[-1], out[0].features.shape[-1]
        if d != d_first:
            raise ValueError(f"{name}[{i}] has {d} features per patch, but {name}[0] has "
                             f"{d_first}: every grid needs the same feature dimension.")
    return out


class PipelineStepMixin:
    """Makes an unnamed step in ``Pipeline([...])`` fail with a pointer to
    ``make_pipeline``.

    scikit-learn's ``Pipeline`` takes ``(name, estimator)`` pairs and unpacks each step
    into one; an estimator given alone cannot be unpacked, and this message says why.
    """

    def __iter__(self):
        raise TypeError(
            f"{type(self).__name__} is not a (name, estimator) pair: scikit-learn's "
            f"Pipeline takes pairs, Pipeline([('features', DinoFeatures()), "
            f"('seg', CLASPSegmenter())]); make_pipeline(DinoFeatures(), "
            f"CLASPSegmenter()) names the steps for you.")
