"""The segmentation methods, each a scikit-learn estimator over patch features."""

from ._base import BaseSegmenter, SegmentResult
from .acseg import ACSegSegmenter
from .clasp import CLASPSegmenter
from .deepcut import DeepCutSegmenter
from .il2vseg import IL2VSegmenter
from .kmeans import KMeansSegmenter
from .oap import OAPSegmenter
from .oap_training import OAPDistillSegmenter
from .superpixel import SuperpixelSegmenter

__all__ = ["BaseSegmenter", "SegmentResult", "KMeansSegmenter", "CLASPSegmenter",
           "DeepCutSegmenter", "ACSegSegmenter",
           "IL2VSegmenter", "OAPSegmenter", "OAPDistillSegmenter", "SuperpixelSegmenter"]
