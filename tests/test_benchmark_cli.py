"""The quality benchmark's tables and the ``benchmark`` subcommand of the CLI."""

import numpy as np
import pytest

from sklearn_useg import _benchmark
from sklearn_useg.cli import main
from sklearn_useg.datasets import make_color_blobs
from sklearn_useg.features import PatchFeatures


def test_benchmark_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["benchmark", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "sklearn-useg benchmark" in out and "--n-images" in out


def test_benchmark_rejects_unknown_method(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["benchmark", "--methods", "nope"])
    assert exc.value.code == 2


def test_format_table_marks_baselines():
    rows = [("clasp", {"mIoU": 0.5, "covering": 0.25}, 0.1),
            ("slic", {"mIoU": 0.125, "covering": 0.75}, 0.02)]
    table = _benchmark.format_table("bsds", rows, 3, 0)
    lines = table.splitlines()
    assert lines[-2] == "| clasp | 0.500 | 0.250 | 0.10 |"
    assert lines[-1] == "| slic (baseline) | 0.125 | 0.750 | 0.02 |"


@pytest.mark.parametrize("name", ["felzenszwalb", "slic"])
def test_pixel_baselines_segment_the_image(name):
    images, _ = make_color_blobs(n_images=1, random_state=0)
    pf = PatchFeatures(features=np.zeros((4, 4, 3), np.float32),
                       image_shape=images[0].shape[:2], image=images[0], patch_size=14)
    labels = _benchmark.make_method(name, "bsds").fit([pf]).predict([pf])[0]
    assert labels.shape == images[0].shape[:2]
    assert labels.min() == 0 and labels.max() >= 1
