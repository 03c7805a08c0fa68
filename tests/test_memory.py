"""Bounded memory: ``max_patches`` caps every method's grid, labels stay full-size."""

import os

import numpy as np
import pytest

from conftest import CHEAP_SEGMENTERS
from sklearn_useg import DinoFeatures, PatchFeatures
from sklearn_useg.datasets import make_segmentation_blobs
from sklearn_useg.features import fit_grid
from sklearn_useg.segmenters._base import pool_patches

SEGMENTERS = {name: make for name, make in CHEAP_SEGMENTERS.items() if name != "semantic"}


def test_pool_patches_averages_to_at_most_max_patches():
    rng = np.random.RandomState(0)
    pf = PatchFeatures(features=rng.rand(30, 50, 4).astype(np.float32), image_shape=(300, 500),
                       attention=rng.rand(2, 30, 50).astype(np.float32))
    for cap in (1, 7, 100, 1499):
        pooled = pool_patches(pf, cap)
        assert 1 <= pooled.n_patches <= cap
        assert pooled.features.dtype == np.float32
        assert pooled.attention.shape == (2, *pooled.grid_shape)
        assert pooled.image_shape == (300, 500)
        np.testing.assert_allclose(pooled.features.mean(axis=(0, 1)),
                                   pf.features.mean(axis=(0, 1)), atol=0.05)
    assert pool_patches(pf, 1500) is pf and pool_patches(pf, None) is pf
    # an exact 2 x 2 pooling is the mean of each block
    pooled = pool_patches(pf, 15 * 25)
    np.testing.assert_allclose(pooled.features[0, 0], pf.features[:2, :2].mean(axis=(0, 1)),
                               rtol=1e-5)


def test_fit_grid_keeps_multiples_of_the_patch_and_the_aspect_ratio():
    assert fit_grid((476, 308), 14, 14, 4096) == (476, 308)
    assert fit_grid((476, 308), 14, 14, None) == (476, 308)
    for stride in (14, 7, 2):
        H, W = fit_grid((3990, 2996), 14, stride, 4096)
        assert H % 14 == 0 and W % 14 == 0
        assert ((H - 14) // stride + 1) * ((W - 14) // stride + 1) <= 4096
        assert abs(H / W - 3990 / 2996) < 0.1
    assert fit_grid((448, 448), 14, 14, 1) == (14, 14)


def test_dino_features_max_patches():
    image = np.random.RandomState(0).randint(0, 256, (700, 300, 3), np.uint8)
    extractor = DinoFeatures(backbone="test_vit", weights=None, device="cpu")
    assert extractor.transform([image])[0].grid_shape == (43, 18)
    capped = extractor.set_params(max_patches=100).transform([image])[0]
    assert capped.n_patches <= 100 and capped.image_shape == (700, 300)
    with pytest.raises(ValueError, match="max_patches must be a positive int"):
        extractor.set_params(max_patches=0).transform([image])


@pytest.mark.parametrize("name", sorted(SEGMENTERS))
def test_max_patches_pools_the_grid_and_labels_keep_their_shape(name):
    X, y = make_segmentation_blobs(2, grid_shape=(24, 32), n_segments=2, n_features=8,
                                   random_state=0)
    images = [np.repeat(np.repeat(np.where(t[..., None] == 1, 200, 30), 4, 0), 4, 1)
              .astype(np.uint8).repeat(3, axis=2) for t in y]
    X = [PatchFeatures(features=f, image_shape=img.shape[:2], image=img)
         for f, img in zip(X, images)]
    segmenter = SEGMENTERS[name]().set_params(max_patches=48)
    labels, details = segmenter.fit(X).predict(X, return_details=True)
    for lab, img in zip(labels, images):
        assert lab.shape == img.shape[:2] and lab.dtype == np.int32
    with pytest.raises(ValueError, match="max_patches"):
        SEGMENTERS[name]().set_params(max_patches=0).fit(X)


def _peak_rss_mb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024


def _current_rss_mb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


def _reset_peak_rss():
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # Linux >= 4.0: the peak (VmHWM) restarts from the current RSS


@pytest.fixture(scope="module")
def large_image_features():
    try:
        _reset_peak_rss()
    except OSError:
        pytest.skip("needs Linux /proc/self/clear_refs to measure peak memory")
    rng = np.random.RandomState(0)
    image = np.zeros((4000, 3000, 3), np.uint8)
    image[:, 1500:] = 200
    image[2000:, :, 1] = 120
    image += rng.randint(0, 20, image.shape).astype(np.uint8)
    _reset_peak_rss()
    start = _current_rss_mb()
    features = DinoFeatures(backbone="test_vit", weights=None, device="cpu",
                            max_patches=4096).transform([image])
    return features, _peak_rss_mb() - start


def test_4000_by_3000_image_features_in_bounded_memory(large_image_features):
    features, peak = large_image_features
    assert features[0].n_patches <= 4096 and features[0].image_shape == (4000, 3000)
    # native size would be 250 x 187 = 46,750 tokens; capped it is a few hundred MB
    assert peak < 1024, f"DinoFeatures peaked at {peak:.0f} MB over its start"


@pytest.mark.parametrize("name", sorted(SEGMENTERS))
def test_4000_by_3000_image_through_each_method_in_bounded_memory(name, large_image_features):
    features, _ = large_image_features
    _reset_peak_rss()
    start = _current_rss_mb()
    segmenter = SEGMENTERS[name]().set_params(max_patches=256)
    if name == "il2vseg":
        segmenter.set_params(n_classes=27)  # many score maps to upsample to 4000 x 3000
    labels = segmenter.fit(features).predict(features)
    peak = _peak_rss_mb() - start
    assert labels[0].shape == (4000, 3000) and labels[0].dtype == np.int32
    # the int32 label map alone is 46 MB; without the cap DeepCut and ACSeg need 300-600 MB
    # on these 4000 patches (and grow with the square of the grid)
    assert peak < 256, f"{name} peaked at {peak:.0f} MB over its start"


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_peak_memory_probe_sees_a_large_allocation():
    _reset_peak_rss()
    start = _current_rss_mb()
    import mmap

    block = mmap.mmap(-1, 64 * 2**20)  # fresh pages: never memory the allocator kept
    np.frombuffer(block, dtype=np.uint8)[:] = 1  # touched, so resident
    del block
    assert _peak_rss_mb() - start >= 60
