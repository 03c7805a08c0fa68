"""Dataset loaders and synthetic generators for unsupervised image segmentation.

The real-data loaders read datasets from a local folder (``data_home``); nothing is
downloaded. The folder is given by the ``data_home`` argument or, when that is
``None``, by the environment variable ``SKLEARN_USEG_DATA``. Expected layout (the
standard layouts of the BSDS500 and SegNet CamVid releases)::

    <data_home>/bsds500/images/{train,val,test}/*.jpg
    <data_home>/bsds500/groundTruth/{train,val,test}/*.mat
    <data_home>/weizmann_horse/images/horseNNN.jpg
    <data_home>/weizmann_horse/masks/horseNNN.png
    <data_home>/camvid/{train,val,test}/*.png
    <data_home>/camvid/{trainannot,valannot,testannot}/*.png

:func:`load_image_folder` reads any folder of images, with an optional folder of
masks paired by file stem.

The synthetic generators (:func:`make_segmentation_blobs`, :func:`make_color_blobs`)
need no data and produce images with a known partition into spatially coherent,
4-connected regions.
"""

import numbers
import os
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.io import loadmat
from scipy.io.matlab import MatReadError
from sklearn.utils import Bunch, check_random_state

__all__ = [
    "get_data_home",
    "load_bsds500",
    "load_weizmann_horse",
    "load_camvid",
    "load_image_folder",
    "load_sample_images",
    "make_segmentation_blobs",
    "make_color_blobs",
    "CAMVID_CLASS_NAMES",
    "IGNORE_INDEX",
]

_ENV_VAR = "SKLEARN_USEG_DATA"

#: Label value used for pixels that must be ignored by metrics (CamVid "Unlabelled").
IGNORE_INDEX = 255

#: The 11 evaluated CamVid classes, in label order 0..10.
CAMVID_CLASS_NAMES = (
    "Sky",
    "Building",
    "Pole",
    "Road",
    "Pavement",
    "Tree",
    "SignSymbol",
    "Fence",
    "Car",
    "Pedestrian",
    "Bicyclist",
)
_CAMVID_UNLABELLED = 11


# --------------------------------------------------------------------------- #
# Argument validation helpers
# --------------------------------------------------------------------------- #
def _check_int(value, name, *, min_val=1):
    """Return ``value`` as a Python int, raising ValueError unless an int >= min_val."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer >= {min_val}, got {value!r}.")
    if value < min_val:
        raise ValueError(f"{name} must be an integer >= {min_val}, got {value!r}.")
    return int(value)


def _check_float(value, name, *, min_val=0.0, strict=False):
    """Return ``value`` as a finite float, raising ValueError if out of range."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r}.")
    value = float(value)
    ok = np.isfinite(value) and (value > min_val if strict else value >= min_val)
    if not ok:
        op = ">" if strict else ">="
        raise ValueError(f"{name} must be a finite number {op} {min_val}, got {value!r}.")
    return value


def _check_shape(value, name):
    """Validate a 2-D shape given as a pair of positive ints."""
    try:
        items = tuple(value)
    except TypeError:
        raise ValueError(f"{name} must be a pair of positive ints, got {value!r}.") from None
    if len(items) != 2:
        raise ValueError(f"{name} must be a pair of positive ints, got {value!r}.")
    return tuple(_check_int(v, f"{name}[{i}]") for i, v in enumerate(items))


def _check_n_images(n_images):
    return None if n_images is None else _check_int(n_images, "n_images")


def _check_split(split, allowed, dataset):
    if split not in allowed:
        raise ValueError(
            f"Unknown split {split!r} for {dataset}; expected one of {list(allowed)}."
        )
    return split


# --------------------------------------------------------------------------- #
# File helpers (shared by all loaders)
# --------------------------------------------------------------------------- #
def get_data_home(data_home=None):
    """Return the folder that holds the segmentation datasets.

    Parameters
    ----------
    data_home : str or path-like, default=None
        Folder holding the datasets. When ``None``, the environment variable
        ``SKLEARN_USEG_DATA`` is used.

    Returns
    -------
    data_home : str
        The folder, with ``~`` expanded.

    Raises
    ------
    FileNotFoundError
        If ``data_home`` is ``None`` and ``SKLEARN_USEG_DATA`` is unset or empty,
        or if the resulting folder does not exist.
    """
    source = "the data_home argument"
    if data_home is None:
        data_home = os.environ.get(_ENV_VAR, "")
        source = f"the environment variable {_ENV_VAR}"
        if not data_home:
            raise FileNotFoundError(
                "No dataset folder configured: pass data_home=... or set the "
                f"environment variable {_ENV_VAR} to the folder holding the "
                "datasets (bsds500/, weizmann_horse/, camvid/)."
            )
    path = os.path.expanduser(os.fspath(data_home))
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"Dataset folder {path!r} (from {source}) does not exist; pass "
            f"data_home=... or set {_ENV_VAR} to an existing folder."
        )
    return path


def _list_files(folder, suffixes):
    """Sorted list of the files in ``folder`` whose name ends in one of the tuple
    ``suffixes`` (case-insensitive; hidden files are skipped).

    Raises FileNotFoundError naming the folder (and the env var) when it is
    missing or holds no matching file.
    """
    folder = Path(folder)
    pattern = " or ".join(f"'*{suffix}'" for suffix in suffixes)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"Dataset folder {str(folder)!r} not found. Check data_home or the "
            f"environment variable {_ENV_VAR}."
        )
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                   and p.name.lower().endswith(suffixes))
    if not files:
        raise FileNotFoundError(
            f"No {pattern} files in {str(folder)!r}. Check data_home or the "
            f"environment variable {_ENV_VAR}."
        )
    return files


def _by_stem(files):
    """``{stem: path}``, refusing two files with the same stem (which would be paired
    ambiguously)."""
    out = {}
    for path in files:
        if path.stem in out:
            raise ValueError(f"Two files with the stem {path.stem!r} in "
                             f"{str(path.parent)!r}: {out[path.stem].name!r} and "
                             f"{path.name!r}; keep one.")
        out[path.stem] = path
    return out


def _pair_stems(items, targets, item_dir, target_dir, n_images, what="image"):
    """Pair ``{stem: path}`` dicts of items (images or predictions) and ground truths,
    first ``n_images`` items in the order of ``items``.

    Every item needs a target and every target an item; the error names the first
    file without a partner.
    """
    for stem, path in targets.items():
        if stem not in items:
            raise FileNotFoundError(
                f"No {what} named {stem!r} in {str(item_dir)!r} for the ground truth "
                f"{str(path)!r}.")
    stems = list(items)[:n_images]
    for stem in stems:
        if stem not in targets:
            raise FileNotFoundError(
                f"No ground truth named {stem!r} in {str(target_dir)!r} for the {what} "
                f"{str(items[stem])!r}."
            )
    return [(items[stem], targets[stem]) for stem in stems]


def _paired_files(image_dir, image_suffixes, target_dir, target_suffixes, n_images):
    """Sorted (image, target) path pairs matched by file stem, first ``n_images``."""
    return _pair_stems(_by_stem(_list_files(image_dir, image_suffixes)),
                       _by_stem(_list_files(target_dir, target_suffixes)),
                       image_dir, target_dir, n_images)


def _unreadable(path, what, exc):
    return ValueError(f"Cannot read {str(path)!r} as {what}: {exc}")


def _read_rgb(path, size=None):
    """Read an image as an ``(H, W, 3)`` uint8 RGB array.

    If ``size=(H, W)`` is given and differs from the image size, the image is
    resized to it with bilinear interpolation.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if size is not None and (im.height, im.width) != tuple(size):
                im = im.resize((int(size[1]), int(size[0])), Image.BILINEAR)
            return np.asarray(im, dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError) as exc:
        raise _unreadable(path, "an image", exc) from exc


def _read_label_png(path):
    """Read a label image as a 2-D int32 array: the indices of a palette image, the
    values of a grey one, or the common value of an RGB(A) image whose colour
    channels are equal."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            arr = np.asarray(im)
    except (UnidentifiedImageError, OSError) as exc:
        raise _unreadable(path, "a label image", exc) from exc
    if arr.ndim == 3:  # label stored in an RGB(A) PNG: all colour channels equal
        if (arr[..., 1:3] != arr[..., :1]).any():
            raise ValueError(f"{str(path)!r} is a colour image, not a label map: save "
                             "labels as a palette or greyscale PNG (one value per class).")
        arr = arr[..., 0]
    return arr.astype(np.int32)


def _read_bsds_mat(path):
    """The human segmentations of a BSDS ``.mat`` file (``groundTruth{i}.Segmentation``,
    labels from 1) as a list of int32 maps with labels from 0."""
    try:
        gt = loadmat(path)["groundTruth"]
        return [np.asarray(gt[0][i]["Segmentation"][0, 0], dtype=np.int32) - 1
                for i in range(gt.shape[1])]
    except (MatReadError, ValueError, OSError, KeyError, IndexError, TypeError) as exc:
        raise _unreadable(path, "a BSDS ground-truth file with a 'groundTruth' cell of "
                                "structs holding 'Segmentation'", exc) from exc


def _dataset_dir(data_home, *parts):
    return Path(get_data_home(data_home)).joinpath(*parts)


# --------------------------------------------------------------------------- #
# Real datasets
# --------------------------------------------------------------------------- #
#: Photos shipped inside scikit-image (no download), usable without any dataset.
SAMPLE_IMAGES = ("astronaut", "chelsea", "coffee", "rocket")


def load_sample_images(names=SAMPLE_IMAGES):
    """Load a few public-domain photos bundled with scikit-image (no download).

    Parameters
    ----------
    names : sequence of str, default=("astronaut", "chelsea", "coffee", "rocket")
        Names of colour images in :mod:`skimage.data` (NASA's astronaut, Stéfan van
        der Walt's cat Chelsea, Rachel Michetti's coffee cup, a SpaceX rocket; all
        public domain or CC0).

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``images`` : list of ``(H, W, 3)`` uint8 arrays.
        ``filenames`` : list of str, the names.
        ``DESCR`` : str, a short description.

    Raises
    ------
    ValueError
        If a name is not one of :data:`SAMPLE_IMAGES`.
    """
    import skimage.data

    names = [names] if isinstance(names, str) else list(names)
    unknown = [name for name in names if name not in SAMPLE_IMAGES]
    if unknown or not names:
        raise ValueError(f"names must be a non-empty subset of {SAMPLE_IMAGES}, got "
                         f"{names!r}.")
    images = [np.ascontiguousarray(getattr(skimage.data, name)()) for name in names]
    descr = ("Sample photos bundled with scikit-image (public domain / CC0), for trying "
             "the methods without a dataset.")
    return Bunch(images=images, filenames=names, DESCR=descr)


def load_bsds500(split="val", *, data_home=None, n_images=None):
    """Load the Berkeley Segmentation Dataset (BSDS500) with all human segmentations.

    Parameters
    ----------
    split : {"train", "val", "test"}, default="val"
        Which split to load (200 train, 100 val or 200 test images).
    data_home : str or path-like, default=None
        Folder holding ``bsds500/``; defaults to ``$SKLEARN_USEG_DATA``.
    n_images : int, default=None
        Load only the first ``n_images`` images (in filename order); all when
        ``None`` or when fewer images are available.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``images`` : list of ``(H, W, 3)`` uint8 arrays.
        ``targets`` : list (one per image) of lists of ``(H, W)`` int32 label
        maps, one per human annotator, with labels starting at 0.
        ``filenames`` : list of str, the image file stems.
        ``DESCR`` : str, a short description.

    Raises
    ------
    ValueError
        If ``split`` is unknown.
    FileNotFoundError
        If the data folder or files are missing.
    """
    split = _check_split(split, ("train", "val", "test"), "BSDS500")
    n_images = _check_n_images(n_images)
    root = _dataset_dir(data_home, "bsds500")
    pairs = _paired_files(
        root / "images" / split, (".jpg",), root / "groundTruth" / split, (".mat",), n_images
    )
    images, targets, names = [], [], []
    for img_path, gt_path in pairs:
        maps = _read_bsds_mat(gt_path)
        images.append(_read_rgb(img_path, size=maps[0].shape))
        targets.append(maps)
        names.append(img_path.stem)
    descr = (
        f"BSDS500 {split} split: {len(images)} natural images with 4-9 human "
        "segmentations each (labels 0-based int32). Cite Arbelaez et al., TPAMI 2011."
    )
    return Bunch(images=images, targets=targets, filenames=names, DESCR=descr)


def load_weizmann_horse(*, data_home=None, n_images=None):
    """Load the Weizmann horse dataset (single-object foreground masks).

    Parameters
    ----------
    data_home : str or path-like, default=None
        Folder holding ``weizmann_horse/``; defaults to ``$SKLEARN_USEG_DATA``.
    n_images : int, default=None
        Load only the first ``n_images`` images (in filename order).

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``images`` : list of ``(H, W, 3)`` uint8 arrays (resized bilinearly to
        the mask size when they differ).
        ``targets`` : list of ``(H, W)`` int32 maps, 0 background, 1 horse.
        ``filenames`` : list of str stems.
        ``class_names`` : ``("background", "horse")``.
        ``DESCR`` : str.

    Raises
    ------
    FileNotFoundError
        If the data folder or files are missing.
    """
    n_images = _check_n_images(n_images)
    root = _dataset_dir(data_home, "weizmann_horse")
    pairs = _paired_files(root / "images", (".jpg",), root / "masks", (".png",), n_images)
    images, targets, names = [], [], []
    for img_path, mask_path in pairs:
        mask = (_read_label_png(mask_path) > 0).astype(np.int32)
        images.append(_read_rgb(img_path, size=mask.shape))
        targets.append(mask)
        names.append(img_path.stem)
    descr = (
        f"Weizmann horses: {len(images)} images with binary foreground masks "
        "(0 background, 1 horse). Cite Borenstein & Ullman."
    )
    return Bunch(
        images=images,
        targets=targets,
        filenames=names,
        class_names=("background", "horse"),
        DESCR=descr,
    )


def load_camvid(split="train", *, data_home=None, n_images=None):
    """Load the CamVid road-scene dataset (11 classes + ignore).

    Parameters
    ----------
    split : {"train", "val", "test"}, default="train"
        Which split to load (367 train, 101 val or 233 test images in the standard
        layout).
    data_home : str or path-like, default=None
        Folder holding ``camvid/``; defaults to ``$SKLEARN_USEG_DATA``.
    n_images : int, default=None
        Load only the first ``n_images`` images (in filename order).

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``images`` : list of ``(H, W, 3)`` uint8 arrays.
        ``targets`` : list of ``(H, W)`` int32 maps with classes 0..10 and
        ``255`` (:data:`IGNORE_INDEX`) for the "Unlabelled" class.
        ``filenames`` : list of str stems.
        ``class_names`` : tuple of the 11 class names.
        ``ignore_index`` : int, 255.
        ``DESCR`` : str.

    Raises
    ------
    ValueError
        If ``split`` is unknown.
    FileNotFoundError
        If the data folder or files are missing.
    """
    split = _check_split(split, ("train", "val", "test"), "CamVid")
    n_images = _check_n_images(n_images)
    root = _dataset_dir(data_home, "camvid")
    pairs = _paired_files(root / split, (".png",), root / f"{split}annot", (".png",),
                          n_images)
    images, targets, names = [], [], []
    for img_path, ann_path in pairs:
        label = _read_label_png(ann_path)
        label[(label >= _CAMVID_UNLABELLED) | (label < 0)] = IGNORE_INDEX
        images.append(_read_rgb(img_path, size=label.shape))
        targets.append(label)
        names.append(img_path.stem)
    descr = (
        f"CamVid {split} split: {len(images)} road-scene images, 11 classes "
        f"(0-10) and ignore index {IGNORE_INDEX}. Licence CC BY-NC 4.0."
    )
    return Bunch(
        images=images,
        targets=targets,
        filenames=names,
        class_names=CAMVID_CLASS_NAMES,
        ignore_index=IGNORE_INDEX,
        DESCR=descr,
    )


#: File types :func:`load_image_folder` reads as images, and as masks.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff", ".gif", ".mat")


def _read_mask(path, ignore_index, binary):
    """One mask file as a label map, or a list of maps for a BSDS ``.mat`` file."""
    maps = _read_bsds_mat(path) if path.suffix.lower() == ".mat" else [_read_label_png(path)]
    for label in maps:
        void = None if ignore_index is None else label == ignore_index
        if binary:
            label[:] = label != 0
        if void is not None:
            label[void] = IGNORE_INDEX
    return maps if path.suffix.lower() == ".mat" else maps[0]


def load_image_folder(images, masks=None, *, ignore_index=None, binary=False,
                      n_images=None):
    """Load your own folder of images, with their ground-truth masks if you have them.

    Images and masks are paired by file stem (``photos/cat.jpg`` with
    ``masks/cat.png``), in filename order. A mask is a label image, one value per
    segment or class (a palette PNG's indices, or a greyscale PNG's values), a
    binary mask, or a BSDS-style ``.mat`` file holding several human segmentations
    of the image (``groundTruth{i}.Segmentation``, labels from 1).

    Parameters
    ----------
    images : str or path-like
        Folder of images (:data:`IMAGE_SUFFIXES`: ``.jpg``, ``.png``, ...). Other
        files, and hidden ones, are skipped.
    masks : str or path-like, default=None
        Folder of masks (:data:`MASK_SUFFIXES`), one per image with the image's
        stem. ``None`` loads the images alone.
    ignore_index : int or None, default=None
        Mask value of pixels without ground truth (void, unlabelled; e.g. 11 in
        SegNet's CamVid). They become :data:`IGNORE_INDEX` (255) in ``targets``,
        which every metric leaves out. Masks that already mark such pixels 255 need
        nothing here, except with ``binary=True``, where 255 would be foreground.
    binary : bool, default=False
        Read the masks as foreground masks: 0 is background (0), any other value
        foreground (1); for 0/1 and 0/255 masks alike.
    n_images : int, default=None
        Load only the first ``n_images`` images (in filename order).

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``images`` : list of ``(H, W, 3)`` uint8 arrays (resized bilinearly to
        their mask's size when they differ).
        ``targets`` : only with ``masks``; per image an ``(H, W)`` int32 label map,
        or for a ``.mat`` file a list of them (one per annotator, labels from 0).
        ``filenames`` : list of str, the file stems.
        ``ignore_index`` : int, 255 (only with ``masks``).
        ``DESCR`` : str.

    Raises
    ------
    FileNotFoundError
        If a folder is missing or holds no image (mask), or naming the first image
        without a mask or mask without an image.
    ValueError
        Naming the first file that cannot be read, two files sharing a stem, or a
        colour (RGB) mask, which has no label values.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from PIL import Image
    >>> from sklearn_useg.datasets import load_image_folder
    >>> photos, masks = tempfile.mkdtemp(), tempfile.mkdtemp()
    >>> Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(os.path.join(photos, "a.jpg"))
    >>> Image.fromarray(np.eye(8, dtype=np.uint8)).save(os.path.join(masks, "a.png"))
    >>> data = load_image_folder(photos, masks)
    >>> data.filenames, data.images[0].shape, np.unique(data.targets[0]).tolist()
    (['a'], (8, 8, 3), [0, 1])
    """
    n_images = _check_n_images(n_images)
    if ignore_index is not None:
        ignore_index = _check_int(ignore_index, "ignore_index", min_val=0)
    if masks is None:
        paths = list(_by_stem(_list_files(images, IMAGE_SUFFIXES)).values())[:n_images]
        return Bunch(images=[_read_rgb(path) for path in paths],
                     filenames=[path.stem for path in paths],
                     DESCR=f"{len(paths)} images from {os.fspath(images)!r}, no masks.")
    pairs = _paired_files(images, IMAGE_SUFFIXES, masks, MASK_SUFFIXES, n_images)
    data, targets, names = [], [], []
    for img_path, mask_path in pairs:
        target = _read_mask(mask_path, ignore_index, bool(binary))
        shape = (target[0] if isinstance(target, list) else target).shape
        data.append(_read_rgb(img_path, size=shape))
        targets.append(target)
        names.append(img_path.stem)
    kind = "binary foreground masks" if binary else "label masks"
    descr = (f"{len(data)} images from {os.fspath(images)!r} with {kind} from "
             f"{os.fspath(masks)!r} (ignored pixels: {IGNORE_INDEX}).")
    return Bunch(images=data, targets=targets, filenames=names, ignore_index=IGNORE_INDEX,
                 DESCR=descr)


# --------------------------------------------------------------------------- #
# Synthetic data
# --------------------------------------------------------------------------- #
_FOUR_CONNECTED = ndimage.generate_binary_structure(2, 1)


def _region_layout(shape, n_segments, rng):
    """Random partition of a ``shape`` grid into ``n_segments`` connected regions.

    Regions are the (Euclidean) Voronoi cells of ``n_segments`` distinct random
    seed cells. Each region is then forced to be a single 4-connected component
    containing its seed: stray pieces (possible on a discrete grid through ties)
    are re-grown from adjacent regions, which preserves connectivity. Every
    region is non-empty because it owns its seed.

    Returns an ``(h, w)`` int32 array with labels ``0..n_segments-1``.
    """
    h, w = shape
    flat = rng.choice(h * w, size=n_segments, replace=False)
    seeds = np.stack(np.unravel_index(flat, shape), axis=1)  # (k, 2)
    rr, cc = np.mgrid[:h, :w]
    d2 = (rr[None] - seeds[:, 0, None, None]) ** 2 + (cc[None] - seeds[:, 1, None, None]) ** 2
    labels = np.argmin(d2, axis=0).astype(np.int32)
    labels[seeds[:, 0], seeds[:, 1]] = np.arange(n_segments, dtype=np.int32)

    # Keep only the component of each region that contains its seed.
    for k in range(n_segments):
        comp, n_comp = ndimage.label(labels == k, structure=_FOUR_CONNECTED)
        if n_comp > 1:
            labels[(comp > 0) & (comp != comp[seeds[k, 0], seeds[k, 1]])] = -1
    # Re-grow: an unassigned cell takes the label of an assigned 4-neighbour.
    while (labels < 0).any():
        padded = np.pad(labels, 1, constant_values=-1)
        neighbours = np.stack(
            [padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]]
        )
        candidate = neighbours.max(axis=0)
        fill = (labels < 0) & (candidate >= 0)
        labels[fill] = candidate[fill]
    return labels


def _spread_points(sample, n_points, rng, n_trials=10):
    """Best of ``n_trials`` draws of ``sample(rng)`` maximising the min pairwise distance."""
    best, best_d = None, -np.inf
    for _ in range(n_trials):
        pts = sample(rng)
        if n_points < 2:
            return pts
        diff = pts[:, None, :] - pts[None, :, :]
        dist = np.sqrt((diff**2).sum(-1))
        dmin = dist[np.triu_indices(n_points, 1)].min()
        if dmin > best_d:
            best, best_d = pts, dmin
    return best


def make_segmentation_blobs(
    n_images=1,
    *,
    grid_shape=(24, 32),
    n_segments=4,
    n_features=16,
    noise=0.1,
    separation=1.0,
    patch_size=1,
    random_state=None,
):
    """Generate feature grids with a known partition into connected regions.

    Mimics a grid of patch features (e.g. from a ViT): each image is split into
    ``n_segments`` spatially coherent regions (Voronoi cells of random seeds, each
    a single non-empty 4-connected component). Each region gets its own random
    unit-norm centre in ``R^n_features`` scaled by ``separation``; every cell's
    feature is its region's centre plus isotropic Gaussian noise of standard
    deviation ``noise``. Layouts and centres are drawn independently per image.

    Parameters
    ----------
    n_images : int, default=1
        Number of images to generate.
    grid_shape : tuple of (int, int), default=(24, 32)
        ``(h, w)`` of each feature grid.
    n_segments : int, default=4
        Number of regions per image; must be ``<= h * w``.
    n_features : int, default=16
        Feature dimension ``d``. With ``d == 1`` at most 2 regions are allowed
        (the unit sphere of ``R`` has two points).
    noise : float, default=0.1
        Standard deviation of the Gaussian noise (>= 0).
    separation : float, default=1.0
        Norm of the region centres (> 0).
    patch_size : int, default=1
        If > 1, the label maps are given at pixel resolution: each grid cell is
        repeated ``patch_size x patch_size``, so ``y`` has shape
        ``(h * patch_size, w * patch_size)`` while ``X`` stays ``(h, w, d)``.
    random_state : int, RandomState instance or None, default=None
        Seed; the same seed gives identical output.

    Returns
    -------
    X : list of ndarray of shape (h, w, n_features), dtype float32
        Feature grids.
    y : list of ndarray of shape (h * patch_size, w * patch_size), dtype int32
        Label maps with labels ``0..n_segments-1``, all present.

    Raises
    ------
    ValueError
        If an argument is invalid.
    """
    n_images = _check_int(n_images, "n_images")
    h, w = _check_shape(grid_shape, "grid_shape")
    n_segments = _check_int(n_segments, "n_segments")
    n_features = _check_int(n_features, "n_features")
    noise = _check_float(noise, "noise")
    separation = _check_float(separation, "separation", strict=True)
    patch_size = _check_int(patch_size, "patch_size")
    if n_segments > h * w:
        raise ValueError(
            f"n_segments={n_segments} exceeds the number of grid cells {h * w} "
            f"for grid_shape={(h, w)}."
        )
    if n_features == 1 and n_segments > 2:
        raise ValueError(
            "n_features=1 allows at most 2 separable unit-norm centres; got "
            f"n_segments={n_segments}."
        )
    rng = check_random_state(random_state)

    def sample_centres(r):
        c = r.standard_normal((n_segments, n_features))
        return c / np.linalg.norm(c, axis=1, keepdims=True)

    X, y = [], []
    for _ in range(n_images):
        labels = _region_layout((h, w), n_segments, rng)
        centres = separation * _spread_points(sample_centres, n_segments, rng)
        feats = centres[labels] + noise * rng.standard_normal((h, w, n_features))
        X.append(feats.astype(np.float32))
        if patch_size > 1:
            labels = np.repeat(np.repeat(labels, patch_size, axis=0), patch_size, axis=1)
        y.append(labels)
    return X, y


def make_color_blobs(
    n_images=1, *, image_shape=(64, 80), n_segments=4, noise=10, random_state=None
):
    """Generate RGB images made of flat-coloured connected regions plus noise.

    The region layout is the same kind as in :func:`make_segmentation_blobs`
    (Voronoi cells, each a single non-empty 4-connected component). Each region
    gets a distinct random colour (drawn to be well spread in RGB space); pixels
    are that colour plus Gaussian noise, clipped to ``[0, 255]``.

    Parameters
    ----------
    n_images : int, default=1
        Number of images.
    image_shape : tuple of (int, int), default=(64, 80)
        ``(H, W)`` of each image.
    n_segments : int, default=4
        Number of regions per image; must be ``<= H * W``.
    noise : float, default=10
        Standard deviation of the Gaussian noise, in intensity units (>= 0).
    random_state : int, RandomState instance or None, default=None
        Seed; the same seed gives identical output.

    Returns
    -------
    images : list of ndarray of shape (H, W, 3), dtype uint8
        The images.
    labels : list of ndarray of shape (H, W), dtype int32
        Label maps with labels ``0..n_segments-1``, all present.

    Raises
    ------
    ValueError
        If an argument is invalid.
    """
    n_images = _check_int(n_images, "n_images")
    h, w = _check_shape(image_shape, "image_shape")
    n_segments = _check_int(n_segments, "n_segments")
    noise = _check_float(noise, "noise")
    if n_segments > h * w:
        raise ValueError(
            f"n_segments={n_segments} exceeds the number of pixels {h * w} "
            f"for image_shape={(h, w)}."
        )
    rng = check_random_state(random_state)

    def sample_colours(r):
        return r.uniform(0, 255, size=(n_segments, 3))

    images, labels_out = [], []
    for _ in range(n_images):
        labels = _region_layout((h, w), n_segments, rng)
        colours = _spread_points(sample_colours, n_segments, rng)
        img = colours[labels] + noise * rng.standard_normal((h, w, 3))
        images.append(np.clip(np.rint(img), 0, 255).astype(np.uint8))
        labels_out.append(labels)
    return images, labels_out
