"""Small, off-centre objects: Weizmann horses pasted onto BSDS500 photographs.

    python benchmarks/small_objects.py /tmp/small_objects
    python benchmarks/quality.py --folder /tmp/small_objects/images:/tmp/small_objects/masks \\
        --task object --methods kmeans clasp oap deepcut superpixel spectral

The shared splits have no scene with a small object (a Weizmann horse covers about
40 % of its image). This script writes one: each horse, cut out along its mask and
scaled to cover a random fraction of a BSDS500 photograph (3-12 % by default), is
pasted at a random place of it. The mask of the pasted horse is the only foreground
(the photograph's own objects, often salient, are background), so the object task of
``benchmarks/quality.py`` scores how well a method and the foreground rule find a
small object among distractors. Composites are seeded: the same arguments write the
same images. Nothing is downloaded; both datasets come from ``$SKLEARN_USEG_DATA``.

The user guide's figures for the attention rule's threshold use three sets:
``--split train --seed 1 --offset 1`` (chosen on), ``--split val --seed 0`` and
``--split val --seed 2 --offset 2 --min-fraction 0.15 --max-fraction 0.3`` (larger
objects; composites whose horse would not fit are skipped, 95 remain).
"""

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from skimage.transform import resize

from sklearn_useg.datasets import load_bsds500, load_weizmann_horse


def paste(background, image, mask, fraction, rng):
    """``background`` with the masked part of ``image`` pasted at a random place.

    The object is cropped to its bounding box and scaled so that it covers about
    ``fraction`` of the background. Returns (composite, foreground mask), or None
    when the scaled object does not fit.
    """
    ys, xs = np.nonzero(mask)
    box = np.s_[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    crop, crop_mask = image[box], mask[box]
    H, W = background.shape[:2]
    scale = np.sqrt(fraction * H * W / crop_mask.sum())
    h = max(4, int(crop_mask.shape[0] * scale))
    w = max(4, int(crop_mask.shape[1] * scale))
    if h >= H or w >= W:
        return None
    crop = resize(crop, (h, w), order=1, preserve_range=True,
                  anti_aliasing=True).astype(np.uint8)
    crop_mask = resize(crop_mask.astype(float), (h, w), order=1, anti_aliasing=True) > 0.5
    y0, x0 = rng.randint(0, H - h), rng.randint(0, W - w)
    composite = background.copy()
    composite[y0:y0 + h, x0:x0 + w][crop_mask] = crop[crop_mask]
    foreground = np.zeros((H, W), bool)
    foreground[y0:y0 + h, x0:x0 + w] = crop_mask
    return composite, foreground


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write images/ and masks/ into")
    parser.add_argument("--n-images", type=int, default=120)
    parser.add_argument("--split", default="val", choices=["train", "val", "test"],
                        help="BSDS500 split of the backgrounds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--offset", type=int, default=0,
                        help="shift of the horses drawn (another set of horses)")
    parser.add_argument("--min-fraction", type=float, default=0.03)
    parser.add_argument("--max-fraction", type=float, default=0.12)
    parser.add_argument("--data-home", default=None)
    args = parser.parse_args(argv)

    horses = load_weizmann_horse(data_home=args.data_home)
    backgrounds = load_bsds500(args.split, data_home=args.data_home).images
    rng = np.random.RandomState(args.seed)
    (args.out / "images").mkdir(parents=True, exist_ok=True)
    (args.out / "masks").mkdir(parents=True, exist_ok=True)
    n_horses, written = len(horses.images), 0
    for i in range(args.n_images):
        k = (i * n_horses // args.n_images + args.offset) % n_horses
        fraction = rng.uniform(args.min_fraction, args.max_fraction)
        pasted = paste(backgrounds[i % len(backgrounds)], horses.images[k],
                       horses.targets[k] == 1, fraction, rng)
        if pasted is None:
            continue
        composite, foreground = pasted
        Image.fromarray(composite).save(args.out / "images" / f"c{i:03d}.png")
        Image.fromarray(foreground.astype(np.uint8) * 255).save(
            args.out / "masks" / f"c{i:03d}.png")
        written += 1
    print(f"wrote {written} composites to {args.out}")


if __name__ == "__main__":
    main()
