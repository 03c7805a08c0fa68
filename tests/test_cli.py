"""The command line writes label and overlay PNGs and reports unreadable files."""

import numpy as np
from PIL import Image

from sklearn_useg.cli import main


def test_segment_writes_pngs_and_lists_failures(tmp_path, capsys):
    rng = np.random.RandomState(0)
    good = tmp_path / "good.png"
    Image.fromarray(rng.randint(0, 256, (48, 64, 3), dtype=np.uint8)).save(good)
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    out = tmp_path / "out"
    status = main(["segment", str(good), str(bad), "--out", str(out), "--backbone",
                   "test_vit", "--weights", "none", "--param", "n_clusters=3",
                   "--param", "random_state=0"])
    assert status == 1
    labels = np.asarray(Image.open(out / "good_labels.png"))
    assert labels.shape == (48, 64) and labels.max() <= 2
    assert np.asarray(Image.open(out / "good_overlay.png")).shape == (48, 64, 3)
    assert "bad.png" in capsys.readouterr().err


def test_unknown_method(tmp_path, capsys):
    assert main(["segment", "x.png", "--out", str(tmp_path), "--method", "nope"]) == 2
    assert "unknown --method" in capsys.readouterr().err


def test_samples_then_segment_them(tmp_path):
    from sklearn_useg.datasets import SAMPLE_IMAGES, load_sample_images

    assert main(["samples", str(tmp_path / "samples")]) == 0
    paths = sorted((tmp_path / "samples").glob("*.png"))
    assert [p.stem for p in paths] == sorted(SAMPLE_IMAGES)
    first = load_sample_images(["astronaut"]).images[0]
    np.testing.assert_array_equal(np.asarray(Image.open(paths[0])), first)
    assert main(["segment", str(paths[0]), "--out", str(tmp_path / "out"), "--backbone",
                 "test_vit", "--weights", "none", "--no-progress"]) == 0
    assert np.asarray(Image.open(tmp_path / "out" / "astronaut_labels.png")).shape == \
        first.shape[:2]
