"""
OAP's online teacher–student: moving pseudo-masks, a decoder that learns them
=============================================================================

:class:`~sklearn_useg.OAPDistillSegmenter` trains a small mask decoder the way OAP's
paper pretrains its segmenter: at every step a momentum teacher pools OAP
pseudo-masks on its own *adapted* features (so the masks move as the teacher
learns), a student predicts masks for local crops, the two are matched by Dice, and
each matched student query is distilled from its teacher mask's embedding. The
trained teacher decoder then segments an image in one forward pass.

To keep this example to seconds on a CPU, it trains a narrow decoder for 40 steps on
eight BSDS500 images (short side 224 pixels); the defaults train for 400 steps.
"""

# %%
# Train, keeping the teacher's pseudo-masks at a few steps
# --------------------------------------------------------
import matplotlib.pyplot as plt

from sklearn_useg import DinoFeatures, OAPDistillSegmenter, hungarian_miou
from sklearn_useg.datasets import load_bsds500
from sklearn_useg.plotting import plot_segmentations
from sklearn_useg.refine import upsample_labels

data = load_bsds500("val", n_images=8)
features = DinoFeatures(facet="key", resize=224).transform(data.images)
show = [1, 3]

steps = (0, 10, 40)
pseudo = {}


def keep_pseudo_masks(step, model):
    if step in steps:
        masks = model.pseudo_masks([features[i] for i in show])
        pseudo[step] = [upsample_labels(m, features[i].image_shape)
                        for m, i in zip(masks, show)]


seg = OAPDistillSegmenter(dim=64, ffn_dim=128, n_iter=steps[-1], batch_size=4,
                          device="cpu", random_state=0)
seg.fit(features, callback=keep_pseudo_masks)
print(f"trained in {seg.fit_time_:.1f} s")

fig, ax = plt.subplots(figsize=(4, 2.5))
ax.plot(seg.distillation_loss_curve_, label="self-distillation")
ax.plot(seg.mask_loss_curve_, label="mask (CE + Dice)")
ax.set_xlabel("step")
ax.legend()
fig.tight_layout()

# %%
# Teacher pseudo-masks during training, and the trained decoder's masks
# ---------------------------------------------------------------------
# Columns "step k" are the teacher's pseudo-masks after k steps: step 0 is the
# training-free pooling itself (the adapter starts as the identity), later ones are
# OAP on the teacher's adapted features. The last column is the trained teacher's
# decoder (instance queries), refined to the image edges.
labels = seg.predict([features[i] for i in show])
print(f"decoder mIoU on the two images = "
      f"{hungarian_miou([data.targets[i] for i in show], labels):.3f}")
columns = {"image": [None] * len(show)}
columns.update({f"step {step}": pseudo[step] for step in steps})
columns["decoder"] = labels
fig = plot_segmentations([data.images[i] for i in show], columns, size=2.0)
