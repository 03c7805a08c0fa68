"""Self-supervised ViT patch features as a scikit-learn transformer."""

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from . import _backbones
from ._patch_features import PatchFeatures
from ._torch_utils import resolve_device
from ._validation import PipelineStepMixin, check_images
from .graph import NORMALIZATIONS, normalize_features

PRECISIONS = ("float32", "bfloat16", "float16")


def resized_shape(shape, patch_size, resize, index=0):
    """Image size fed to the backbone, each side a multiple of ``patch_size``.

    Parameters
    ----------
    shape : tuple of int
        Original ``(H, W)``.
    patch_size : int
        Backbone patch size.
    resize : None, int or tuple of int
        ``None`` keeps the native size, ``int`` scales the short side to it keeping
        the aspect ratio, ``(H', W')`` forces a size; each side is then rounded down
        to a multiple of ``patch_size``.
    index : int
        Position of the image in its list, for error messages.

    Raises
    ------
    ValueError
        If a side would be smaller than one patch.
    """
    H, W = shape
    if resize is None:
        target = (H, W)
    elif isinstance(resize, (int, np.integer)):
        scale = resize / min(H, W)
        target = (H * scale, W * scale)
    else:
        target = tuple(resize)
    out = tuple(int(round(side)) // patch_size * patch_size for side in target)
    if min(out) < patch_size:
        raise ValueError(
            f"X[{index}]: image of shape {(H, W)} gives a side smaller than one patch "
            f"({patch_size} px) at resize={resize!r}; pass larger images or a larger "
            f"resize.")
    return out


def fit_grid(shape, patch_size, stride, max_patches):
    """Shrink an input size until its patch grid has at most ``max_patches`` cells.

    Parameters
    ----------
    shape : tuple of int
        ``(H, W)`` fed to the backbone, each side a multiple of ``patch_size``.
    patch_size, stride : int
        Patch size and patch-embedding stride; the grid is
        ``((H - patch_size) // stride + 1, (W - patch_size) // stride + 1)``.
    max_patches : int or None
        Largest grid; ``None`` returns ``shape`` unchanged.

    Returns
    -------
    tuple of int
        ``(H', W')``, multiples of ``patch_size``, aspect ratio kept (to a patch).
    """
    def cells(side):
        return (side - patch_size) // stride + 1

    H, W = shape
    if max_patches is None or cells(H) * cells(W) <= max_patches:
        return shape
    scale = np.sqrt(max_patches / (cells(H) * cells(W)))
    H, W = (max(patch_size, int(side * scale) // patch_size * patch_size) for side in shape)
    while cells(H) * cells(W) > max_patches:  # the estimate ignores the border patch
        if H >= W:
            H -= patch_size
        else:
            W -= patch_size
    return H, W


def _resize_image(image, shape):
    from PIL import Image

    if image.shape[:2] == tuple(shape):
        return image
    return np.asarray(Image.fromarray(image).resize((shape[1], shape[0]), Image.BICUBIC))


def _compute_features(images, config):
    """Features for a batch of equal-size, already resized images (module level so
    joblib.Memory can cache it)."""
    import torch

    model = _backbones.build_backbone(config["backbone"], config["weights"])
    device = torch.device(config["device"])
    model = model.to(device)
    dtype = getattr(torch, config["precision"])
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype,
                                                enabled=dtype != torch.float32):
        batch = _backbones.normalize_batch(images, device)
        feats, attn = _backbones.extract(
            model, batch, layer=config["layer"], facet=config["facet"],
            stride=config["stride"], return_attention=config["return_attention"])
    feats = feats.float().cpu().numpy()
    attn = None if attn is None else attn.float().cpu().numpy()
    return feats, attn


def _cached_features(image, config):
    feats, attn = _compute_features([image], config)
    return feats[0], None if attn is None else attn[0]


class DinoFeatures(PipelineStepMixin, TransformerMixin, BaseEstimator):
    """Patch features of a self-supervised ViT (DINO, DINOv2) for each image.

    Parameters
    ----------
    backbone : str, default="dinov2_vits14"
        One of ``dino_vits16``, ``dino_vits8``, ``dino_vitb16``, ``dino_vitb8``,
        ``dinov2_vits14``, ``dinov2_vitb14``, ``dinov2_vits14_reg``,
        ``dinov2_vitb14_reg`` (and ``test_vit``, a tiny random model for tests).
        CLS and register tokens are never part of the patch grid.
    weights : "auto", "hub", path or None, default="auto"
        A checkpoint file (``.safetensors``/``.pth``, timm or FAIR layout; float16
        files are computed in float32); ``"auto"`` looks for a file named after the
        backbone in ``$SKLEARN_USEG_WEIGHTS``, then the timm hub; ``None`` gives
        random weights (seeded: the same in every process).
    facet : {"token", "key", "query", "value"}, default="token"
        ``token`` is the block output (after the final LayerNorm, as timm's
        ``forward_features``); the others come from the block's ``qkv`` projection.
    layer : int, default=-1
        Transformer block, negative counts from the end.
    stride : int, optional
        Patch-embedding stride; ``None`` is the patch size. Smaller strides give a
        denser, overlapping grid.
    resize : None, int or (int, int), default=None
        ``None`` keeps the native size (each side rounded down to a multiple of the
        patch size); an ``int`` sets the short side; a pair forces ``(H, W)``.
    normalize : {"none", "l2", "center", "center_l2"}, default="none"
        Per-image feature normalisation: unit norm, subtracting the image's mean
        feature, or both (centre first).
    batch_size : int, default=8
        Images of equal (resized) size per forward pass.
    device : str, default="auto"
        ``"auto"`` uses CUDA when available, else the CPU.
    return_attention : bool, default=False
        Also return last-layer CLS attention maps ``(heads, h, w)``.
    keep_image : bool, default=True
        Keep the original image in each :class:`PatchFeatures` (needed by DenseCRF
        and colour cues).
    memory : None, str or joblib.Memory, default=None
        Cache features per image content and parameters.
    max_patches : int or None, default=None
        Largest patch grid per image: an image whose grid (after ``resize``) would
        have more patches is downscaled further, keeping its aspect ratio, so it
        fits. Bounds the backbone's time and memory on large photos (a 4000 x 3000
        image at native size is 61,000 patches); labels still come back at the
        image's full resolution. ``None`` keeps every grid.
    precision : {"float32", "bfloat16", "float16"}, default="float32"
        Autocast dtype of the forward pass (mixed precision; LayerNorms and
        softmax stay in float32). Half precision is faster on GPUs; features come
        back as float32 either way. ``benchmarks/features_speed.py`` reports their cosine
        similarity to float32 features.

    Examples
    --------
    >>> from sklearn_useg import DinoFeatures
    >>> from sklearn_useg.datasets import load_sample_images
    >>> images = load_sample_images(["chelsea"]).images  # one 300 x 451 photo
    >>> # weights=None: random weights, to run offline; keep the default "auto" to
    >>> # load the DINOv2 checkpoint (from $SKLEARN_USEG_WEIGHTS or the hub)
    >>> feats = DinoFeatures(weights=None, resize=112).transform(images)
    >>> feats[0].grid_shape, feats[0].features.shape, feats[0].image_shape
    ((8, 12), (8, 12, 384), (300, 451))
    """

    def __init__(self, backbone="dinov2_vits14", weights="auto", facet="token", layer=-1,
                 stride=None, resize=None, normalize="none", batch_size=8, device="auto",
                 return_attention=False, keep_image=True, memory=None, max_patches=None,
                 precision="float32"):
        self.backbone = backbone
        self.weights = weights
        self.facet = facet
        self.layer = layer
        self.stride = stride
        self.resize = resize
        self.normalize = normalize
        self.batch_size = batch_size
        self.device = device
        self.return_attention = return_attention
        self.keep_image = keep_image
        self.memory = memory
        self.max_patches = max_patches
        self.precision = precision

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        tags.input_tags.two_d_array = False
        return tags

    def _check_params(self):
        spec = _backbones.get_backbone_spec(self.backbone)
        if self.facet not in _backbones.FACETS:
            raise ValueError(f"facet must be one of {_backbones.FACETS}, got {self.facet!r}.")
        if not isinstance(self.layer, (int, np.integer)) or isinstance(self.layer, bool):
            raise TypeError(f"layer must be an int, got {self.layer!r}.")
        stride = spec.patch_size if self.stride is None else self.stride
        if (not isinstance(stride, (int, np.integer)) or not 1 <= stride <= spec.patch_size
                or spec.patch_size % stride):
            raise ValueError(f"stride must be a divisor of the patch size {spec.patch_size} "
                             f"(or None), got {self.stride!r}.")
        resize = self.resize
        ok = resize is None or (isinstance(resize, (int, np.integer)) and resize > 0) or (
            isinstance(resize, (tuple, list)) and len(resize) == 2
            and all(isinstance(r, (int, np.integer)) and r > 0 for r in resize))
        if not ok:
            raise ValueError(f"resize must be None, a positive int or a pair of positive "
                             f"ints, got {resize!r}.")
        if self.normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {NORMALIZATIONS}, "
                             f"got {self.normalize!r}.")
        if not isinstance(self.batch_size, (int, np.integer)) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {self.batch_size!r}.")
        if self.max_patches is not None and (
                not isinstance(self.max_patches, (int, np.integer))
                or isinstance(self.max_patches, bool) or self.max_patches < 1):
            raise ValueError(f"max_patches must be a positive int or None, got "
                             f"{self.max_patches!r}.")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got "
                             f"{self.precision!r}.")
        return spec, int(stride)

    def _config(self):
        spec, stride = self._check_params()
        source, _ = _backbones.resolve_weights(spec, self.weights)
        weights = self.weights if source == "hub" else source
        return spec, {
            "backbone": spec.name, "weights": weights, "layer": int(self.layer),
            "facet": self.facet, "stride": stride, "device": str(resolve_device(self.device)),
            "return_attention": bool(self.return_attention), "precision": self.precision,
        }

    def fit(self, X=None, y=None):
        """Validate the parameters; the backbone is pre-trained, nothing is learned.

        Parameters
        ----------
        X, y : ignored

        Returns
        -------
        self
        """
        spec, stride = self._check_params()
        self.patch_size_ = spec.patch_size
        self.stride_ = stride
        return self

    def transform(self, X):
        """Compute patch features for each image.

        Parameters
        ----------
        X : list of ndarray or path-like
            Images: ``(H, W, 3)`` uint8 arrays (grayscale and RGBA are converted,
            floats in [0, 1] accepted) or image file paths.

        Returns
        -------
        list of PatchFeatures
        """
        images = check_images(X)
        spec, config = self._config()
        self._check_layer(config)
        shapes = [fit_grid(resized_shape(img.shape[:2], spec.patch_size, self.resize, index=i),
                           spec.patch_size, config["stride"], self.max_patches)
                  for i, img in enumerate(images)]
        resized = [_resize_image(img, shape) for img, shape in zip(images, shapes)]
        results = [None] * len(images)
        if self.memory is not None:
            from sklearn.utils.validation import check_memory

            cached = check_memory(self.memory).cache(_cached_features)
            for i, img in enumerate(resized):
                results[i] = cached(img, config)
        else:
            groups = {}
            for i, shape in enumerate(shapes):
                groups.setdefault(shape, []).append(i)
            for indices in groups.values():
                for start in range(0, len(indices), self.batch_size):
                    chunk = indices[start:start + self.batch_size]
                    feats, attn = _compute_features([resized[i] for i in chunk], config)
                    for j, i in enumerate(chunk):
                        results[i] = (feats[j], None if attn is None else attn[j])
        out = []
        for img, (feats, attn) in zip(images, results):
            out.append(PatchFeatures(
                features=normalize_features(feats, self.normalize),
                image_shape=tuple(img.shape[:2]),
                image=img if self.keep_image else None,
                attention=attn, patch_size=spec.patch_size, stride=config["stride"],
                backbone=spec.name))
        return out

    def load_backbone(self):
        """The ViT that :meth:`transform` runs, with its checkpoint, on its device.

        Returns
        -------
        torch.nn.Module
            timm ``VisionTransformer`` in eval mode (shared per process: do not train
            it).
        """
        _, config = self._config()
        return _backbones.build_backbone(config["backbone"], config["weights"]).to(
            config["device"])

    def _check_layer(self, config):
        model = _backbones.build_backbone(config["backbone"], config["weights"])
        n_blocks = len(model.blocks)
        if not -n_blocks <= config["layer"] < n_blocks:
            raise ValueError(f"layer must be in [{-n_blocks}, {n_blocks - 1}] for backbone "
                             f"{config['backbone']!r}, got {config['layer']}.")
