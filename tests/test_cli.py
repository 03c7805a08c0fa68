"""The command line writes label and overlay PNGs and reports unreadable files."""

import numpy as np
import pytest
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
                   "test_vit", "--weights", "none", "--param", "n_segments=3"])
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


def _blob_folder(tmp_path, n_images=3):
    from sklearn_useg.datasets import make_color_blobs

    images, labels = make_color_blobs(n_images, image_shape=(48, 64), n_segments=3,
                                      random_state=0)
    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
    for i, (image, label) in enumerate(zip(images, labels)):
        Image.fromarray(image).save(tmp_path / f"images/img{i}.png")
        Image.fromarray(label.astype(np.uint8)).save(tmp_path / f"masks/img{i}.png")
    return tmp_path / "images", tmp_path / "masks"


def test_fit_save_segment_evaluate_round_trip(tmp_path, capsys):
    """fit -> model file -> segment --model -> evaluate, with the tiny random backbone."""
    from sklearn_useg import ACSegSegmenter, load_model

    images, masks = _blob_folder(tmp_path)
    model_path = tmp_path / "model.joblib"
    tiny = ["n_layers=1", "n_heads=1", "ffn_dim=8", "n_iter=3", "batch_size=2",
            "device='cpu'", "random_state=0"]
    assert main(["fit", str(images), "--method", "acseg", "--out", str(model_path),
                 "--backbone", "test_vit", "--weights", "none", "--resize", "32",
                 "--no-progress"] + [arg for p in tiny for arg in ("--param", p)]) == 0
    assert "acseg fitted on 3 image(s)" in capsys.readouterr().out
    pipe = load_model(model_path)
    features, segmenter = (step for _, step in pipe.steps)
    assert isinstance(segmenter, ACSegSegmenter) and len(segmenter.loss_curve_) == 3
    assert (features.backbone, features.weights, features.resize) == ("test_vit", None, 32)

    out = tmp_path / "out"
    paths = sorted(str(p) for p in images.iterdir())
    assert main(["segment", *paths, "--model", str(model_path), "--out", str(out),
                 "--device", "cpu", "--no-progress"]) == 0
    written = np.asarray(Image.open(out / "img1_labels.png"))
    np.testing.assert_array_equal(written, pipe.predict([paths[1]])[0])
    capsys.readouterr()

    assert main(["evaluate", str(out), str(masks)]) == 0
    printed = dict(line.split() for line in capsys.readouterr().out.splitlines()[1:])
    assert list(printed) == ["mIoU", "covering", "PRI", "VoI"]
    from sklearn_useg.metrics import variation_of_information

    gts = [np.asarray(Image.open(masks / f"img{i}.png")) for i in range(3)]
    preds = [np.asarray(Image.open(out / f"img{i}_labels.png")) for i in range(3)]
    assert float(printed["VoI"]) == pytest.approx(variation_of_information(gts, preds),
                                                  abs=1e-4)


@pytest.mark.parametrize("method, facet_args, facet", [
    ("oap", [], "key"), ("kmeans", [], "token"), ("oap", ["--facet", "token"], "token")])
def test_fit_pairs_the_method_with_its_facet(tmp_path, method, facet_args, facet):
    from sklearn_useg import load_model

    images, _ = _blob_folder(tmp_path, n_images=1)
    model_path = tmp_path / "model.joblib"
    assert main(["fit", str(images), "--method", method, "--out", str(model_path),
                 "--backbone", "test_vit", "--weights", "none", "--no-progress",
                 *facet_args]) == 0
    assert load_model(model_path).steps[0][1].facet == facet


def test_segment_fits_a_new_model_on_all_the_images_then_predicts(tmp_path):
    """ACSeg learns from the whole set given to 'segment', not from one image at a time."""
    from sklearn_useg import ACSegSegmenter, DinoFeatures

    images, _ = _blob_folder(tmp_path)
    paths = sorted(str(p) for p in images.iterdir())
    tiny = dict(n_layers=1, n_heads=1, ffn_dim=8, n_iter=3, batch_size=2, device="cpu",
                random_state=0)
    out = tmp_path / "out"
    assert main(["segment", *paths, "--method", "acseg", "--out", str(out), "--backbone",
                 "test_vit", "--weights", "none", "--resize", "32", "--no-progress"]
                + [arg for key, value in tiny.items()
                   for arg in ("--param", f"{key}={value!r}")]) == 0
    X = DinoFeatures(backbone="test_vit", weights=None, resize=32).transform(paths)
    expected = ACSegSegmenter(**tiny).fit(X).predict(X)
    for i, labels in enumerate(expected):
        np.testing.assert_array_equal(np.asarray(Image.open(out / f"img{i}_labels.png")),
                                      labels)


def test_evaluate_and_model_errors_name_the_file(tmp_path, capsys):
    images, masks = _blob_folder(tmp_path, n_images=2)
    preds = tmp_path / "preds"
    preds.mkdir()
    Image.fromarray(np.zeros((48, 64), np.uint8)).save(preds / "img0_labels.png")
    assert main(["evaluate", str(preds), str(masks)]) == 1
    assert "No prediction named 'img1'" in capsys.readouterr().err
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(preds / "img1_labels.png")
    assert main(["evaluate", str(preds), str(masks)]) == 1
    assert "img1_labels.png' is 8 x 8" in capsys.readouterr().err
    (tmp_path / "junk.joblib").write_text("not a model")
    assert main(["segment", str(images / "img0.png"), "--model",
                 str(tmp_path / "junk.joblib"), "--out", str(tmp_path / "o")]) == 2
    assert "junk.joblib" in capsys.readouterr().err
    assert main(["fit", str(images), "--method", "nope", "--out", "m.joblib"]) == 2
