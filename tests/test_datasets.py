"""Tests for sklearn_useg.datasets (synthetic generators and real-data loaders)."""

import os

import numpy as np
import pytest
from scipy import ndimage

from sklearn_useg.datasets import (
    CAMVID_CLASS_NAMES,
    _region_layout,
    IGNORE_INDEX,
    get_data_home,
    load_bsds500,
    load_camvid,
    load_image_folder,
    load_weizmann_horse,
    make_color_blobs,
    make_segmentation_blobs,
)

FOUR = ndimage.generate_binary_structure(2, 1)


def _assert_partition(labels, k):
    """Labels are 0..k-1, all present, each one 4-connected component."""
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(np.unique(labels), np.arange(k))
    for lab in range(k):
        _, n_comp = ndimage.label(labels == lab, structure=FOUR)
        assert n_comp == 1, f"region {lab} has {n_comp} components"


# --------------------------------------------------------------------------- #
# Synthetic generators
# --------------------------------------------------------------------------- #
def test_segmentation_blobs_shapes_dtypes():
    X, y = make_segmentation_blobs(
        3, grid_shape=(10, 12), n_segments=5, n_features=7, random_state=0
    )
    assert len(X) == len(y) == 3
    for xi, yi in zip(X, y):
        assert xi.shape == (10, 12, 7) and xi.dtype == np.float32
        assert yi.shape == (10, 12)
        _assert_partition(yi, 5)


def test_segmentation_blobs_patch_size():
    X, y = make_segmentation_blobs(
        2, grid_shape=(6, 8), n_segments=3, patch_size=4, random_state=1
    )
    assert X[0].shape == (6, 8, 16)
    assert y[0].shape == (24, 32) and y[0].dtype == np.int32
    # Each 4x4 block is constant, and equals the grid-resolution labels.
    _, y_grid = make_segmentation_blobs(
        2, grid_shape=(6, 8), n_segments=3, patch_size=1, random_state=1
    )
    np.testing.assert_array_equal(y[0][::4, ::4], y_grid[0])
    np.testing.assert_array_equal(np.kron(y_grid[1], np.ones((4, 4), int)), y[1])
    _assert_partition(y[0], 3)


def test_color_blobs_shapes_dtypes():
    imgs, labels = make_color_blobs(2, image_shape=(20, 30), n_segments=6, random_state=0)
    assert len(imgs) == len(labels) == 2
    for img, lab in zip(imgs, labels):
        assert img.shape == (20, 30, 3) and img.dtype == np.uint8
        assert lab.shape == (20, 30)
        _assert_partition(lab, 6)


def test_color_blobs_distinct_colours_recoverable():
    imgs, labels = make_color_blobs(
        1, image_shape=(32, 40), n_segments=5, noise=0, random_state=3
    )
    img, lab = imgs[0].reshape(-1, 3), labels[0].ravel()
    colours = np.array([img[lab == k][0] for k in range(5)])
    assert len(np.unique(colours, axis=0)) == 5
    for k in range(5):  # noise-free: each region is flat
        assert (img[lab == k] == colours[k]).all()


@pytest.mark.parametrize("seed", range(20))
def test_region_layout_connected_many_segments(seed):
    rng = np.random.RandomState(seed)
    shape = (int(rng.randint(1, 40)), int(rng.randint(1, 40)))
    k = int(rng.randint(1, min(60, shape[0] * shape[1]) + 1))
    _assert_partition(_region_layout(shape, k, rng), k)


def test_every_cell_a_segment():
    _, y = make_segmentation_blobs(grid_shape=(3, 4), n_segments=12, random_state=0)
    np.testing.assert_array_equal(np.sort(y[0].ravel()), np.arange(12))


@pytest.mark.parametrize("maker", [make_segmentation_blobs, make_color_blobs])
def test_determinism_and_seed_dependence(maker):
    a = maker(2, n_segments=4, random_state=42)
    b = maker(2, n_segments=4, random_state=42)
    c = maker(2, n_segments=4, random_state=43)
    for xa, xb in zip(a[0] + a[1], b[0] + b[1]):
        np.testing.assert_array_equal(xa, xb)
    assert not np.array_equal(a[0][0], c[0][0])
    assert not np.array_equal(a[1][0], c[1][0])
    # A RandomState instance works too.
    d = maker(1, n_segments=4, random_state=np.random.RandomState(42))
    np.testing.assert_array_equal(d[1][0], a[1][0])


def test_separability_nearest_centroid():
    # Noise-free features: nearest centroid recovers labels exactly.
    X, y = make_segmentation_blobs(
        3, grid_shape=(12, 16), n_segments=6, n_features=8, noise=0.0, random_state=0
    )
    for xi, yi in zip(X, y):
        feats, lab = xi.reshape(-1, xi.shape[-1]), yi.ravel()
        centroids = np.stack([feats[lab == k].mean(0) for k in range(6)])
        np.testing.assert_allclose(np.linalg.norm(centroids, axis=1), 1.0, rtol=1e-5)
        dist = ((feats[:, None, :] - centroids[None]) ** 2).sum(-1)
        np.testing.assert_array_equal(dist.argmin(1), lab)


def test_separation_and_noise_scale():
    X, y = make_segmentation_blobs(
        1, grid_shape=(30, 30), n_segments=2, n_features=4, noise=0.5,
        separation=3.0, random_state=0,
    )
    feats, lab = X[0].reshape(-1, 4), y[0].ravel()
    for k in range(2):
        c = feats[lab == k].mean(0)
        assert abs(np.linalg.norm(c) - 3.0) < 0.3
        assert abs((feats[lab == k] - c).std() - 0.5) < 0.05


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_images": 0}, "n_images"),
        ({"n_images": 1.5}, "n_images"),
        ({"n_images": True}, "n_images"),
        ({"grid_shape": (0, 4)}, "grid_shape"),
        ({"grid_shape": (4,)}, "grid_shape"),
        ({"grid_shape": 5}, "grid_shape"),
        ({"n_segments": 0}, "n_segments"),
        ({"grid_shape": (2, 2), "n_segments": 5}, "exceeds"),
        ({"n_features": 0}, "n_features"),
        ({"n_features": 1, "n_segments": 3}, "n_features=1"),
        ({"noise": -0.1}, "noise"),
        ({"noise": float("nan")}, "noise"),
        ({"separation": 0.0}, "separation"),
        ({"patch_size": 0}, "patch_size"),
    ],
)
def test_segmentation_blobs_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_segmentation_blobs(**kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_images": -1}, "n_images"),
        ({"image_shape": (8, -1)}, "image_shape"),
        ({"image_shape": (2, 2), "n_segments": 5}, "exceeds"),
        ({"n_segments": 2.0}, "n_segments"),
        ({"noise": -1}, "noise"),
    ],
)
def test_color_blobs_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_color_blobs(**kwargs)


# --------------------------------------------------------------------------- #
# data_home resolution
# --------------------------------------------------------------------------- #
def test_missing_data_home_clear_error(monkeypatch):
    monkeypatch.delenv("SKLEARN_USEG_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="SKLEARN_USEG_DATA"):
        get_data_home()
    with pytest.raises(FileNotFoundError, match="SKLEARN_USEG_DATA"):
        load_bsds500(n_images=1)


def test_nonexistent_data_home(tmp_path, monkeypatch):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="nope"):
        get_data_home(missing)
    monkeypatch.setenv("SKLEARN_USEG_DATA", str(missing))
    with pytest.raises(FileNotFoundError, match="SKLEARN_USEG_DATA"):
        load_camvid()


def test_data_home_argument_and_env(tmp_path, monkeypatch):
    monkeypatch.setenv("SKLEARN_USEG_DATA", str(tmp_path))
    assert get_data_home() == str(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    assert get_data_home(other) == str(other)


def test_missing_dataset_folder_names_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="weizmann_horse") as exc:
        load_weizmann_horse(data_home=tmp_path)
    assert "SKLEARN_USEG_DATA" in str(exc.value)


def test_bad_split(tmp_path):
    with pytest.raises(ValueError, match="split"):
        load_bsds500("testing", data_home=tmp_path)
    with pytest.raises(ValueError, match="split"):
        load_camvid("valid", data_home=tmp_path)


def test_loaders_on_tiny_fake_tree(tmp_path):
    """Loaders work on a small synthetic folder tree (no real data needed)."""
    from PIL import Image
    from scipy.io import savemat

    rng = np.random.RandomState(0)
    # Weizmann: one image with a size different from its mask -> resized.
    (tmp_path / "weizmann_horse/images").mkdir(parents=True)
    (tmp_path / "weizmann_horse/masks").mkdir(parents=True)
    for i, size in enumerate([(10, 12), (8, 9)]):
        Image.fromarray(rng.randint(0, 255, (size[0] + i, size[1], 3), np.uint8)).save(
            tmp_path / f"weizmann_horse/images/horse00{i + 1}.jpg"
        )
        Image.fromarray((rng.rand(*size) > 0.5).astype(np.uint8)).save(
            tmp_path / f"weizmann_horse/masks/horse00{i + 1}.png"
        )
    d = load_weizmann_horse(data_home=tmp_path)
    assert d.filenames == ["horse001", "horse002"]
    assert d.images[1].shape == (8, 9, 3) and d.targets[1].shape == (8, 9)
    # BSDS: .mat with two annotators, labels from 1.
    for sub in ("images/val", "groundTruth/val"):
        (tmp_path / "bsds500" / sub).mkdir(parents=True)
    Image.fromarray(np.zeros((6, 5, 3), np.uint8)).save(tmp_path / "bsds500/images/val/1.jpg")
    gt = np.empty((1, 2), dtype=object)
    for j in range(2):
        seg = np.full((6, 5), 1 + j, np.uint16)
        gt[0, j] = {"Segmentation": seg, "Boundaries": np.zeros((6, 5), bool)}
    savemat(tmp_path / "bsds500/groundTruth/val/1.mat", {"groundTruth": gt})
    b = load_bsds500(data_home=tmp_path)
    assert len(b.targets[0]) == 2
    assert b.targets[0][0].dtype == np.int32
    assert b.targets[0][0].max() == 0 and b.targets[0][1].max() == 1


def _save_bsds_mat(path, segmentations):
    """A ``.mat`` file in the BSDS layout: a 1 x n cell of structs with 'Segmentation'."""
    from scipy.io import savemat

    gt = np.empty((1, len(segmentations)), dtype=object)
    for j, seg in enumerate(segmentations):
        gt[0, j] = {"Segmentation": seg.astype(np.uint16),
                    "Boundaries": np.zeros(seg.shape, bool)}
    savemat(path, {"groundTruth": gt})


def _save_image(path, shape, seed=0):
    from PIL import Image

    rng = np.random.RandomState(seed)
    Image.fromarray(rng.randint(0, 256, shape + (3,), dtype=np.uint8)).save(path)


@pytest.mark.parametrize("split", ["train", "test"])
def test_test_splits_on_standard_layouts(tmp_path, split):
    """``test`` reads the standard BSDS500 and CamVid layouts (tiny fake trees here)."""
    from PIL import Image

    for sub in (f"bsds500/images/{split}", f"bsds500/groundTruth/{split}",
                f"camvid/{split}", f"camvid/{split}annot"):
        (tmp_path / sub).mkdir(parents=True)
    for stem in ("2018", "3096"):
        _save_image(tmp_path / f"bsds500/images/{split}/{stem}.jpg", (6, 5))
        _save_bsds_mat(tmp_path / f"bsds500/groundTruth/{split}/{stem}.mat",
                       [np.ones((6, 5)), np.arange(30).reshape(6, 5) % 3 + 1])
        _save_image(tmp_path / f"camvid/{split}/{stem}.png", (4, 7))
        Image.fromarray(np.full((4, 7), 11, np.uint8)).save(
            tmp_path / f"camvid/{split}annot/{stem}.png")
    bsds = load_bsds500(split, data_home=tmp_path)
    assert bsds.filenames == ["2018", "3096"] and split in bsds.DESCR
    assert [len(maps) for maps in bsds.targets] == [2, 2]
    np.testing.assert_array_equal(np.unique(bsds.targets[1][1]), [0, 1, 2])
    camvid = load_camvid(split, data_home=tmp_path, n_images=1)
    assert camvid.filenames == ["2018"] and (camvid.targets[0] == IGNORE_INDEX).all()


def _folder(tmp_path, names, suffix=".jpg", shape=(6, 8)):
    images = tmp_path / "images"
    images.mkdir(exist_ok=True)
    for i, name in enumerate(names):
        _save_image(images / f"{name}{suffix}", shape, seed=i)
    return images


def test_load_image_folder_label_pngs(tmp_path):
    """Palette and grey PNGs give their label values; an ignore value becomes 255."""
    from PIL import Image

    images = _folder(tmp_path, ["a", "b"])
    masks = tmp_path / "masks"
    masks.mkdir()
    labels = np.arange(48).reshape(6, 8) % 4
    palette = Image.fromarray(labels.astype(np.uint8), mode="P")
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [9] * 756)
    palette.save(masks / "a.png")
    Image.fromarray((labels * 2).astype(np.uint8), mode="L").save(masks / "b.png")
    data = load_image_folder(images, masks)
    assert data.filenames == ["a", "b"] and data.ignore_index == IGNORE_INDEX
    assert data.images[0].shape == (6, 8, 3) and data.images[0].dtype == np.uint8
    np.testing.assert_array_equal(data.targets[0], labels)
    np.testing.assert_array_equal(data.targets[1], labels * 2)
    assert data.targets[0].dtype == np.int32
    data = load_image_folder(images, masks, ignore_index=6, n_images=2)
    np.testing.assert_array_equal(data.targets[1], np.where(labels == 3, 255, labels * 2))
    assert len(load_image_folder(images, masks, n_images=1).images) == 1


@pytest.mark.parametrize("foreground", [1, 255])
def test_load_image_folder_binary_masks(tmp_path, foreground):
    from PIL import Image

    images = _folder(tmp_path, ["horse"], suffix=".png", shape=(5, 9))
    masks = tmp_path / "masks"
    masks.mkdir()
    fg = np.zeros((4, 6), bool)
    fg[1:3, 2:5] = True
    Image.fromarray(fg.astype(np.uint8) * foreground).save(masks / "horse.png")
    data = load_image_folder(images, masks, binary=True)
    np.testing.assert_array_equal(data.targets[0], fg)
    assert data.images[0].shape == (4, 6, 3)  # resized to the mask


def test_load_image_folder_mat_and_images_only(tmp_path):
    images = _folder(tmp_path, ["x", "y"])
    masks = tmp_path / "gt"
    masks.mkdir()
    first, second = np.ones((6, 8)), np.repeat([1, 2], 24).reshape(6, 8)
    for stem in ("x", "y"):
        _save_bsds_mat(masks / f"{stem}.mat", [first, second, second])
    data = load_image_folder(images, masks)
    assert [len(maps) for maps in data.targets] == [3, 3]
    np.testing.assert_array_equal(data.targets[0][1], second - 1)
    only = load_image_folder(images)
    assert only.filenames == ["x", "y"] and "targets" not in only
    np.testing.assert_array_equal(only.images[1], data.images[1])


def test_load_image_folder_errors_name_the_file(tmp_path):
    from PIL import Image

    images = _folder(tmp_path, ["a", "b"])
    (images / "notes.txt").write_text("skipped: not an image type")
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(np.zeros((6, 8), np.uint8)).save(masks / "a.png")
    with pytest.raises(FileNotFoundError, match=r"No ground truth named 'b'.*b\.jpg"):
        load_image_folder(images, masks)
    Image.fromarray(np.zeros((6, 8), np.uint8)).save(masks / "b.png")
    Image.fromarray(np.zeros((6, 8), np.uint8)).save(masks / "c.png")
    with pytest.raises(FileNotFoundError, match=r"No image named 'c'.*c\.png"):
        load_image_folder(images, masks)
    (masks / "c.png").unlink()
    (masks / "b.png").write_text("not a png")
    with pytest.raises(ValueError, match=r"Cannot read .*b\.png"):
        load_image_folder(images, masks)
    Image.fromarray(np.full((6, 8, 3), [0, 0, 9], np.uint8)).save(masks / "b.png")
    with pytest.raises(ValueError, match=r"b\.png.* colour image"):
        load_image_folder(images, masks)
    (masks / "b.png").unlink()
    (masks / "b.mat").write_text("not a mat file")
    with pytest.raises(ValueError, match=r"Cannot read .*b\.mat"):
        load_image_folder(images, masks)
    (images / "b.jpg").write_text("not a jpeg")
    with pytest.raises(ValueError, match=r"Cannot read .*b\.jpg' as an image"):
        load_image_folder(images)
    _save_image(images / "a.png", (6, 8))
    with pytest.raises(ValueError, match="Two files with the stem 'a'"):
        load_image_folder(images)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="No '\\*\\.jpg' or"):
        load_image_folder(tmp_path / "empty")
    with pytest.raises(ValueError, match="ignore_index"):
        load_image_folder(images, masks, ignore_index=-1)


# --------------------------------------------------------------------------- #
# Real data (skipped unless SKLEARN_USEG_DATA points at the datasets)
# --------------------------------------------------------------------------- #
def _real_data_home(subdir):
    home = os.environ.get("SKLEARN_USEG_DATA")
    if not home:
        pytest.skip("SKLEARN_USEG_DATA not set; real-data loader tests skipped")
    if not os.path.isdir(os.path.join(home, subdir)):
        pytest.skip(f"SKLEARN_USEG_DATA={home!r} has no {subdir}/ folder")
    return home


@pytest.mark.real_data
@pytest.mark.parametrize("split", ["train", "val"])
def test_load_bsds500_real(split):
    _real_data_home("bsds500")
    d = load_bsds500(split, n_images=2)
    assert len(d.images) == len(d.targets) == len(d.filenames) == 2
    assert d.filenames == sorted(d.filenames)
    assert isinstance(d.DESCR, str)
    for img, maps in zip(d.images, d.targets):
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
        assert sorted(img.shape[:2]) == [321, 481]
        assert isinstance(maps, list) and 4 <= len(maps) <= 9
        for m in maps:
            assert m.dtype == np.int32 and m.shape == img.shape[:2]
            assert m.min() == 0


@pytest.mark.real_data
def test_load_weizmann_horse_real():
    _real_data_home("weizmann_horse")
    d = load_weizmann_horse(n_images=2)
    assert d.filenames == ["horse001", "horse002"]
    for img, m in zip(d.images, d.targets):
        assert img.dtype == np.uint8 and img.shape == m.shape + (3,)
        assert m.dtype == np.int32
        assert set(np.unique(m)) == {0, 1}


@pytest.mark.real_data
@pytest.mark.parametrize("split", ["train", "val"])
def test_load_camvid_real(split):
    _real_data_home("camvid")
    d = load_camvid(split, n_images=2)
    assert d.class_names == CAMVID_CLASS_NAMES and len(d.class_names) == 11
    assert d.ignore_index == 255
    for img, m in zip(d.images, d.targets):
        assert img.dtype == np.uint8 and img.shape == (360, 480, 3)
        assert m.dtype == np.int32 and m.shape == (360, 480)
        vals = set(np.unique(m).tolist())
        assert vals <= set(range(11)) | {255}
        assert 11 not in vals


def test_load_sample_images():
    from sklearn_useg.datasets import load_sample_images

    data = load_sample_images()
    assert data.filenames == ["astronaut", "chelsea", "coffee", "rocket"]
    assert all(img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8
               for img in data.images)
    assert load_sample_images("coffee").images[0].shape == (400, 600, 3)
    with pytest.raises(ValueError, match="names must be a non-empty subset"):
        load_sample_images(["lena"])
