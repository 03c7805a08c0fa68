"""Shared fixtures: real weights and data are taken from the environment, else skipped."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

try:  # a quick default profile and a longer one for `--hypothesis-profile=thorough`
    from hypothesis import settings

    settings.register_profile("default", max_examples=25, deadline=None)
    settings.register_profile("thorough", max_examples=500, deadline=None)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
except ImportError:  # pragma: no cover - hypothesis is in the test extra
    pass


def _cheap_segmenters():
    from sklearn_useg import (ACSegSegmenter, CLASPSegmenter, DeepCutSegmenter,
                              IL2VSegmenter, KMeansSegmenter, OAPDistillSegmenter, OAPSegmenter,
                              SemanticLabeler)

    return {
        "kmeans": lambda: KMeansSegmenter(3, n_init=1, random_state=0),
        "clasp": lambda: CLASPSegmenter(max_segments=4, n_init=1, random_state=0),
        "oap": lambda: OAPSegmenter(thresholds=(0.8, 0.5), min_size=2),
        "oap_distill": lambda: OAPDistillSegmenter(
            OAPSegmenter(thresholds=(0.8, 0.5), min_size=2), n_iter=2, batch_size=2, dim=8,
            n_heads=2, adapter_dim=4, ffn_dim=8, head_dim=4, n_prototypes=4, device="cpu",
            random_state=0),
        "deepcut": lambda: DeepCutSegmenter(n_clusters=3, n_epochs=3, random_state=0),
        "acseg": lambda: ACSegSegmenter(3, n_layers=1, n_heads=1, ffn_dim=8, n_iter=2,
                                        batch_size=2, device="cpu", random_state=0),
        "il2vseg": lambda: IL2VSegmenter(3, dim=4, max_iter=2, batch_size=2, n_samples=8,
                                         fcm_max_iter=5, device="cpu", random_state=0),
        "semantic": lambda: SemanticLabeler(KMeansSegmenter(2, n_init=1), n_classes=2,
                                            n_init=1, random_state=0),
    }


#: Patch size of :func:`colour_blob_features`' grids.
PATCH = 8


def colour_blob_features(n_images=2, n_segments=4, noise=0.3, random_state=0):
    """Images of flat-coloured regions (64 x 80) and patch features (8 x 10 grid) that
    know the regions, with the truths."""
    import numpy as np

    from sklearn_useg import PatchFeatures
    from sklearn_useg.datasets import make_color_blobs

    images, truths = make_color_blobs(n_images, image_shape=(64, 80), n_segments=n_segments,
                                      noise=5, random_state=random_state)
    rng = np.random.RandomState(random_state)
    X = []
    for image, truth in zip(images, truths):
        centres = rng.randn(n_segments, 16)
        grid = truth[PATCH // 2::PATCH, PATCH // 2::PATCH]
        features = centres[grid] + noise * rng.randn(*grid.shape, 16)
        X.append(PatchFeatures(features=features.astype(np.float32), image_shape=(64, 80),
                               image=image, patch_size=PATCH, stride=PATCH))
    return X, truths


#: Factories of every segmenter with tiny, seeded settings (each call runs in
#: milliseconds); the one table the estimator-wide test files share.
CHEAP_SEGMENTERS = _cheap_segmenters()


def _weights_file():
    folder = os.environ.get("SKLEARN_USEG_WEIGHTS")
    if not folder:
        pytest.skip("SKLEARN_USEG_WEIGHTS is not set (folder holding the DINOv2 ViT-S/14 "
                    "checkpoint)")
    files = sorted(Path(folder).glob("dinov2_vits14*.safetensors")) + sorted(
        Path(folder).glob("dinov2_vits14*.pth"))
    if not files:
        pytest.skip(f"no dinov2_vits14 checkpoint in SKLEARN_USEG_WEIGHTS={folder}")
    return str(files[0])


@pytest.fixture
def grazed_scene():
    """Labels (10, 10) and CLS attention (10, 10): an object (label 2, 4 patches) the
    CLS token attends to, a background segment (label 1) it grazes, a little above the
    image's mean attention but below the attention rule's default threshold, and the
    rest of the background (label 0)."""
    import numpy as np

    labels = np.zeros((10, 10), np.int32)
    labels[:, 5:] = 1
    labels[:2, :2] = 2
    attention = np.full((10, 10), 1.0, np.float32)
    attention[:, 5:] = 1.5
    attention[:2, :2] = 5.0
    return labels, attention


@pytest.fixture(scope="session")
def weights_path():
    """Path of the DINOv2 ViT-S/14 checkpoint (skips when absent)."""
    return _weights_file()


@pytest.fixture(scope="session")
def data_home():
    """Folder of the evaluation datasets (skips when absent)."""
    folder = os.environ.get("SKLEARN_USEG_DATA")
    if not folder or not Path(folder).is_dir():
        pytest.skip("SKLEARN_USEG_DATA is not set or missing (folder of BSDS500, "
                    "Weizmann horses, CamVid)")
    return folder


@pytest.fixture(scope="session")
def bsds_small(data_home):
    """Three BSDS500 val images with their human annotations."""
    from sklearn_useg.datasets import load_bsds500

    return load_bsds500("val", data_home=data_home, n_images=3)


@pytest.fixture(scope="session")
def bsds_small_features(bsds_small, weights_path):
    """Last-layer token and key features of ``bsds_small`` on the real backbone."""
    from sklearn_useg import DinoFeatures

    return {facet: DinoFeatures(weights=weights_path, facet=facet).transform(bsds_small.images)
            for facet in ("token", "key")}
