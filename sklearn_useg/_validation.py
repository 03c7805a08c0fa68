"""Turning user input into images and patch features, with clear errors."""

import os
from collections.abc import Iterable

import numpy as np


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
        raise TypeError(
            f"{name} must be a list of {what} (or a 4-D array stacking them), got a "
            f"single {X.ndim}-D array of shape {X.shape}; wrap it in a list: [{name}]."
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
        try:
            image = np.asarray(image)
        except Exception as exc:  # noqa: BLE001 - report any conversion failure
            raise TypeError(f"{where}: expected an image array or a path, got "
                            f"{type(image).__name__}.") from exc
        if image.dtype == object:
            raise TypeError(f"{where}: expected an image array or a path, got "
                            f"{type(image).__name__}.")
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
    ndarray of shape (h, w, d), dtype float32
    """
    where = f"{name}[{index}]"
    arr = np.asarray(features)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating)
                                   or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"{where}: expected a numeric (h, w, d) feature array, got "
                        f"dtype {arr.dtype}.")
    if arr.ndim != 3 or min(arr.shape) == 0:
        raise ValueError(f"{where}: expected features of shape (h, w, d) with h, w, d >= 1,"
                         f" got shape {arr.shape}.")
    arr = arr.astype(np.float32, copy=False)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{where}: features contain NaN or inf.")
    return arr


def check_features(X, *, name="X"):
    """Validate segmenter input: a list of ``PatchFeatures`` or ``(h, w, d)`` arrays.

    Plain arrays become :class:`~sklearn_useg.PatchFeatures` with no image and an
    ``image_shape`` equal to their grid, so labels come back at grid resolution.

    Parameters
    ----------
    X : list of PatchFeatures or array-like of shape (h, w, d)
        Per-image features. A 4-D array is read as a stack of grids.
    name : str
        Argument name used in error messages.

    Returns
    -------
    list of PatchFeatures
    """
    from .features import PatchFeatures

    items = _as_list(X, name, "PatchFeatures or (h, w, d) feature arrays")
    out = []
    for i, item in enumerate(items):
        if isinstance(item, PatchFeatures):
            check_feature_grid(item.features, name=name, index=i)
            out.append(item)
        else:
            grid = check_feature_grid(item, name=name, index=i)
            out.append(PatchFeatures(features=grid, image_shape=grid.shape[:2]))
    return out
