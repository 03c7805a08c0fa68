"""Unsupervised image segmentation with self-supervised ViT features, as scikit-learn
estimators."""

from ._version import __version__
from .features import DinoFeatures, PatchFeatures
from .metrics import (corloc, dataset_miou_scorer, foreground_iou, hungarian_miou,
                      make_miou_scorer, make_segmentation_scorer, miou_scorer,
                      pixel_accuracy, probabilistic_rand_index, segmentation_covering,
                      variation_of_information)
from .persistence import load_model, save_model
from .segmenters import (ACSegSegmenter, CLASPSegmenter, DeepCutSegmenter, IL2VSegmenter,
                         KMeansSegmenter, OAPDistillSegmenter, OAPSegmenter,
                         SuperpixelSegmenter)
from .semantic import SemanticLabeler

__all__ = [
    "DinoFeatures",
    "PatchFeatures",
    "KMeansSegmenter",
    "CLASPSegmenter",
    "DeepCutSegmenter",
    "ACSegSegmenter",
    "IL2VSegmenter",
    "OAPSegmenter",
    "OAPDistillSegmenter",
    "SuperpixelSegmenter",
    "SemanticLabeler",
    "hungarian_miou",
    "pixel_accuracy",
    "segmentation_covering",
    "probabilistic_rand_index",
    "variation_of_information",
    "foreground_iou",
    "corloc",
    "make_segmentation_scorer",
    "make_miou_scorer",
    "miou_scorer",
    "dataset_miou_scorer",
    "save_model",
    "load_model",
    "__version__",
]
