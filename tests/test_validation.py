"""Input validation: images and features, conversions and clear errors."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sklearn_useg import PatchFeatures
from sklearn_useg._validation import check_features, check_image, check_images


@given(hnp.arrays(np.uint8, hnp.array_shapes(min_dims=2, max_dims=2, max_side=12)),
       st.sampled_from([None, 1, 3, 4]))
def test_any_uint8_image_becomes_rgb(image, channels):
    if channels is not None:
        image = np.repeat(image[:, :, None], channels, axis=2)
    out = check_image(image)
    assert out.dtype == np.uint8 and out.shape == image.shape[:2] + (3,)
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out[:, :, 0], image if channels is None else image[:, :, 0])


def test_dtype_conversions():
    np.testing.assert_array_equal(check_image(np.array([[True, False]]))[..., 0], [[255, 0]])
    np.testing.assert_array_equal(check_image(np.array([[0, 65535]], np.uint16))[..., 0],
                                  [[0, 255]])
    np.testing.assert_array_equal(check_image(np.array([[0.0, 0.5, 1.0]]))[..., 0],
                                  [[0, 128, 255]])
    np.testing.assert_array_equal(check_image(np.array([[3, 200]], np.int64))[..., 0],
                                  [[3, 200]])
    readonly = np.zeros((4, 4, 3), np.uint8)[:, ::-1]
    readonly.flags.writeable = False
    assert check_image(readonly).shape == (4, 4, 3)


@pytest.mark.parametrize("image, error, match", [
    (np.zeros((4, 4, 5), np.uint8), ValueError, r"X\[0\].*shape \(4, 4, 5\)"),
    (np.zeros((4,), np.uint8), ValueError, "expected an image of shape"),
    (np.zeros((0, 4, 3), np.uint8), ValueError, "empty dimension"),
    (np.full((4, 4), 1.5), ValueError, r"values in \[0, 1\]"),
    (np.full((4, 4), np.nan), ValueError, "NaN"),
    (np.full((4, 4), 300, np.int32), ValueError, r"\[0, 255\]"),
    (np.zeros((4, 4), np.complex64), TypeError, "unsupported image dtype"),
    (object(), TypeError, "expected an image array or a path"),
])
def test_bad_images_name_the_argument(image, error, match):
    with pytest.raises(error, match=match):
        check_images([image])


def test_bad_containers(tmp_path):
    with pytest.raises(ValueError, match="X is empty"):
        check_images([])
    with pytest.raises(TypeError, match="wrap it in a list"):
        check_images(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(TypeError, match="single path"):
        check_images("a.png")
    with pytest.raises(ValueError, match=r"X\[1\]: no such image file"):
        check_images([np.zeros((8, 8, 3), np.uint8), tmp_path / "missing.png"])
    not_image = tmp_path / "notes.txt"
    not_image.write_text("hello")
    with pytest.raises(ValueError, match=r"X\[0\]: cannot read"):
        check_images([not_image])
    assert len(check_images(np.zeros((2, 8, 8, 3), np.uint8))) == 2
    assert len(check_images(img for img in [np.zeros((8, 8, 3), np.uint8)])) == 1


def test_check_features_accepts_arrays_and_patch_features():
    grid = np.random.RandomState(0).rand(3, 4, 5)
    out = check_features([grid, PatchFeatures(grid.astype(np.float32), (30, 40))])
    assert out[0].features.dtype == np.float32 and out[0].image_shape == (3, 4)
    assert out[1].image_shape == (30, 40)


@pytest.mark.parametrize("features, error, match", [
    (np.zeros((3, 4)), ValueError, r"X\[0\].*shape \(h, w, d\)"),
    (np.zeros((0, 4, 2)), ValueError, "h, w, d >= 1"),
    (np.full((2, 2, 2), np.inf), ValueError, "NaN or inf"),
    (np.array([[["a"]]]), TypeError, "numeric"),
])
def test_bad_features(features, error, match):
    with pytest.raises(error, match=match):
        check_features([features])
