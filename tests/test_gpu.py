"""The CUDA paths of the segmenters agree with the CPU (skipped without a CUDA GPU).

The same code runs on ``device="cpu"`` in every other test file; these check that
moving the dense maths to a GPU changes nothing but the speed.
"""

import numpy as np
import pytest
import torch

from sklearn_useg import ACSegSegmenter, CLASPSegmenter, OAPSegmenter
from sklearn_useg.datasets import make_segmentation_blobs
from sklearn_useg.metrics import hungarian_miou

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.mark.parametrize("make", [
    lambda device: CLASPSegmenter(random_state=0, device=device),
    lambda device: OAPSegmenter(device=device),
], ids=["clasp", "oap"])
def test_training_free_methods_give_the_cpu_labels(make):
    X, _ = make_segmentation_blobs(n_images=3, n_segments=4, random_state=0)
    cpu = make("cpu").fit_predict(X)
    cuda = make("cuda").fit_predict(X)
    assert hungarian_miou(cpu, cuda) >= 0.99


def test_acseg_trains_on_the_gpu_and_recovers_blobs():
    X, y = make_segmentation_blobs(n_images=16, grid_shape=(8, 8), n_segments=3,
                                   n_features=8, random_state=0)
    seg = ACSegSegmenter(5, n_layers=1, n_heads=2, ffn_dim=16, n_iter=200, batch_size=16,
                         learning_rate=1e-2, device="cuda", random_state=0)
    labels = seg.fit(X).predict(X)
    assert hungarian_miou(y, labels) >= 0.9
    assert all(lab.dtype == np.int32 and lab.shape == (8, 8) for lab in labels)
