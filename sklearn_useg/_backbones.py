"""Backbone registry, weight resolution and facet extraction for ViT feature models."""

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._torch_utils import torch_seed

WEIGHTS_ENV = "SKLEARN_USEG_WEIGHTS"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FACETS = ("token", "key", "query", "value")


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one named backbone with timm and where its weights may live."""

    name: str
    timm_name: str  # architecture name
    hub_tag: str  # pretrained tag on the timm hub
    patch_size: int
    fair_filename: str  # file name of the original FAIR release

    @property
    def hub_name(self):
        return f"{self.timm_name}.{self.hub_tag}"


BACKBONES = {
    spec.name: spec
    for spec in [
        BackboneSpec("dino_vits16", "vit_small_patch16_224", "dino", 16,
                     "dino_deitsmall16_pretrain.pth"),
        BackboneSpec("dino_vits8", "vit_small_patch8_224", "dino", 8,
                     "dino_deitsmall8_pretrain.pth"),
        BackboneSpec("dino_vitb16", "vit_base_patch16_224", "dino", 16,
                     "dino_vitbase16_pretrain.pth"),
        BackboneSpec("dino_vitb8", "vit_base_patch8_224", "dino", 8,
                     "dino_vitbase8_pretrain.pth"),
        BackboneSpec("dinov2_vits14", "vit_small_patch14_dinov2", "lvd142m", 14,
                     "dinov2_vits14_pretrain.pth"),
        BackboneSpec("dinov2_vitb14", "vit_base_patch14_dinov2", "lvd142m", 14,
                     "dinov2_vitb14_pretrain.pth"),
        BackboneSpec("dinov2_vits14_reg", "vit_small_patch14_reg4_dinov2", "lvd142m", 14,
                     "dinov2_vits14_reg4_pretrain.pth"),
        BackboneSpec("dinov2_vitb14_reg", "vit_base_patch14_reg4_dinov2", "lvd142m", 14,
                     "dinov2_vitb14_reg4_pretrain.pth"),
        # A tiny randomly initialised ViT (timm's test model) for fast tests.
        BackboneSpec("test_vit", "test_vit", "r160_in1k", 16, "test_vit.pth"),
    ]
}


def get_backbone_spec(name):
    """Return the :class:`BackboneSpec` registered under ``name``."""
    if not isinstance(name, str) or name not in BACKBONES:
        raise ValueError(f"backbone must be one of {sorted(BACKBONES)}, got {name!r}.")
    return BACKBONES[name]


def _candidate_files(spec, folder):
    """Files in ``folder`` that plausibly hold ``spec``'s weights, best first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stems = (spec.name, spec.hub_name, spec.timm_name, Path(spec.fair_filename).stem)
    found = []
    for path in sorted(folder.iterdir()):
        if path.suffix not in (".safetensors", ".pth", ".pt", ".bin"):
            continue
        for stem in stems:
            rest = path.name[len(stem):]
            # "dinov2_vits14" must not pick up a "dinov2_vits14_reg4..." file.
            if path.name.startswith(stem) and ("reg" in spec.name or "_reg" not in rest):
                found.append(path)
                break
    return found


def resolve_weights(spec, weights):
    """Decide where the weights of ``spec`` come from.

    Parameters
    ----------
    spec : BackboneSpec
        The backbone.
    weights : {"auto", "hub"} or path-like or None
        ``None`` means random initialisation; a path names a checkpoint file;
        ``"auto"`` tries a matching file in ``$SKLEARN_USEG_WEIGHTS`` and then the
        timm hub; ``"hub"`` only the hub.

    Returns
    -------
    source : str or None
        A file path, ``"hub"`` or ``None`` (random weights).
    tried : list of str
        What was looked at, for error messages.
    """
    if weights is None:
        return None, []
    if isinstance(weights, (str, os.PathLike)) and os.fspath(weights) not in ("auto", "hub"):
        path = os.fspath(weights)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"weights={path!r} is not a file. Pass a .safetensors or .pth checkpoint "
                f"(timm or original FAIR layout), 'auto', 'hub' or None.")
        return path, [path]
    if weights not in ("auto", "hub"):
        raise TypeError(f"weights must be 'auto', 'hub', a path or None, got {weights!r}.")
    tried = []
    if weights == "auto":
        folder = os.environ.get(WEIGHTS_ENV)
        if folder:
            files = _candidate_files(spec, folder)
            if files:
                return os.fspath(files[0]), [os.fspath(files[0])]
            tried.append(f"${WEIGHTS_ENV}={folder}: no file named like {spec.name}*, "
                         f"{spec.hub_name}* or {spec.fair_filename}")
        else:
            tried.append(f"${WEIGHTS_ENV} is not set")
    return "hub", tried


def parse_weights(text):
    """A ``--weights`` command-line value: 'none' is random weights (``None``), anything
    else as is."""
    return None if text.lower() == "none" else text


def _load_state_dict(path):
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(path)
    else:
        import torch

        state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("teacher", "model", "state_dict"):  # FAIR DINO full checkpoints
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    out = {}
    for key, value in state.items():
        for prefix in ("module.", "backbone."):
            key = key[len(prefix):] if key.startswith(prefix) else key
        if key.startswith("head.") or key.startswith("dino_head"):
            continue
        out[key] = value.float()
    return out


@functools.lru_cache(maxsize=2)
def load_backbone(name, source):
    """Build backbone ``name`` with timm, load weights from ``source``, eval mode, CPU.

    Cached per process, so repeated transforms (and joblib workers) load once.
    """
    import timm
    import torch
    from timm.models.vision_transformer import checkpoint_filter_fn

    spec = get_backbone_spec(name)
    kwargs = dict(num_classes=0, dynamic_img_size=True)
    if source == "hub":
        model = timm.create_model(spec.hub_name, pretrained=True, **kwargs)
    else:
        with torch_seed(0):  # random weights (source None) are the same in every process
            model = timm.create_model(spec.timm_name, pretrained=False, **kwargs)
        if source is not None:
            state = checkpoint_filter_fn(_load_state_dict(source), model)
            missing, unexpected = model.load_state_dict(state, strict=False)
            if missing or unexpected:
                raise ValueError(
                    f"checkpoint {source!r} does not fit backbone {name!r} "
                    f"({spec.timm_name}): missing keys {missing[:5]}, unexpected keys "
                    f"{unexpected[:5]}.")
    model.eval().requires_grad_(False)
    return model.to(torch.float32)


def build_backbone(name, weights):
    """Resolve weights and load backbone ``name``, with one error listing all attempts."""
    spec = get_backbone_spec(name)
    source, tried = resolve_weights(spec, weights)
    if source != "hub":
        return load_backbone(name, source)
    try:
        return load_backbone(name, "hub")
    except Exception as exc:  # noqa: BLE001 - hub failures come in many types
        tried.append(f"timm hub {spec.hub_name!r}: {type(exc).__name__}: {exc}"[:300])
        raise OSError(
            f"Could not load weights for backbone {name!r}. Tried:\n  - "
            + "\n  - ".join(tried)
            + f"\nPass weights=<path to a .safetensors/.pth checkpoint>, or put a file "
              f"named {spec.name}.safetensors (or {spec.fair_filename}) in the folder "
              f"named by ${WEIGHTS_ENV}, or use weights=None for random weights."
        ) from exc


def extract(model, batch, *, layer, facet, stride, return_attention):
    """Run ``model`` on a normalised image batch and return patch features.

    Parameters
    ----------
    model : timm VisionTransformer
    batch : torch.Tensor of shape (B, 3, H, W)
    stride : int
        Patch-embedding stride; smaller than the patch size gives overlapping patches
        (position embeddings are interpolated to the denser grid).
    layer : int
        Block index (negative counts from the end).
    facet : {"token", "key", "query", "value"}
        ``token`` is the block output passed through the final LayerNorm (as timm's
        ``forward_features`` and ``get_intermediate_layers(norm=True)``); the others
        come from that block's ``qkv`` projection, heads concatenated.
    return_attention : bool
        Also return the last block's CLS-to-patch attention.

    Returns
    -------
    features : torch.Tensor of shape (B, h, w, d)
    attention : torch.Tensor of shape (B, heads, h, w) or None
    """
    import torch
    import torch.nn.functional as F

    n_blocks = len(model.blocks)
    layer = layer % n_blocks
    last = n_blocks - 1 if return_attention else layer
    n_prefix = model.num_prefix_tokens
    captured = {}

    def qkv_hook(index):
        def hook(module, inputs, output):
            captured[index] = output
        return hook

    handles = [model.blocks[i].attn.qkv.register_forward_hook(qkv_hook(i))
               for i in {layer, last}]
    try:
        embed = model.patch_embed
        x = F.conv2d(batch, embed.proj.weight, embed.proj.bias, stride=stride)
        x = embed.norm(x.permute(0, 2, 3, 1))  # (B, h, w, d), as timm's dynamic size
        grid = x.shape[1:3]
        x = model.norm_pre(model.patch_drop(model._pos_embed(x)))
        tokens = None
        for i in range(last + 1):
            x = model.blocks[i](x)
            if i == layer:
                tokens = x
    finally:
        for handle in handles:
            handle.remove()

    def split_qkv(index):
        attn = model.blocks[index].attn
        qkv = captured[index]
        B, N, _ = qkv.shape
        q, k, v = qkv.reshape(B, N, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        return attn.q_norm(q), attn.k_norm(k), v, attn.scale  # (B, heads, N, hd)

    if facet == "token":
        feats = model.norm(tokens)
    else:
        q, k, v, _ = split_qkv(layer)
        chosen = {"query": q, "key": k, "value": v}[facet]
        feats = chosen.transpose(1, 2).flatten(2)  # (B, N, heads * hd)
    B = feats.shape[0]
    feats = feats[:, n_prefix:].reshape(B, grid[0], grid[1], -1)
    attention = None
    if return_attention:
        q, k, _, scale = split_qkv(last)
        cls_attn = torch.softmax((q[:, :, :1] * scale) @ k.transpose(-2, -1), dim=-1)
        attention = cls_attn[:, :, 0, n_prefix:].reshape(B, -1, grid[0], grid[1])
    return feats, attention


def normalize_batch(images, device):
    """Stack uint8 (H, W, 3) arrays of one size into a normalised float tensor on ``device``.

    The uint8 batch travels (a quarter of the float32 bytes, from pinned memory to a
    GPU) and is normalised where it lands.
    """
    import torch

    device = torch.device(device)
    batch = torch.from_numpy(np.stack(images))
    if device.type == "cuda":
        batch = batch.pin_memory()
    batch = batch.to(device, non_blocking=True).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=device)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32, device=device)
    return ((batch - mean) / std).permute(0, 3, 1, 2).contiguous()
