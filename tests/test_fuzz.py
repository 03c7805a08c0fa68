"""Fuzzing every public estimator with hypothesis: odd images, features and containers.

Every case must end in a valid result (int32 labels of the image's shape, or of the
grid's for plain feature arrays, with values ``0..k-1``, or class ids below
``n_classes`` for the dataset-wide methods) or in a ``ValueError``/``TypeError`` raised
by this library whose message names the argument (``X[i]`` for a bad item of a list).
:func:`check_contract` asserts exactly that; the number of cases tried per estimator is
written to ``fuzz_cases.json`` in pytest's base temporary directory. The plain tests at
the end pin the bugs the suite found.
"""

import functools
import json
import re
import signal
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

import sklearn_useg
from sklearn_useg import (DinoFeatures, KMeansSegmenter, OAPSegmenter, PatchFeatures,
                          SemanticLabeler)
from conftest import CHEAP_SEGMENTERS
from sklearn_useg._backbones import FACETS
from sklearn_useg.datasets import make_segmentation_blobs
from sklearn_useg.graph import NORMALIZATIONS, normalize_features

PATCH, TINY_DIM, TINY_BLOCKS = 16, 64, 6  # the tiny random test backbone "test_vit"
HANG_SECONDS = 60  # a single tiny case taking longer counts as a hang
LIBRARY = Path(sklearn_useg.__file__).parent
CASES = Counter()  # (estimator, "result" or "error") -> cases tried

SEGMENTERS = CHEAP_SEGMENTERS  # tiny settings: every case runs in milliseconds
DATASET_CLASSES = {"il2vseg": 3, "semantic": 2}  # labels are class ids below n_classes
IMAGE_VARIANTS = {  # code paths that need the image or the attention maps
    "clasp": dict(refine="crf"),
    "deepcut": dict(refine="crf", two_stage=True, n_clusters_bg=2),
    "il2vseg": dict(refine="crf"),
    "semantic": dict(background=True, n_classes=3),
}
FEATURE_DIMS = (1, 3, 8)


# --------------------------------------------------------------------------- #
# The contract
# --------------------------------------------------------------------------- #
@contextmanager
def _time_limit(seconds):
    """Raise ``TimeoutError`` instead of hanging (where the platform has SIGALRM)."""
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def hang(signum, frame):
        raise TimeoutError(f"no result after {seconds} s")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _names(message, name):
    """Whether ``message`` names the argument ``name`` (``X``, ``X[2]``, ``stride``)."""
    return re.search(rf"(?<![\w.]){re.escape(name)}(?![\w\[])", message) is not None


def _raised_by_library(exc):
    """Whether ``exc`` was raised by this library's code (or its parameter validation)."""
    tb = exc.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    path = Path(tb.tb_frame.f_code.co_filename)
    return LIBRARY in path.parents or path.name == "_param_validation.py"


def check_contract(name, call, check_result, *, bad=(), refusals=()):
    """Run ``call()`` and assert the contract: a valid result or a clean, named error.

    Parameters
    ----------
    name : str
        Estimator, for the case counts.
    call : callable
        The call under test.
    check_result : callable or None
        Asserts that a returned value is valid (None where only an error is valid).
    bad : collection of str
        What is wrong with the input (``"X[2]"``, ``"X"``, ``"stride"``); empty for a
        valid input. A bad input must raise, naming at least one of them.
    refusals : collection of str
        Parameters whose limits may refuse even a valid input (an error naming one is
        accepted, e.g. fewer training segments than ``n_classes``).

    Returns
    -------
    object or Exception
        The result, or the error raised.
    """
    try:
        with _time_limit(HANG_SECONDS):
            result = call()
    except (ValueError, TypeError) as exc:
        CASES[name, "error"] += 1
        message = f"{type(exc).__name__}: {exc}"
        assert _raised_by_library(exc), f"{name}: error from outside the library: {message}"
        expected = bad or refusals
        assert expected, f"{name}: valid input refused: {message}"
        assert any(_names(str(exc), arg) for arg in expected), \
            f"{name}: the error names none of {sorted(expected)}: {message}"
        return exc
    CASES[name, "result"] += 1
    assert not bad, f"{name}: no error for input with bad {sorted(bad)}"
    check_result(result)
    return result


def labels_of(shapes, n_classes=None):
    """Check of a list of label maps: int32, of ``shapes``, values ``0..k-1`` (or ids
    below ``n_classes``)."""
    def check(labels):
        assert isinstance(labels, list) and len(labels) == len(shapes)
        for i, (lab, shape) in enumerate(zip(labels, shapes)):
            assert isinstance(lab, np.ndarray) and lab.dtype == np.int32, f"labels[{i}]"
            assert lab.shape == tuple(shape), f"labels[{i}] has shape {lab.shape}, not {shape}"
            values = np.unique(lab)
            if n_classes is None:
                np.testing.assert_array_equal(values, np.arange(len(values)))
            else:
                assert values[0] >= 0 and values[-1] < n_classes, f"labels[{i}]: {values}"
    return check


def patch_features_of(image_shapes, grids, *, dim=TINY_DIM, heads=None, keep_image=True):
    """Check of DinoFeatures output for images of ``image_shapes`` on ``grids``."""
    def check(features):
        assert isinstance(features, list) and len(features) == len(image_shapes)
        for pf, shape, grid in zip(features, image_shapes, grids):
            assert isinstance(pf, PatchFeatures) and pf.features.dtype == np.float32
            assert pf.features.shape == (*grid, dim) and pf.image_shape == tuple(shape)
            assert np.all(np.isfinite(pf.features))
            if keep_image:
                assert pf.image.shape == (*shape, 3) and pf.image.dtype == np.uint8
            else:
                assert pf.image is None
            if heads is None:
                assert pf.attention is None
            else:
                assert pf.attention.shape == (heads, *grid)
    return check


@pytest.fixture(scope="module", autouse=True)
def case_counts(tmp_path_factory):
    """Write the cases tried per estimator to ``fuzz_cases.json`` after the module."""
    yield CASES
    counts = {}
    for (name, outcome), n in sorted(CASES.items()):
        counts.setdefault(name, {"result": 0, "error": 0})[outcome] = n
    path = tmp_path_factory.getbasetemp() / "fuzz_cases.json"
    path.write_text(json.dumps(counts, indent=1))
    print(f"\nfuzz cases per estimator (also in {path}):\n{json.dumps(counts)}")


# --------------------------------------------------------------------------- #
# Fixtures
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def tiny_extractor():
    """DinoFeatures on the tiny random backbone (patch 16, d = 64)."""
    return DinoFeatures(backbone="test_vit", weights=None, device="cpu")


@pytest.fixture(scope="module")
def attention_extractor():
    """DinoFeatures on the tiny random backbone, with CLS attention maps."""
    return DinoFeatures(backbone="test_vit", weights=None, device="cpu", return_attention=True)


@pytest.fixture(scope="module")
def prefitted():
    """``prefitted(name, d)``: segmenter ``name`` fitted on synthetic grids of dimension d."""
    @functools.cache
    def fit(name, d):
        X, _ = make_segmentation_blobs(3, grid_shape=(6, 7), n_segments=2, n_features=d,
                                       random_state=0)
        return SEGMENTERS[name]().fit(X)
    return fit


@pytest.fixture(scope="module")
def prefitted_on_images(attention_extractor):
    """``prefitted_on_images(name)``: segmenter ``name`` fitted on two random images."""
    rng = np.random.default_rng(0)
    X = attention_extractor.transform([rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
                                       for _ in range(2)])

    @functools.cache
    def fit(name):
        return SEGMENTERS[name]().fit(X)
    return fit


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Paths by kind: readable images, and files that are no image."""
    folder = tmp_path_factory.mktemp("fuzz_files")
    rng = np.random.default_rng(0)
    paths = {"png_rgba": folder / "rgba.png", "png_gray16": folder / "gray16.png",
             "text": folder / "notes.txt", "truncated_png": folder / "truncated.png",
             "missing": folder / "missing.png", "folder": folder}
    Image.fromarray(rng.integers(0, 256, (20, 37, 4), dtype=np.uint8)).save(paths["png_rgba"])
    Image.fromarray(rng.integers(0, 2**16, (33, 17), dtype=np.uint16)).save(
        paths["png_gray16"])
    paths["text"].write_text("not an image")
    paths["truncated_png"].write_bytes(paths["png_rgba"].read_bytes()[:40])
    return paths


FILE_SHAPES = {"png_rgba": (20, 37), "png_gray16": (33, 17)}  # readable files


# --------------------------------------------------------------------------- #
# Images
# --------------------------------------------------------------------------- #
def _image_values(kind, shape, rng):
    """An image array of ``shape`` and value ``kind``; valid kinds first."""
    unit = rng.random(shape)
    return {
        "uint8": lambda: rng.integers(0, 256, shape, dtype=np.uint8),
        "uint16": lambda: rng.integers(0, 2**16, shape, dtype=np.uint16),
        "bool": lambda: unit > 0.5,
        "float32": lambda: unit.astype(np.float32),
        "float64": lambda: unit,
        "float16": lambda: unit.astype(np.float16),
        "int64_in_range": lambda: rng.integers(0, 256, shape),
        "float_above_one": lambda: unit * 2.0,
        "float_negative": lambda: unit - 0.5,
        "float_nan": lambda: np.where(unit > 0.9, np.nan, unit),
        "int_negative": lambda: rng.integers(-255, 256, shape),
        "int32_above_255": lambda: rng.integers(0, 300, shape).astype(np.int32) + 256,
        "complex": lambda: unit.astype(np.complex64),
    }[kind]()


VALID_IMAGE_KINDS = ("uint8", "uint16", "bool", "float32", "float64", "float16",
                     "int64_in_range")
IMAGE_KINDS = VALID_IMAGE_KINDS + ("float_above_one", "float_negative", "float_nan",
                                   "int_negative", "int32_above_255", "complex")
VALID_CHANNELS = (None, 1, 3, 4)  # None: a 2-D grayscale image
LAYOUTS = ("contiguous", "strided", "fortran", "reversed", "read_only")


def with_layout(array, layout):
    """``array`` (same values) as a non-contiguous, Fortran, reversed or read-only array."""
    if layout == "strided":
        big = np.zeros((2 * array.shape[0], 2 * array.shape[1]) + array.shape[2:],
                       array.dtype)
        big[::2, ::2] = array
        return big[::2, ::2]
    if layout == "fortran":
        return np.asfortranarray(array)
    if layout == "reversed":
        return np.ascontiguousarray(array[::-1, ::-1])[::-1, ::-1]
    if layout == "read_only":
        array = array.copy()
        array.flags.writeable = False
    return array


@dataclass
class ImageCase:
    """One fuzzed image (an array or a file kind) and what the extractor must do."""

    image: object
    shape: tuple  # (H, W); None for a file that is no image
    valid: bool  # content and size acceptable to DinoFeatures(test_vit)


image_sizes = st.one_of(
    st.tuples(st.integers(1, 48), st.integers(1, 48)),  # around one patch, odd sizes
    st.sampled_from([(1, 1), (15, 15), (16, 16), (15, 64), (17, 33), (31, 47)]),
    st.tuples(st.integers(1, 3), st.integers(1, 300)),  # 1 x N strips
    st.tuples(st.integers(1, 300), st.integers(1, 3)),  # N x 1 strips
    st.tuples(st.integers(16, 20), st.integers(150, 400)),  # extreme aspect ratios
    st.tuples(st.integers(150, 400), st.integers(16, 20)),
)


@st.composite
def image_arrays(draw, sizes=image_sizes, kinds=IMAGE_KINDS, channels=(None, 1, 2, 3, 4, 5)):
    """An image array of any size, dtype, value range, channel count and memory layout."""
    shape = draw(sizes)
    n_channels = draw(st.sampled_from(channels))
    kind = draw(st.sampled_from(kinds))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    full = shape if n_channels is None else (*shape, n_channels)
    image = with_layout(_image_values(kind, full, rng), draw(st.sampled_from(LAYOUTS)))
    valid = kind in VALID_IMAGE_KINDS and n_channels in VALID_CHANNELS and min(shape) >= PATCH
    return ImageCase(image, shape, valid)


valid_images = image_arrays(
    sizes=st.one_of(st.tuples(st.integers(16, 64), st.integers(16, 64)),
                    st.tuples(st.just(16), st.integers(16, 300)),
                    st.tuples(st.integers(16, 300), st.just(16))),
    kinds=VALID_IMAGE_KINDS, channels=VALID_CHANNELS)

image_items = st.one_of(
    image_arrays(), image_arrays(),
    st.sampled_from(sorted(FILE_SHAPES)).map(lambda kind: ImageCase(kind, FILE_SHAPES[kind],
                                                                    True)),
    st.sampled_from(["text", "truncated_png", "missing", "folder", None, 3.5]).map(
        lambda item: ImageCase(item, None, False)),
)


def _resolve(item, files):
    """A file kind becomes its path; arrays and other objects stay as they are."""
    return files[item] if isinstance(item, str) else item


def _container(items, kind):
    """``items`` as a list, tuple, generator or (when possible) a stacked array."""
    if kind == "tuple":
        return tuple(items)
    if kind == "generator":
        return (item for item in items)
    if kind == "stack" and all(isinstance(item, np.ndarray) and item.ndim == 3
                               for item in items) \
            and len({(item.shape, item.dtype) for item in items}) == 1:
        return np.stack(items)
    return list(items)


CONTAINERS = ("list", "tuple", "generator", "stack")


@given(cases=st.lists(image_items, min_size=1, max_size=3),
       container=st.sampled_from(CONTAINERS))
def test_dino_features_on_fuzzed_images(tiny_extractor, files, cases, container):
    bad = {f"X[{i}]" for i, case in enumerate(cases) if not case.valid}
    shapes = [case.shape for case in cases]
    items = [_resolve(case.image, files) for case in cases]
    check_contract("DinoFeatures", lambda: tiny_extractor.transform(_container(items, container)),
                   patch_features_of(shapes, [shape and (shape[0] // PATCH, shape[1] // PATCH)
                                              for shape in shapes]),
                   bad=bad)


def _expected_grid(shape, resize, stride):
    """Patch grid of an image of ``shape`` (None when a side is below one patch)."""
    H, W = shape
    if resize is None:
        target = (H, W)
    elif isinstance(resize, int):
        scale = resize / min(H, W)
        target = (H * scale, W * scale)
    else:
        target = resize
    sides = [int(round(side)) // PATCH * PATCH for side in target]
    if min(sides) < PATCH:
        return None
    return tuple((side - PATCH) // stride + 1 for side in sides)


DINO_PARAMS = {  # parameter -> (valid values, invalid values)
    "resize": ([None, 16, 40, (16, 48), (48, 32), (8, 40)], [0, -16, (16,), (0, 16), 2.5]),
    "stride": ([None, 16, 8, 4], [3, 0, 32, 8.0]),
    "facet": (list(FACETS), ["keys"]),
    "layer": ([-1, 0, TINY_BLOCKS - 1, -TINY_BLOCKS], [TINY_BLOCKS, -TINY_BLOCKS - 1, 1.0]),
    "normalize": (list(NORMALIZATIONS), ["L2"]),
    "batch_size": ([1, 8], [0]),
    "return_attention": ([False, True], []),
    "keep_image": ([True, False], []),
}


@st.composite
def dino_params(draw):
    """DinoFeatures parameters, each valid or not; returns (params, invalid names)."""
    params, bad = {}, set()
    for name, (valid, invalid) in DINO_PARAMS.items():
        if invalid and draw(st.integers(0, 9)) == 0:
            params[name] = draw(st.sampled_from(invalid))
            bad.add(name)
        else:
            params[name] = draw(st.sampled_from(valid))
    return params, bad


@given(params_bad=dino_params(), cases=st.lists(valid_images, min_size=1, max_size=2))
def test_dino_features_parameters(params_bad, cases):
    params, bad = params_bad
    extractor = DinoFeatures(backbone="test_vit", weights=None, device="cpu", **params)
    stride = params["stride"] or PATCH
    grids = [_expected_grid(case.shape, params["resize"], stride) if not bad else None
             for case in cases]
    bad = bad | {f"X[{i}]" for i, grid in enumerate(grids) if grid is None and not bad}
    check_contract("DinoFeatures", lambda: extractor.transform([case.image for case in cases]),
                   patch_features_of([case.shape for case in cases], grids,
                                     heads=2 if params["return_attention"] else None,
                                     keep_image=params["keep_image"]),
                   bad=bad)


@given(case=valid_images, layout=st.sampled_from(LAYOUTS[1:]))
def test_dino_features_do_not_depend_on_memory_layout(tiny_extractor, case, layout):
    image = np.ascontiguousarray(case.image)
    check = patch_features_of([case.shape], [(case.shape[0] // PATCH, case.shape[1] // PATCH)])
    expected = check_contract("DinoFeatures", lambda: tiny_extractor.transform([image]), check)
    got = check_contract("DinoFeatures", lambda: tiny_extractor.transform(
        (img for img in [with_layout(image, layout)])), check)
    np.testing.assert_array_equal(got[0].features, expected[0].features)
    np.testing.assert_array_equal(got[0].image, expected[0].image)


# --------------------------------------------------------------------------- #
# Feature grids
# --------------------------------------------------------------------------- #
FEATURE_KINDS = ("blobs", "gaussian", "identical", "two_values", "integers", "tiny", "large")
grid_shapes = st.one_of(
    st.tuples(st.integers(1, 6), st.integers(1, 6)),
    st.sampled_from([(1, 1), (1, 2), (2, 1)]),  # a single patch, two-patch grids
    st.tuples(st.just(1), st.integers(1, 24)),  # 1 x N grids
    st.tuples(st.integers(1, 24), st.just(1)),
)


def make_grid(kind, shape, d, seed, dtype=np.float32):
    """A finite ``(h, w, d)`` feature grid of value ``kind``."""
    rng = np.random.default_rng(seed)
    h, w = shape
    if kind == "blobs":
        grid = make_segmentation_blobs(grid_shape=shape, n_segments=min(2, h * w),
                                       n_features=d, random_state=seed)[0][0]
    elif kind == "identical":  # zero variance
        grid = np.broadcast_to(rng.standard_normal(d), (h, w, d))
    elif kind == "two_values":
        grid = rng.standard_normal((2, d))[rng.integers(0, 2, shape)]
    elif kind == "integers":
        return rng.integers(-3, 4, (h, w, d))
    else:
        scale = {"gaussian": 1.0, "tiny": 1e-30, "large": 1e14}[kind]
        grid = scale * rng.standard_normal((h, w, d))
    return np.ascontiguousarray(grid, dtype=dtype)


@st.composite
def feature_grids(draw, d):
    """A valid ``(h, w, d)`` grid of any kind, dtype and memory layout."""
    kind = draw(st.sampled_from(FEATURE_KINDS))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    grid = make_grid(kind, draw(grid_shapes), d, draw(st.integers(0, 2**32 - 1)), dtype)
    return with_layout(grid, draw(st.sampled_from(LAYOUTS)))


def _set_one(grid, value):
    out = grid.astype(np.float64)
    out.flat[out.size // 2] = value
    return out


BAD_GRIDS = {  # a valid grid -> an invalid item
    "nan": lambda g: _set_one(g, np.nan),
    "inf": lambda g: _set_one(g, -np.inf),
    "beyond_float32": lambda g: _set_one(g, 1e300),
    "too_large": lambda g: _set_one(g, 1e20),
    "bool": lambda g: g > 0,
    "complex": lambda g: g.astype(np.complex64),
    "strings": lambda g: np.full(g.shape, "a"),
    "two_dims": lambda g: g[..., 0],
    "four_dims": lambda g: g[None],
    "empty": lambda g: g[:0],
    "ragged": lambda g: [[[0.0] * g.shape[2]] * 2, [[0.0] * g.shape[2]]],
    "none": lambda g: None,
    "path": lambda g: "features.npy",
    "other_dimension": lambda g: np.concatenate([g, g[..., :1]], axis=-1),
    "bad_image_shape": lambda g: PatchFeatures(g, image_shape=(0, g.shape[1])),
    "image_not_matching": lambda g: PatchFeatures(
        g, image_shape=(2 * g.shape[0], 2 * g.shape[1]), image=np.zeros((5, 5, 3), np.uint8)),
    "attention_not_matching": lambda g: PatchFeatures(
        g, image_shape=g.shape[:2], attention=np.ones((2, g.shape[0] + 1, g.shape[1]))),
}


@st.composite
def patch_features(draw, d):
    """A valid grid wrapped as PatchFeatures of a larger image, maybe with image and
    attention; returns (item, label shape)."""
    grid = draw(feature_grids(d))
    h, w = grid.shape[:2]
    scale = draw(st.integers(1, 16))
    shape = (h * scale + draw(st.integers(0, scale - 1)),
             w * scale + draw(st.integers(0, scale - 1)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8) if draw(st.booleans()) else None
    attention = rng.random((2, h, w)) if draw(st.booleans()) else None
    features = grid.tolist() if draw(st.integers(0, 9)) == 0 else grid  # nested lists too
    return PatchFeatures(features, image_shape=shape, image=image, attention=attention), shape


@dataclass
class FeatureCase:
    """A fuzzed segmenter input: items, their container, expected label shapes, flaws."""

    items: list
    container: str
    shapes: list
    bad: set
    d: int

    def X(self):
        """The input, built afresh (a generator is consumed by one call)."""
        return _container(self.items, self.container)


@st.composite
def feature_cases(draw):
    """1-3 grids (plain arrays or PatchFeatures) of one dimension, maybe one bad item."""
    d = draw(st.sampled_from(FEATURE_DIMS))
    items, shapes = [], []
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.booleans()):
            grid = draw(feature_grids(d))
            items.append(grid)
            shapes.append(grid.shape[:2])
        else:
            item, shape = draw(patch_features(d))
            items.append(item)
            shapes.append(shape)
    bad = set()
    if draw(st.integers(0, 2)) == 0:
        flaw = draw(st.sampled_from(sorted(BAD_GRIDS)))
        # a grid of another dimension is bad only after a first one to differ from
        index = draw(st.integers(1 if flaw == "other_dimension" else 0, len(items)))
        base = make_grid("gaussian", (2, 3), d, 0)
        items.insert(index, BAD_GRIDS[flaw](base))
        shapes.insert(index, None)
        bad = {f"X[{index}]"}
    return FeatureCase(items, draw(st.sampled_from(CONTAINERS)), shapes, bad, d)


@pytest.mark.parametrize("name", sorted(SEGMENTERS))
@given(case=feature_cases())
def test_segmenters_on_fuzzed_features(name, prefitted, case):
    check = labels_of(case.shapes, DATASET_CLASSES.get(name))
    refusals = ("n_classes",) if name in DATASET_CLASSES else ()  # too few training patches
    check_contract(name, lambda: SEGMENTERS[name]().fit_predict(case.X()), check,
                   bad=case.bad, refusals=refusals)
    fitted = prefitted(name, case.d)
    check_contract(name, lambda: fitted.predict(case.X()), check, bad=case.bad)


@pytest.mark.parametrize("name", sorted(SEGMENTERS))
@given(cases=st.lists(valid_images, min_size=1, max_size=2))
def test_segmenters_on_fuzzed_images(name, attention_extractor, prefitted_on_images, cases):
    X = attention_extractor.transform([case.image for case in cases])
    shapes = [case.shape for case in cases]
    check = labels_of(shapes, DATASET_CLASSES.get(name))
    refusals = ("n_classes",) if name in DATASET_CLASSES else ()
    check_contract(name, lambda: SEGMENTERS[name]().fit_predict(X), check, refusals=refusals)
    check_contract(name, lambda: prefitted_on_images(name).predict(X), check)
    if name in IMAGE_VARIANTS:
        variant = IMAGE_VARIANTS[name]
        check = labels_of(shapes, variant.get("n_classes", DATASET_CLASSES.get(name)))
        check_contract(name, lambda: SEGMENTERS[name]().set_params(**variant).fit_predict(X),
                       check, refusals=refusals)


@pytest.mark.parametrize("name", sorted(SEGMENTERS))
@given(grids=st.lists(feature_grids(3), min_size=1, max_size=3),
       layout=st.sampled_from(LAYOUTS[1:]))
def test_labels_do_not_depend_on_memory_layout_or_container(name, grids, layout):
    contiguous = [np.ascontiguousarray(grid) for grid in grids]
    check = labels_of([grid.shape[:2] for grid in grids], DATASET_CLASSES.get(name))
    refusals = ("n_classes",) if name in DATASET_CLASSES else ()
    expected = check_contract(name, lambda: SEGMENTERS[name]().fit_predict(contiguous), check,
                              refusals=refusals)
    others = [[with_layout(grid, layout) for grid in contiguous],
              (grid for grid in contiguous)]
    for X in others:
        got = check_contract(name, lambda: SEGMENTERS[name]().fit_predict(X), check,
                             refusals=refusals)
        if isinstance(expected, Exception):
            assert str(got) == str(expected)
        else:
            for a, b in zip(got, expected):
                np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", sorted(SEGMENTERS))
@given(shape=grid_shapes, d=st.sampled_from(FEATURE_DIMS), seed=st.integers(0, 2**32 - 1))
def test_identical_feature_vectors_give_one_segment(name, prefitted, shape, d, seed):
    grid = make_grid("identical", shape, d, seed)
    labels = check_contract(name, lambda: prefitted(name, d).predict([grid]),
                            labels_of([shape], DATASET_CLASSES.get(name)))
    assert len(np.unique(labels[0])) == 1


# --------------------------------------------------------------------------- #
# Containers
# --------------------------------------------------------------------------- #
BAD_CONTAINERS = {  # one valid item -> a container that is not a list of them
    "empty_list": lambda item: [],
    "single_array": lambda item: item,
    "none": lambda item: None,
    "single_path": lambda item: "image.png",
    "number": lambda item: 3,
    "five_dims": lambda item: item[None, None],
}


@pytest.mark.parametrize("container", sorted(BAD_CONTAINERS))
@pytest.mark.parametrize("name", sorted(SEGMENTERS) + ["DinoFeatures"])
def test_bad_containers_are_refused_by_name(name, container, tiny_extractor):
    if name == "DinoFeatures":
        item = np.zeros((32, 48, 3), np.uint8)
        call = tiny_extractor.transform
    else:
        item = make_grid("blobs", (6, 7), 3, 0)
        call = SEGMENTERS[name]().fit_predict
    check_contract(name, lambda: call(BAD_CONTAINERS[container](item)), None, bad={"X"})


# --------------------------------------------------------------------------- #
# The real checkpoint (skipped without SKLEARN_USEG_WEIGHTS)
# --------------------------------------------------------------------------- #
@pytest.mark.real_data
def test_real_checkpoint_on_odd_images(weights_path):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (14, 14, 3), dtype=np.uint8),  # exactly one patch
              rng.integers(0, 256, (15, 200), dtype=np.uint8),  # grayscale strip
              rng.integers(0, 256, (29, 43, 4), dtype=np.uint8),  # RGBA, odd sizes
              with_layout(rng.random((200, 14, 3)), "strided"),  # float, non-contiguous
              rng.random((50, 37)) > 0.5]  # bool
    shapes = [image.shape[:2] for image in images]
    extractor = DinoFeatures(weights=weights_path, device="cpu")
    features = check_contract(
        "DinoFeatures (real)", lambda: extractor.transform(images),
        patch_features_of(shapes, [(h // 14, w // 14) for h, w in shapes], dim=384))
    check_contract("DinoFeatures (real)", lambda: extractor.transform(
        images[:2] + [rng.integers(0, 256, (13, 30, 3), dtype=np.uint8)]), None, bad={"X[2]"})
    for name in ("kmeans", "clasp", "oap"):
        check_contract(f"{name} (real)", lambda: SEGMENTERS[name]().fit_predict(features),
                       labels_of(shapes))


# --------------------------------------------------------------------------- #
# Regression tests: the bugs this suite found
# --------------------------------------------------------------------------- #
def test_features_beyond_float32_range_are_refused_by_name():
    # was: the float32 cast overflowed (RuntimeWarning, then "features contain NaN or
    # inf" for values the user never gave); 1e30 float32 features overflowed in the L2
    # normalisation and were silently segmented as all-zero features
    grid = make_grid("gaussian", (4, 5), 8, 0)
    for features in (grid.astype(np.float64) * 1e300, grid * np.float32(1e30)):
        with pytest.raises(ValueError, match=r"X\[0\]: feature values must lie within"):
            KMeansSegmenter(2).fit_predict([features])


def test_ragged_feature_lists_are_a_clean_type_error():
    # was: numpy's ValueError "setting an array element with a sequence", naming nothing
    with pytest.raises(TypeError, match=r"X\[0\]: expected a numeric \(h, w, d\)"):
        KMeansSegmenter(2).fit_predict([[[[1.0, 2.0], [3.0]]]])


def test_none_image_error_names_its_type(tiny_extractor):
    # was: "X[0]: expected an image array or a path, got ndarray"
    with pytest.raises(TypeError, match=r"X\[0\]: .* got NoneType"):
        tiny_extractor.transform([None])


def test_five_dimensional_array_is_not_told_to_be_wrapped_in_a_list():
    # was: "... got a single 5-D array ...; wrap it in a list: [X]", which cannot work
    with pytest.raises(TypeError, match="5-D array") as info:
        KMeansSegmenter(2).fit_predict(np.zeros((1, 1, 4, 5, 8)))
    assert "wrap it in a list" not in str(info.value)


def test_patch_features_with_nested_list_features_are_accepted():
    # was: AttributeError: 'list' object has no attribute 'shape'
    grid = make_grid("blobs", (4, 5), 3, 0)
    labels = KMeansSegmenter(2, random_state=0).fit_predict(
        [PatchFeatures(grid.tolist(), image_shape=(8, 10))])
    assert labels[0].shape == (8, 10) and labels[0].dtype == np.int32


@pytest.mark.parametrize("image_shape", [(0, 5), (-3, 5), (4, 5, 3), (4.5, 5), None])
@pytest.mark.parametrize("name", ["kmeans", "acseg"])
def test_patch_features_with_a_bad_image_shape_are_refused(name, image_shape):
    # was: labels of shape (0, 5) or (5, 5), ZeroDivisionError, torch's RuntimeError,
    # "too many values to unpack" or "'NoneType' object is not iterable"
    pf = PatchFeatures(make_grid("blobs", (4, 5), 3, 0), image_shape=image_shape)
    with pytest.raises(ValueError, match=r"X\[0\]\.image_shape must be a pair of positive"):
        SEGMENTERS[name]().fit_predict([pf])


@pytest.mark.parametrize("image", [np.zeros((10, 80, 3), np.uint8),
                                   np.zeros((64, 80), np.uint8),
                                   np.zeros((64, 80, 3))])
def test_patch_features_image_must_match_image_shape(image):
    # was: IL2VSegmenter silently used an image of another size or float values as
    # colours, and failed on a grayscale one with torch's RuntimeError (permute)
    pf = PatchFeatures(make_grid("blobs", (4, 5), 3, 0), image_shape=(64, 80), image=image)
    with pytest.raises(ValueError, match=r"X\[0\]\.image must be an \(H, W, 3\) uint8"):
        SEGMENTERS["il2vseg"]().fit_predict([pf])


def test_patch_features_attention_must_match_the_grid():
    # was: numpy's "matmul: Input operand 1 has a mismatch in its core dimension 0"
    pf = PatchFeatures(make_grid("blobs", (4, 5), 8, 0), image_shape=(8, 10),
                       attention=np.ones((2, 3, 3), np.float32))
    sem = SemanticLabeler(KMeansSegmenter(3, random_state=0), n_classes=2, background=True)
    with pytest.raises(ValueError, match=r"X\[1\]\.attention must be .* \(heads, 4, 5\)"):
        sem.fit([pf.features, pf])


@pytest.mark.parametrize("name", ["acseg", "il2vseg", "kmeans"])
def test_grids_of_different_dimensions_are_refused_at_fit(name):
    # was: ACSeg "could not broadcast input array from shape (20,3) into shape (20,8)",
    # IL2Vseg torch's RuntimeError "mat1 and mat2 shapes cannot be multiplied"; the
    # others fitted and refused the same X at predict
    grid = make_grid("blobs", (4, 5), 8, 0)
    with pytest.raises(ValueError, match=r"X\[1\] has 3 features per patch, but X\[0\] has 8"):
        SEGMENTERS[name]().fit([grid, grid[..., :3]])


def test_il2vseg_predicts_grids_with_fewer_patches_than_classes():
    # was: sklearn's "n_samples=1 should be >= n_clusters=3" from the colour FCM of a
    # one-patch image (a 16 x 16 photo on a patch-16 backbone)
    rng = np.random.default_rng(0)
    big = PatchFeatures(make_grid("blobs", (6, 6), 8, 0), image_shape=(96, 96),
                        image=rng.integers(0, 256, (96, 96, 3), dtype=np.uint8))
    small = PatchFeatures(make_grid("gaussian", (1, 2), 8, 1), image_shape=(16, 32),
                          image=rng.integers(0, 256, (16, 32, 3), dtype=np.uint8))
    labels = SEGMENTERS["il2vseg"]().fit([big]).predict([small])
    assert labels[0].shape == (16, 32) and labels[0].max() < 3


def test_il2vseg_fit_on_fewer_patches_than_classes_names_n_classes():
    # was: sklearn's "n_samples=2 should be >= n_clusters=3", naming neither X nor n_classes
    with pytest.raises(ValueError, match=r"X has 2 patches in all, fewer than n_classes=3"):
        SEGMENTERS["il2vseg"]().fit([make_grid("gaussian", (1, 2), 8, 0)])


def test_oap_gives_one_segment_for_identical_features():
    # was: centring left all-zero features, nothing merged: 20 segments on a 4 x 5 grid
    labels = OAPSegmenter().fit_predict([np.ones((4, 5, 8), np.float32)])
    np.testing.assert_array_equal(labels[0], 0)


@pytest.mark.parametrize("name", sorted(SEGMENTERS))
def test_fit_predict_reads_a_generator_once(name):
    # was: fit consumed the generator and predict raised "X is empty"
    grids = [make_grid("blobs", (4, 5), 3, seed) for seed in range(2)]
    expected = SEGMENTERS[name]().fit_predict(grids)
    got = SEGMENTERS[name]().fit_predict(grid for grid in grids)
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)


def test_identical_rows_centre_to_exact_zeros():
    # was: a float32 mean left round-off (-1.5e-08 here) that "center_l2" blew up into a
    # unit direction, and which changed with the memory layout of the input
    rows = np.tile(np.array([0.18905339, -0.5227485, -0.41306356], np.float32), (8, 1))
    for method in ("center", "center_l2"):
        np.testing.assert_array_equal(normalize_features(rows, method), 0)


def test_fortran_ordered_features_give_the_same_labels():
    # was: IL2VSegmenter labelled the second image 1 from C-ordered grids and 0 from the
    # same grids in Fortran order (a layout-dependent round-off, see the test above)
    grids = [np.array([[[1.0818076, 0.3813204, 0.37815458]]], np.float32),
             np.tile(np.array([0.18905339, -0.5227485, -0.41306356], np.float32), (1, 8, 1))]
    expected = SEGMENTERS["il2vseg"]().fit_predict(grids)
    got = SEGMENTERS["il2vseg"]().fit_predict([np.asfortranarray(grid) for grid in grids])
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)


def test_crf_accepts_a_read_only_image(attention_extractor):
    # was: pydensecrf's "ValueError: buffer source array is read-only" (the extractor keeps
    # the caller's read-only array as PatchFeatures.image)
    image = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    image.flags.writeable = False
    X = attention_extractor.transform([image])
    labels = SEGMENTERS["clasp"]().set_params(refine="crf").fit_predict(X)
    assert labels[0].shape == (32, 48)


def test_a_folder_is_not_reported_as_a_missing_file(tiny_extractor, tmp_path):
    # was: "X[0]: no such image file '<folder>'" for a folder that exists
    with pytest.raises(ValueError, match=r"X\[0\]: expected an image file, got the folder"):
        tiny_extractor.transform([tmp_path])
