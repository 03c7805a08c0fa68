"""Overlays and comparison grids of label maps (matplotlib only for the grids)."""

import numpy as np
from skimage.segmentation import find_boundaries

__all__ = ["overlay", "plot_segmentations"]

# Distinct colours for the first labels (matplotlib's "tab10" and the dark half of
# "tab20"), random ones beyond.
_PALETTE = np.array([
    [31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
    [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207],
    [174, 199, 232], [255, 187, 120], [152, 223, 138], [255, 152, 150], [197, 176, 213],
])


def overlay(image, labels, alpha=0.5, seed=0, boundaries=False):
    """Blend a label map over an RGB image with one random colour per label.

    Parameters
    ----------
    image : ndarray of shape (H, W, 3), uint8
        The RGB image.
    labels : ndarray of shape (H, W), int
        Non-negative labels, same (H, W) as ``image``.
    alpha : float, default=0.5
        Weight of the label colours.
    seed : int, default=0
        Seed of the palette: label ``i`` gets colour ``(i + seed)`` of a fixed list of
        15 distinct colours, labels beyond get seeded random colours.
    boundaries : bool, default=False
        Also draw the segment boundaries in white.

    Returns
    -------
    ndarray of shape (H, W, 3), uint8
        The blended image.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_useg.plotting import overlay
    >>> image = np.zeros((4, 6, 3), dtype=np.uint8)
    >>> labels = np.repeat([[0, 0, 0, 1, 1, 1]], 4, axis=0)
    >>> overlay(image, labels).shape
    (4, 6, 3)
    """
    image = np.asarray(image)
    labels = np.asarray(labels)
    if image.shape[:2] != labels.shape:
        raise ValueError(f"labels must have the image's (H, W) = {image.shape[:2]}, "
                         f"got {labels.shape}.")
    n_labels = int(labels.max()) + 1
    palette = np.roll(_PALETTE, -seed, axis=0)[:n_labels]
    if n_labels > len(palette):
        extra = np.random.RandomState(seed).randint(0, 256, size=(n_labels - len(palette), 3))
        palette = np.concatenate([palette, extra])
    blended = (1 - alpha) * image.astype(np.float32) + alpha * palette[labels]
    if boundaries:
        blended[find_boundaries(labels, mode="inner")] = 255
    return blended.clip(0, 255).astype(np.uint8)


def plot_segmentations(images, label_maps, *, titles=None, row_titles=None, alpha=0.5,
                       boundaries=True, size=2.5):
    """Show label maps as overlays in a grid: one row per image, one column per method.

    Parameters
    ----------
    images : list of ndarray of shape (H, W, 3), uint8
        One image per row.
    label_maps : dict or list
        Either a dict ``{column title: list of (H, W) label maps, one per image}`` or a
        list of lists ``label_maps[column][row]``. ``None`` in place of a label map
        shows the plain image (e.g. a first "image" column).
    titles : list of str, optional
        Column titles when ``label_maps`` is a list.
    row_titles : list of str, optional
        One title per row (image), shown on the left.
    alpha : float, default=0.5
        Weight of the label colours.
    boundaries : bool, default=True
        Draw segment boundaries in white.
    size : float, default=2.5
        Height in inches of each panel.

    Returns
    -------
    fig : matplotlib.figure.Figure
        The figure; each panel's title also gives the number of segments.
    """
    import matplotlib.pyplot as plt

    if isinstance(label_maps, dict):
        titles, columns = list(label_maps), list(label_maps.values())
    else:
        columns = list(label_maps)
        titles = list(titles) if titles is not None else [""] * len(columns)
    images = list(images)
    if any(len(column) != len(images) for column in columns):
        raise ValueError("every column of label_maps needs one label map per image.")
    aspect = images[0].shape[1] / images[0].shape[0]
    fig, axes = plt.subplots(len(images), len(columns), squeeze=False,
                             figsize=(size * aspect * len(columns), size * len(images)))
    for row, image in enumerate(images):
        for col, (title, column) in enumerate(zip(titles, columns)):
            ax = axes[row, col]
            labels = column[row]
            if labels is None:
                ax.imshow(image)
                ax.set_title(title, fontsize=9)
            else:
                ax.imshow(overlay(image, labels, alpha=alpha, boundaries=boundaries))
                ax.set_title(f"{title} ({int(labels.max()) + 1})", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        if row_titles is not None:
            axes[row, 0].set_ylabel(row_titles[row], fontsize=9)
    fig.tight_layout()
    return fig
