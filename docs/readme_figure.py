"""Draw the README's overlay figure: the sample photos through the training-free methods.

    SKLEARN_USEG_WEIGHTS=... python docs/readme_figure.py

Writes ``docs/_static/readme_overlays.png`` (the photos are scikit-image's bundled,
public-domain samples, so the figure can ship with the repository).
"""

from pathlib import Path

from sklearn_useg import (CLASPSegmenter, DeepCutSegmenter, DinoFeatures, KMeansSegmenter,
                          OAPSegmenter, SuperpixelSegmenter)
from sklearn_useg.datasets import load_sample_images
from sklearn_useg.plotting import plot_segmentations

METHODS = {  # defaults: labels refined to the image's edges (refine="auto")
    "Superpixel": SuperpixelSegmenter(n_segments=12),  # 40 by default: too busy here
    "CLASP": CLASPSegmenter(random_state=0),
    "OAP": OAPSegmenter(),
    "DeepCut (2-way)": DeepCutSegmenter(n_clusters=2, random_state=0),
    "k-means (k=5)": KMeansSegmenter(5, random_state=0),
}


def main():
    data = load_sample_images()
    features = DinoFeatures(resize=224).transform(data.images)
    columns = {"image": [None] * len(data.images)}
    for name, segmenter in METHODS.items():
        columns[name] = segmenter.fit_predict(features)
    fig = plot_segmentations(data.images, columns, size=1.6)
    out = Path(__file__).parent / "_static" / "readme_overlays.png"
    fig.savefig(out, dpi=90)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
