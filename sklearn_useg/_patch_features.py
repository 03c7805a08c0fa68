"""PatchFeatures: the patch features of one image, the contract between the feature
extractor and the segmenters (a leaf module: it imports nothing from the package)."""

from dataclasses import dataclass
from typing import Optional

import numpy as np


@dataclass(eq=False)
class PatchFeatures:
    """Patch features of one image: the contract between features and segmenters.

    Parameters
    ----------
    features : ndarray of shape (h, w, d), float32
        Features on the patch grid (denser than ``image_shape / patch_size`` when
        ``stride < patch_size``).
    image_shape : tuple of int
        ``(H, W)`` of the original image; segmenters return labels of this shape.
    image : ndarray of shape (H, W, 3), uint8, optional
        The original RGB image (for DenseCRF and colour cues).
    attention : ndarray of shape (heads, h, w), optional
        Last-layer CLS-to-patch attention.
    patch_size, stride : int
        Patch size and stride of the grid, in pixels of the resized image.
    backbone : str, optional
        Name of the backbone that produced the features.
    """

    features: np.ndarray
    image_shape: tuple
    image: Optional[np.ndarray] = None
    attention: Optional[np.ndarray] = None
    patch_size: int = 1
    stride: int = 1
    backbone: Optional[str] = None

    @property
    def grid_shape(self):
        """``(h, w)`` of the patch grid."""
        return tuple(self.features.shape[:2])

    @property
    def n_patches(self):
        """Number of patches ``h * w``."""
        return int(self.features.shape[0] * self.features.shape[1])

    @property
    def flat(self):
        """Features as an ``(h * w, d)`` matrix (row-major over the grid)."""
        return self.features.reshape(-1, self.features.shape[-1])
