"""DinoFeatures: facets, strides, resizing, batching, caching, weights and errors."""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from sklearn.base import clone

from sklearn_useg import DinoFeatures, PatchFeatures
from sklearn_useg import _backbones
from sklearn_useg.features import resized_shape
from sklearn_useg.graph import l2_normalize

TINY = dict(backbone="test_vit", weights=None)  # timm's tiny random ViT, patch 16, d=64


def _images(shapes, seed=0):
    rng = np.random.RandomState(seed)
    return [rng.randint(0, 256, size=(h, w, 3), dtype=np.uint8) for h, w in shapes]


def test_transform_returns_patch_features_on_the_grid():
    images = _images([(64, 96), (50, 40)])
    out = DinoFeatures(**TINY).fit(images).transform(images)
    assert [type(pf) for pf in out] == [PatchFeatures, PatchFeatures]
    assert out[0].features.shape == (4, 6, 64) and out[0].features.dtype == np.float32
    assert out[1].features.shape == (3, 2, 64)  # 50x40 -> 48x32 -> 3x2 patches
    assert out[0].image_shape == (64, 96) and out[1].image_shape == (50, 40)
    assert out[0].image is not None and out[0].image.shape == (64, 96, 3)
    assert (out[0].patch_size, out[0].stride, out[0].backbone) == (16, 16, "test_vit")
    assert out[0].flat.shape == (24, 64) and out[0].n_patches == 24


def test_batching_and_repeat_give_identical_features():
    images = _images([(32, 48)] * 3 + [(48, 32)])
    one = DinoFeatures(**TINY, batch_size=1).transform(images)
    many = DinoFeatures(**TINY, batch_size=8).transform(images)
    again = DinoFeatures(**TINY, batch_size=8).transform(images)
    for a, b, c in zip(one, many, again):
        np.testing.assert_allclose(a.features, b.features, rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(b.features, c.features)


@pytest.mark.parametrize("facet", ["key", "query", "value"])
def test_qkv_facets_differ_from_tokens_and_match_the_qkv_projection(facet):
    image = _images([(32, 32)])
    token = DinoFeatures(**TINY).transform(image)[0].features
    feats = DinoFeatures(**TINY, facet=facet).transform(image)[0].features
    assert feats.shape == token.shape and not np.allclose(feats, token)
    # Recompute the facet by hand from the last block's input.
    model = _backbones.build_backbone("test_vit", None)
    captured = {}
    handle = model.blocks[-1].norm1.register_forward_hook(
        lambda m, i, o: captured.setdefault("x", o))
    with torch.inference_mode():
        model.forward_features(_backbones.normalize_batch(image, "cpu"))
    handle.remove()
    qkv = model.blocks[-1].attn.qkv(captured["x"])[0, 1:]  # drop CLS
    d = qkv.shape[-1] // 3
    index = ["query", "key", "value"].index(facet)
    expected = qkv[:, index * d:(index + 1) * d].numpy().reshape(2, 2, d)
    np.testing.assert_allclose(feats, expected, rtol=1e-4, atol=1e-5)


def test_layer_selects_an_earlier_block():
    image = _images([(32, 32)])
    last = DinoFeatures(**TINY).transform(image)[0].features
    first = DinoFeatures(**TINY, layer=0).transform(image)[0].features
    assert not np.allclose(first, last)
    with pytest.raises(ValueError, match="layer must be in"):
        DinoFeatures(**TINY, layer=99).transform(image)


def test_stride_gives_a_denser_grid():
    image = _images([(64, 96)])
    out = DinoFeatures(**TINY, stride=8).transform(image)[0]
    assert out.features.shape[:2] == (7, 11)  # (64 - 16) / 8 + 1, (96 - 16) / 8 + 1
    assert out.stride == 8
    with pytest.raises(ValueError, match="stride"):
        DinoFeatures(**TINY, stride=5).transform(image)


def test_attention_maps_are_cls_attention_distributions():
    image = _images([(64, 64)])
    out = DinoFeatures(**TINY, return_attention=True, layer=0).transform(image)[0]
    heads = _backbones.build_backbone("test_vit", None).blocks[-1].attn.num_heads
    assert out.attention.shape == (heads, 4, 4)
    sums = out.attention.sum(axis=(1, 2))  # CLS attends to itself too, so <= 1
    assert np.all(sums > 0) and np.all(sums <= 1 + 1e-5)


@pytest.mark.parametrize("normalize", ["l2", "center", "center_l2"])
def test_normalize(normalize):
    image = _images([(64, 64)])
    flat = DinoFeatures(**TINY, normalize=normalize).transform(image)[0].flat
    if "center" in normalize and normalize != "center_l2":
        np.testing.assert_allclose(flat.mean(axis=0), 0, atol=1e-4)
    if "l2" in normalize:
        np.testing.assert_allclose(np.linalg.norm(flat, axis=1), 1, rtol=1e-5)


def test_resize_policy():
    assert resized_shape((481, 321), 14, None) == (476, 308)
    assert resized_shape((300, 600), 14, 224) == (224, 448)
    assert resized_shape((300, 600), 16, (224, 224)) == (224, 224)
    with pytest.raises(ValueError, match="smaller than one patch"):
        resized_shape((10, 600), 14, None)
    image = _images([(100, 200)])
    assert DinoFeatures(**TINY, resize=64).transform(image)[0].features.shape[:2] == (4, 8)


def test_input_conversions_give_the_same_features():
    rgb = _images([(32, 48)])[0]
    gray = rgb[:, :, 0]
    base = DinoFeatures(**TINY, keep_image=False)
    f_rgb = base.transform([rgb])[0].features
    f_rgba = base.transform([np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])])[0].features
    f_float = base.transform([rgb / 255.0])[0].features
    np.testing.assert_array_equal(f_rgb, f_rgba)
    np.testing.assert_array_equal(f_rgb, f_float)
    f_gray = base.transform([gray])[0].features
    f_gray3 = base.transform([np.repeat(gray[:, :, None], 3, axis=2)])[0].features
    np.testing.assert_array_equal(f_gray, f_gray3)
    assert base.transform([rgb])[0].image is None


def test_paths_are_read(tmp_path):
    from PIL import Image

    rgb = _images([(32, 48)])[0]
    path = tmp_path / "a.png"
    Image.fromarray(rgb).save(path)
    f_path = DinoFeatures(**TINY).transform([path])[0].features
    f_arr = DinoFeatures(**TINY).transform([rgb])[0].features
    np.testing.assert_array_equal(f_path, f_arr)


@pytest.mark.parametrize("params, match", [
    (dict(backbone="resnet50"), "backbone must be one of"),
    (dict(facet="keys"), "facet must be one of"),
    (dict(resize=-3), "resize must be"),
    (dict(normalize="zscore"), "normalize must be one of"),
    (dict(batch_size=0), "batch_size"),
    (dict(device="tpu:banana"), "device"),
    (dict(precision="float64"), "precision must be one of"),
])
def test_invalid_parameters_raise_clear_errors(params, match):
    with pytest.raises(ValueError, match=match):
        DinoFeatures(**{**TINY, **params}).fit().transform(_images([(32, 32)]))


def test_unloadable_weights_list_what_was_tried(monkeypatch, tmp_path):
    monkeypatch.setenv("SKLEARN_USEG_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError) as info:
        _backbones.build_backbone("dino_vits8", "auto")
    message = str(info.value)
    assert "dino_vits8" in message and str(tmp_path) in message
    assert "timm hub" in message and "weights=" in message
    with pytest.raises(FileNotFoundError, match="not a file"):
        DinoFeatures(weights=str(tmp_path / "missing.pth")).transform(_images([(32, 32)]))


def test_weights_from_file_and_folder_in_timm_and_fair_layouts(monkeypatch, tmp_path):
    model = _backbones.build_backbone("test_vit", None)
    state = {k: v.clone() + 0.01 for k, v in model.state_dict().items()}
    timm_file = tmp_path / "test_vit.safetensors"
    save_file({k: v.half() for k, v in state.items()}, str(timm_file))  # fp16 on disk
    fair_file = tmp_path / "other" / "test_vit.pth"
    fair_file.parent.mkdir()
    torch.save({"teacher": {f"backbone.{k}": v for k, v in state.items()}}, fair_file)
    image = _images([(32, 32)])
    from_timm = DinoFeatures(backbone="test_vit", weights=str(timm_file)).transform(image)
    from_fair = DinoFeatures(backbone="test_vit", weights=str(fair_file)).transform(image)
    random = DinoFeatures(**TINY).transform(image)
    np.testing.assert_allclose(from_timm[0].features, from_fair[0].features, atol=2e-2)
    assert not np.allclose(from_timm[0].features, random[0].features)
    monkeypatch.setenv("SKLEARN_USEG_WEIGHTS", str(tmp_path))
    auto = DinoFeatures(backbone="test_vit", weights="auto").transform(image)
    np.testing.assert_array_equal(auto[0].features, from_timm[0].features)


def test_candidate_files_do_not_mix_register_variants(tmp_path):
    for name in ["dinov2_vits14_reg4_pretrain.pth", "dinov2_vits14_x.safetensors"]:
        (tmp_path / name).write_bytes(b"")
    plain = _backbones._candidate_files(_backbones.BACKBONES["dinov2_vits14"], tmp_path)
    reg = _backbones._candidate_files(_backbones.BACKBONES["dinov2_vits14_reg"], tmp_path)
    assert [p.name for p in plain] == ["dinov2_vits14_x.safetensors"]
    assert [p.name for p in reg] == ["dinov2_vits14_reg4_pretrain.pth"]


def test_memory_cache_reuses_features(tmp_path):
    images = _images([(32, 48), (48, 32)])
    cached = DinoFeatures(**TINY, memory=str(tmp_path)).transform(images)
    again = DinoFeatures(**TINY, memory=str(tmp_path)).transform(images)
    plain = DinoFeatures(**TINY).transform(images)
    assert any(tmp_path.rglob("output.pkl"))
    for a, b, c in zip(cached, again, plain):
        np.testing.assert_array_equal(a.features, b.features)
        np.testing.assert_allclose(a.features, c.features, rtol=1e-4, atol=1e-5)


def _patch_cosines(a, b):
    """Cosine similarity of each patch feature of ``a`` to the same patch of ``b``."""
    return np.sum(l2_normalize(a.flat) * l2_normalize(b.flat), axis=1)


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_half_precision_features_agree_with_float32(precision):
    images = _images([(48, 64), (48, 64)])
    full = DinoFeatures(**TINY).transform(images)
    half = DinoFeatures(**TINY, precision=precision).transform(images)
    for a, b in zip(full, half):
        assert b.features.dtype == np.float32 and b.features.shape == a.features.shape
        assert _patch_cosines(a, b).min() > 0.99
        assert not np.array_equal(a.features, b.features)  # autocast did run


def test_normalize_batch_matches_the_imagenet_formula():
    images = _images([(20, 30)] * 2)
    batch = _backbones.normalize_batch(images, "cpu")
    expected = (np.stack(images) / 255.0 - _backbones.IMAGENET_MEAN) / _backbones.IMAGENET_STD
    assert batch.dtype == torch.float32 and batch.shape == (2, 3, 20, 30)
    np.testing.assert_allclose(batch.numpy(), expected.transpose(0, 3, 1, 2), atol=1e-6)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["float32", "bfloat16", "float16"])
def test_cuda_features_match_the_cpu(precision):
    images = _images([(64, 96)] * 3)
    cpu = DinoFeatures(**TINY, device="cpu").transform(images)
    gpu = DinoFeatures(**TINY, device="cuda", precision=precision).transform(images)
    for a, b in zip(cpu, gpu):
        assert _patch_cosines(a, b).min() > (0.9999 if precision == "float32" else 0.99)


def test_backbone_is_loaded_once_per_process():
    _backbones.load_backbone.cache_clear()
    images = _images([(32, 32)])
    for batch_size in (1, 2, 4):
        DinoFeatures(**TINY, batch_size=batch_size).transform(images)
    assert _backbones.load_backbone.cache_info().misses == 1


def test_clone_and_params():
    est = DinoFeatures(**TINY, facet="key", stride=8)
    cloned = clone(est)
    assert cloned.get_params() == est.get_params()


@pytest.mark.real_data
def test_token_facet_equals_timm_forward_features(weights_path, bsds_small):
    image = bsds_small.images[0]
    pf = DinoFeatures(weights=weights_path).transform([image])[0]
    model = _backbones.build_backbone("dinov2_vits14", weights_path)
    shape = resized_shape(image.shape[:2], 14, None)
    from sklearn_useg.features import _resize_image

    with torch.inference_mode():
        tokens = model.forward_features(
            _backbones.normalize_batch([_resize_image(image, shape)], "cpu"))
    expected = tokens[0, 1:].reshape(shape[0] // 14, shape[1] // 14, -1).numpy()
    np.testing.assert_allclose(pf.features, expected, rtol=1e-5, atol=1e-5)
    key = DinoFeatures(weights=weights_path, facet="key").transform([image])[0].features
    assert key.shape == expected.shape and not np.allclose(key, expected, atol=1e-2)


@pytest.mark.real_data
def test_real_key_statistics_match_the_design_notes(bsds_small_features):
    """Raw DINOv2 keys are all alike; centring brings back negative pairs."""
    from sklearn_useg.graph import normalize_features

    flat = bsds_small_features["key"][0].flat
    unit, centred = (normalize_features(flat, method) for method in ("l2", "center_l2"))
    raw, centred = unit @ unit.T, centred @ centred.T
    assert np.median(raw) > 0.8 and (raw < 0).mean() < 0.01
    assert (centred < 0).mean() > 0.3


def test_random_weights_are_the_same_in_every_process():
    # weights=None must not depend on the process's torch seed: joblib/dask workers and
    # a pickled pipeline reloaded elsewhere all see the same random backbone
    import subprocess
    import sys

    code = ("import numpy as np, torch; torch.manual_seed({seed}); "
            "from sklearn_useg import DinoFeatures; "
            "image = np.random.RandomState(0).randint(0, 256, (32, 48, 3), np.uint8); "
            "f = DinoFeatures(backbone='test_vit', weights=None, device='cpu')"
            ".transform([image])[0].features; print(repr(float(f.sum())))")
    sums = {subprocess.run([sys.executable, "-c", code.format(seed=seed)], check=True,
                           capture_output=True, text=True).stdout.strip() for seed in (1, 2)}
    assert len(sums) == 1, sums
