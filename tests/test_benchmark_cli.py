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


def _labelled_folder(tmp_path, kind):
    """Four colour-blob images with label PNGs, binary masks or BSDS .mat files."""
    from PIL import Image
    from scipy.io import savemat

    images, labels = make_color_blobs(4, image_shape=(32, 48), n_segments=3, random_state=0)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for i, (image, label) in enumerate(zip(images, labels)):
        Image.fromarray(image).save(tmp_path / f"images/{i}.jpg")
        if kind == "mat":
            gt = np.empty((1, 2), dtype=object)
            for j, seg in enumerate([label + 1, np.ones_like(label)]):
                gt[0, j] = {"Segmentation": seg.astype(np.uint16)}
            savemat(tmp_path / f"masks/{i}.mat", {"groundTruth": gt})
        else:
            mask = (label == 0) * 255 if kind == "binary" else label
            Image.fromarray(mask.astype(np.uint8)).save(tmp_path / f"masks/{i}.png")
    return f"{tmp_path / 'images'}:{tmp_path / 'masks'}"


@pytest.mark.parametrize("task, kind, metrics", [
    ("per-image", "mat", ["mIoU", "covering", "PRI", "VoI"]),
    ("object", "binary", ["fg IoU", "CorLoc", "fg IoU, border rule"]),
    ("dataset", "labels", ["mIoU", "pixel acc."]),
])
def test_benchmark_on_a_folder(tmp_path, capsys, task, kind, metrics):
    folder = _labelled_folder(tmp_path, kind)
    status = main(["benchmark", "--folder", folder, "--task", task, "--methods", "kmeans",
                   "felzenszwalb", "--backbone", "test_vit", "--weights", "none",
                   "--device", "cpu", "--cache", str(tmp_path / "cache"), "--no-progress"])
    assert status == 0
    out = capsys.readouterr().out
    assert out.startswith("# Quality benchmark") and ", CPU; every method" in out
    table = out[out.index("## "):].splitlines()
    assert f"task on {tmp_path / 'images'}" in table[0]
    assert table[2].startswith("4 images")
    assert table[4] == "| method | " + " | ".join(metrics) + " | s/image (fit + predict, CPU) |"
    assert [row.split(" |")[0] for row in table[6:8]] == [
        "| kmeans (baseline)", "| felzenszwalb (baseline)"]
    assert not (tmp_path / "docs").exists() and "wrote" not in out


def test_attention_threshold_reaches_the_object_score(tmp_path, capsys, grazed_scene):
    # the rule's default keeps the grazed background segment out of the foreground
    labels, attention = grazed_scene
    features = PatchFeatures(np.zeros((10, 10, 4), np.float32), (10, 10),
                             attention=attention[None])
    target = (labels == 2).astype(np.int32)

    def fg_iou(threshold):
        return _benchmark._score("horse", [target], [labels], [features],
                                 threshold)["fg IoU"]

    assert fg_iou(None) == fg_iou(0.25) == 1.0
    assert fg_iou(0.0) == pytest.approx(4 / 54)
    folder = _labelled_folder(tmp_path, "binary")
    assert main(["benchmark", "--folder", folder, "--task", "object", "--methods", "kmeans",
                 "--backbone", "test_vit", "--weights", "none", "--device", "cpu",
                 "--cache", str(tmp_path / "cache"), "--no-progress",
                 "--attention-threshold", "0"]) == 0
    assert ", attention rule threshold=0.0." in capsys.readouterr().out


def test_benchmark_seeds_give_mean_and_spread(tmp_path, capsys):
    folder = _labelled_folder(tmp_path, "labels")
    args = ["benchmark", "--folder", folder, "--task", "dataset", "--methods", "kmeans",
            "slic", "--backbone", "test_vit", "--weights", "none", "--device", "cpu",
            "--cache", str(tmp_path / "cache"), "--no-progress"]
    assert main(args + ["--seeds", "3"]) == 0
    out = capsys.readouterr().out
    assert "mean ± standard deviation over seeds 0-2" in out
    rows = [line for line in out.splitlines() if line.startswith("| kmeans")
            or line.startswith("| slic")]
    # every row has its spread: the labeler is seeded even for the pixel baseline
    assert len(rows) == 2 and all(row.count(" ± ") == 2 for row in rows)
    with pytest.raises(SystemExit):
        main(args + ["--seeds", "0"])
    assert "--seeds must be at least 1" in capsys.readouterr().err


def test_run_task_seeds_a_seeded_method_and_runs_a_deterministic_one_once(tmp_path):
    from sklearn_useg.features import DinoFeatures

    folder = _benchmark.parse_folder(_labelled_folder(tmp_path, "mat"))
    rows, _, _ = _benchmark.run_task(
        "bsds", ["kmeans", "slic"], DinoFeatures(backbone="test_vit", weights=None),
        folder=folder, seeds=(0, 1, 2), progress=False)
    (_, kmeans, _), (_, slic, _) = rows
    assert all(len(values) == 3 for values in kmeans.values())
    assert all(len(values) == 1 for values in slic.values())
    single, _, _ = _benchmark.run_task(
        "bsds", ["kmeans"], DinoFeatures(backbone="test_vit", weights=None),
        folder=folder, seeds=(1,), progress=False)
    assert single[0][1]["mIoU"] == kmeans["mIoU"][1]  # seed 1 alone: the same run


def test_benchmark_writes_out_only_when_asked(tmp_path, monkeypatch, capsys):
    folder = _labelled_folder(tmp_path, "labels")
    monkeypatch.chdir(tmp_path)
    args = ["benchmark", "--folder", folder, "--methods", "slic", "--backbone", "test_vit",
            "--weights", "none", "--device", "cpu", "--cache", str(tmp_path / "cache"),
            "--no-progress"]
    assert main(args) == 0
    assert not (tmp_path / "docs").exists()
    capsys.readouterr()
    assert main(args + ["--out", "docs/benchmarks.md"]) == 0
    printed = capsys.readouterr()
    written = (tmp_path / "docs" / "benchmarks.md").read_text()
    assert written.strip() == printed.out.strip()  # the file holds what stdout shows
    assert printed.err == "wrote docs/benchmarks.md\n"


def test_library_imports_without_the_benchmark():
    import subprocess
    import sys

    code = ("import sys, sklearn_useg, sklearn_useg.cli; "
            "assert 'sklearn_useg._benchmark' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_benchmark_test_split_and_folder_errors(tmp_path, monkeypatch, capsys):
    from sklearn_useg.features import DinoFeatures

    folder = _labelled_folder(tmp_path, "mat")
    for sub in ("images", "groundTruth"):
        (tmp_path / "bsds500" / sub).mkdir(parents=True)
    (tmp_path / "images").rename(tmp_path / "bsds500/images/test")
    (tmp_path / "masks").rename(tmp_path / "bsds500/groundTruth/test")
    rows, n_test, n_train = _benchmark.run_task(
        "bsds", ["slic"], DinoFeatures(backbone="test_vit", weights=None),
        data_home=tmp_path, split="test", n_images=2, progress=False)
    assert (n_test, n_train) == (2, 0) and rows[0][0] == "slic"
    assert set(rows[0][1]) == {"mIoU", "covering", "PRI", "VoI"}
    with pytest.raises(SystemExit):
        main(["benchmark", "--folder", folder.split(":")[0]])
    assert "--folder expects IMAGES:MASKS" in capsys.readouterr().err
    assert _benchmark.parse_folder("C:\\a:D:\\b") == ("C:\\a", "D:\\b")


def test_format_table_marks_baselines():
    rows = [("clasp", {"mIoU": 0.5, "covering": 0.25}, 0.1),
            ("slic", {"mIoU": 0.125, "covering": 0.75}, 0.02)]
    table = _benchmark.format_table("bsds", rows, 3, 0, device="CUDA")
    lines = table.splitlines()
    assert lines[4] == "| method | mIoU | covering | s/image (fit + predict, CUDA) |"
    assert lines[-2] == "| clasp | 0.500 | 0.250 | 0.10 |"
    assert lines[-1] == "| slic (baseline) | 0.125 | 0.750 | 0.02 |"
    rows[0][1]["mIoU"] = [0.25, 0.75]  # one score per seed: mean ± standard deviation
    assert "| clasp | 0.500 ± 0.250 | 0.250 |" in _benchmark.format_table("bsds", rows, 3, 0,
                                                                          device="CPU")


@pytest.mark.parametrize("name", ["felzenszwalb", "slic"])
def test_pixel_baselines_segment_the_image(name):
    images, _ = make_color_blobs(n_images=1, random_state=0)
    pf = PatchFeatures(features=np.zeros((4, 4, 3), np.float32),
                       image_shape=images[0].shape[:2], image=images[0], patch_size=14)
    labels = _benchmark.make_method(name, "bsds").fit([pf]).predict([pf])[0]
    assert labels.shape == images[0].shape[:2]
    assert labels.min() == 0 and labels.max() >= 1


def test_benchmark_param_sets_one_methods_parameter(tmp_path, capsys):
    folder = _labelled_folder(tmp_path, "mat")
    base = ["benchmark", "--folder", folder, "--methods", "kmeans", "spectral",
            "--backbone", "test_vit", "--weights", "none", "--device", "cpu",
            "--cache", str(tmp_path / "cache"), "--no-progress"]
    scores = {}
    for k in (2, 4):
        assert main(base + ["--param", f"kmeans:n_clusters={k}"]) == 0
        out = capsys.readouterr().out
        assert f"kmeans n_clusters={k}" in out.splitlines()[4]  # the header names it
        rows = {row.split(" |")[0]: row for row in out.splitlines() if row.startswith("| ")}
        scores[k] = rows["| kmeans (baseline)"], rows["| spectral (baseline)"]
    assert scores[2][0] != scores[4][0]  # k-means follows its parameter...
    assert scores[2][1].split("|")[:-2] == scores[4][1].split("|")[:-2]  # ...spectral not


@pytest.mark.parametrize("param", ["kmeans", "kmeans:n_clusters", "clasp:beta=0.5"])
def test_benchmark_param_errors(param, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["benchmark", "--methods", "kmeans", "--param", param])
    assert exc.value.code == 2
    assert "--param" in capsys.readouterr().err
