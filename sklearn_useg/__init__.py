"""Unsupervised image segmentation with self-supervised ViT features, as scikit-learn
estimators."""

from .features import DinoFeatures, PatchFeatures
from .metrics import (corloc, dataset_miou_scorer, foreground_iou, hungarian_miou,
                      make_miou_scorer, make_segmentation_scorer, miou_scorer,
                      pixel_accuracy, segmentation_covering)
from .segmenters import (ACSegSegmenter, CLASPSegmenter, DeepCutSegmenter, IL2VSegmenter,
                         KMeansSegmenter, OAPSegmenter, SuperpixelSegmenter)
from .semantic import SemanticLabeler

__version__ = "0.1.0.dev0"

__all__ = [
    "DinoFeatures",
    "PatchFeatures",
    "KMeansSegmenter",
    "CLASPSegmenter",
    "DeepCutSegmenter",
    "ACSegSegmenter",
    "IL2VSegmenter",
    "OAPSegmenter",
    "SuperpixelSegmenter",
    "SemanticLabeler",
    "hungarian_miou",
    "pixel_accuracy",
    "segmentation_covering",
    "foreground_iou",
    "corloc",
    "make_segmentation_scorer",
    "make_miou_scorer",
    "miou_scorer",
    "dataset_miou_scorer",
    "__version__",
]
