"""Saving fitted models to disk and loading them back where they are used."""

import os
import warnings

import joblib

from ._version import __version__

__all__ = ["save_model", "load_model"]

_VERSION_KEY = "sklearn_useg_version"


def save_model(model, path):
    """Save a fitted model with the library version that made it.

    Torch modules inside the estimators are stored as CPU tensors, so a model fitted
    on a GPU loads on a machine without one (:func:`load_model`).

    Parameters
    ----------
    model : estimator
        Typically a fitted :class:`~sklearn.pipeline.Pipeline` of
        :class:`~sklearn_useg.DinoFeatures` and a segmenter, so the feature settings
        travel with the segmenter (``sklearn-useg fit`` saves one).
    path : str or path-like
        File to write (joblib format; ``.joblib`` by convention).

    Returns
    -------
    path : str
        The file written.

    Examples
    --------
    >>> import os, tempfile
    >>> from sklearn_useg import KMeansSegmenter
    >>> from sklearn_useg.persistence import load_model, save_model
    >>> path = save_model(KMeansSegmenter(3), os.path.join(tempfile.mkdtemp(), "m.joblib"))
    >>> load_model(path)
    KMeansSegmenter(n_clusters=3)
    """
    path = os.fspath(path)
    joblib.dump({_VERSION_KEY: __version__, "model": model}, path)
    return path


def load_model(path):
    """Load a model written by :func:`save_model`.

    Parameters
    ----------
    path : str or path-like
        The file.

    Returns
    -------
    model : estimator
        The model; its torch modules are on the device it was fitted on when that
        device exists here, else on the CPU.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a model saved by :func:`save_model`.

    Warns
    -----
    UserWarning
        If the model was saved by another version of sklearn_useg: the methods may
        have changed since, so its labels could differ; refit it, or load it with the
        version named in the warning.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No model file {path!r}.")
    try:
        saved = joblib.load(path)
    except Exception as exc:  # noqa: BLE001 - joblib raises many types on foreign files
        raise ValueError(f"Cannot load {path!r} as a model: {exc}") from exc
    if not isinstance(saved, dict) or _VERSION_KEY not in saved:
        raise ValueError(f"{path!r} is not a model saved by sklearn_useg's save_model "
                         "(or 'sklearn-useg fit').")
    if saved[_VERSION_KEY] != __version__:
        warnings.warn(f"{path!r} was saved by sklearn_useg {saved[_VERSION_KEY]}, and this "
                      f"is sklearn_useg {__version__}: the methods may have changed, so its "
                      f"labels could differ. Refit the model with this version, or use "
                      f"sklearn_useg {saved[_VERSION_KEY]} to apply it.", UserWarning,
                      stacklevel=2)
    return saved["model"]
