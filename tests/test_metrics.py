"""Tests for sklearn_useg.metrics."""

import pickle
from functools import partial

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.base import BaseEstimator
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import Pipeline

from sklearn_useg.metrics import (
    corloc,
    dataset_miou_scorer,
    foreground_iou,
    hungarian_miou,
    make_miou_scorer,
    make_segmentation_scorer,
    miou_scorer,
    pixel_accuracy,
    probabilistic_rand_index,
    segmentation_covering,
    variation_of_information,
)

A = np.array


# ---------------------------------------------------------------------------
# Hand-computed cases
# ---------------------------------------------------------------------------

# 2x4 example used by several tests.
#   gt   = 0 0 1 1      pred = 5 5 5 7
#          0 0 1 1             5 5 5 7
# confusion (rows gt 0/1, cols pred 5/7): [[4, 0], [2, 2]]
# IoU(0,5) = 4/(4+6-4) = 2/3, IoU(1,5) = 2/(4+6-2) = 1/4,
# IoU(1,7) = 2/(4+2-2) = 1/2, IoU(0,7) = 0.
# best matching 0->5, 1->7: mIoU = (2/3 + 1/2)/2 = 7/12
# pixel accuracy = (4 + 2)/8 = 3/4
# covering = (4*2/3 + 4*1/2)/8 = 7/12
GT_2x4 = A([[0, 0, 1, 1], [0, 0, 1, 1]])
PRED_2x4 = A([[5, 5, 5, 7], [5, 5, 5, 7]])


def test_hand_2x4():
    assert hungarian_miou([GT_2x4], [PRED_2x4]) == pytest.approx(7 / 12)
    assert pixel_accuracy([GT_2x4], [PRED_2x4]) == pytest.approx(3 / 4)
    assert segmentation_covering([GT_2x4], [PRED_2x4]) == pytest.approx(7 / 12)
    # Single 2-D pair is accepted as one image.
    assert hungarian_miou(GT_2x4, PRED_2x4) == pytest.approx(7 / 12)
    # Nested Python lists work too.
    assert hungarian_miou(GT_2x4.tolist(), PRED_2x4.tolist()) == pytest.approx(
        7 / 12
    )


def test_fewer_predictions_than_gt_covering_differs():
    # gt = 0 1 2 2, pred = 0 0 0 0 -> IoU with the single cluster: 1/4, 1/4, 2/4
    # mIoU: only gt 2 is matched -> (0 + 0 + 1/2)/3 = 1/6
    # pixel accuracy: 2/4 ; covering: (1/4 + 1/4 + 2*1/2)/4 = 3/8
    gt, pred = A([[0, 1, 2, 2]]), A([[0, 0, 0, 0]])
    assert hungarian_miou([gt], [pred]) == pytest.approx(1 / 6)
    assert pixel_accuracy([gt], [pred]) == pytest.approx(1 / 2)
    assert segmentation_covering([gt], [pred]) == pytest.approx(3 / 8)


def test_more_predictions_than_gt():
    # gt = 0 0 1 1, pred = 0 1 2 3: every matched pair has IoU 1/2
    gt, pred = A([[0, 0, 1, 1]]), A([[0, 1, 2, 3]])
    assert hungarian_miou([gt], [pred]) == pytest.approx(1 / 2)
    assert pixel_accuracy([gt], [pred]) == pytest.approx(1 / 2)
    assert segmentation_covering([gt], [pred]) == pytest.approx(1 / 2)
    assert hungarian_miou([gt], [pred], matching="dataset") == pytest.approx(1 / 2)


def test_ignore_pixels():
    # gt = 0 0 1 255   pred = 3 3 4 9   (last column ignored)
    #      0 1 1 255          3 4 4 3
    # valid: gt0 = 3 px all pred 3; gt1 = 3 px all pred 4 -> perfect.
    gt = A([[0, 0, 1, 255], [0, 1, 1, 255]])
    pred = A([[3, 3, 4, 9], [3, 4, 4, 3]])
    assert hungarian_miou([gt], [pred]) == 1.0
    assert hungarian_miou([gt], [pred], matching="dataset") == 1.0
    assert pixel_accuracy([gt], [pred]) == 1.0
    assert segmentation_covering([gt], [pred]) == 1.0
    # With ignore_index=None the 255 column becomes a third GT segment
    # {(0,3),(1,3)} -> pred {9, 3}; pred 3 then spans 4 px:
    # conf rows gt0/gt1/gt255, cols 3/4/9: [[3,0,0],[0,3,0],[1,0,1]]
    # IoU(0,3)=3/(3+4-3)=3/4, IoU(1,4)=1, IoU(255,9)=1/2 -> mIoU = 3/4
    assert hungarian_miou([gt], [pred], ignore_index=None) == pytest.approx(3 / 4)
    # Custom ignore index.
    gt_m = np.where(gt == 255, -1, gt)
    assert hungarian_miou([gt_m], [pred], ignore_index=-1) == 1.0


def test_fully_ignored_image_is_skipped():
    gt_bad = np.full((2, 2), 255)
    gt_ok = A([[0, 1]])
    s = hungarian_miou([gt_ok, gt_bad], [A([[1, 0]]), np.zeros((2, 2), int)],
                       return_details=True)
    assert s[0] == 1.0
    assert np.isnan(s[1]["per_image"][1])
    with pytest.raises(ValueError, match="ignore_index"):
        hungarian_miou([gt_bad], [np.zeros((2, 2), int)])
    with pytest.raises(ValueError, match="ignore_index"):
        hungarian_miou([gt_bad], [np.zeros((2, 2), int)], matching="dataset")


def test_multi_annotator_averaging():
    pred = A([[0, 0, 1, 1]])
    ann_a = A([[4, 4, 6, 6]])  # identical partition: mIoU 1, covering 1
    ann_b = A([[4, 4, 4, 4]])  # one segment, best IoU 2/4: mIoU 1/2, covering 1/2
    # pixel accuracy: ann_a 1, ann_b 2/4
    y_true = [(ann_a, ann_b), A([[1, 2]])]
    y_pred = [pred, A([[9, 8]])]
    # image 0: (1 + 1/2)/2 = 3/4, image 1: 1 -> 7/8
    score, det = hungarian_miou(y_true, y_pred, return_details=True)
    assert score == pytest.approx(7 / 8)
    np.testing.assert_allclose(det["per_image"], [3 / 4, 1.0])
    assert pixel_accuracy(y_true, y_pred) == pytest.approx(7 / 8)
    assert segmentation_covering(y_true, y_pred) == pytest.approx(7 / 8)
    # Lists of annotations work like tuples.
    assert hungarian_miou([[ann_a, ann_b]], [pred]) == pytest.approx(3 / 4)
    with pytest.raises(ValueError, match="one ground-truth map per image"):
        hungarian_miou(y_true, y_pred, matching="dataset")
    with pytest.raises(ValueError, match="one ground-truth map per image"):
        pixel_accuracy(y_true, y_pred, matching="dataset")


def test_dataset_vs_image_matching():
    # Image 1 predicts gt 0 as cluster 0, image 2 predicts it as cluster 1.
    # Per image both are perfect -> 1.0.
    # Dataset conf (gt 0/1 x pred 0/1) = [[2, 2], [2, 2]]; every IoU = 2/6
    # -> mIoU 1/3, pixel accuracy 4/8.
    y_true = [A([[0, 0, 1, 1]]), A([[0, 0, 1, 1]])]
    y_pred = [A([[0, 0, 1, 1]]), A([[1, 1, 0, 0]])]
    assert hungarian_miou(y_true, y_pred) == 1.0
    assert hungarian_miou(y_true, y_pred, matching="dataset") == pytest.approx(
        1 / 3
    )
    assert pixel_accuracy(y_true, y_pred) == 1.0
    assert pixel_accuracy(y_true, y_pred, matching="dataset") == pytest.approx(
        1 / 2
    )


def test_dataset_details_k_pred_lt_k_gt():
    # gt = 0 0 1 2 2, pred = 4 4 4 9 9 (3 GT classes, 2 clusters), split over
    # two images. conf rows 0/1/2 cols 4/9 = [[2,0],[1,0],[0,2]]
    # IoU(0,4)=2/(2+3-2)=2/3, IoU(1,4)=1/3, IoU(2,9)=1 -> matching 0->4, 2->9
    # mIoU = (2/3 + 0 + 1)/3 = 5/9; pixel accuracy = 4/5
    y_true = [A([[0, 0, 1]]), A([[2, 2]])]
    y_pred = [A([[4, 4, 4]]), A([[9, 9]])]
    score, det = hungarian_miou(y_true, y_pred, matching="dataset",
                                return_details=True)
    assert score == pytest.approx(5 / 9)
    assert det["assignment"] == {0: 4, 2: 9}
    assert det["per_class"] == pytest.approx({0: 2 / 3, 1: 0.0, 2: 1.0})
    np.testing.assert_array_equal(det["confusion"], [[2, 0], [1, 0], [0, 2]])
    np.testing.assert_array_equal(det["gt_classes"], [0, 1, 2])
    np.testing.assert_array_equal(det["pred_classes"], [4, 9])
    assert pixel_accuracy(y_true, y_pred, matching="dataset") == pytest.approx(
        4 / 5
    )


def test_dataset_k_pred_gt_k_gt():
    # gt = 0 0 1 1 over two images; pred has 3 clusters: 0 0 | 1 2
    # conf rows 0/1 cols 0/1/2 = [[2,0,0],[0,1,1]]
    # IoU(0,0)=1, IoU(1,1)=1/2 -> mIoU 3/4, pixel accuracy 3/4
    y_true = [A([[0, 0]]), A([[1, 1]])]
    y_pred = [A([[0, 0]]), A([[1, 2]])]
    assert hungarian_miou(y_true, y_pred, matching="dataset") == pytest.approx(
        3 / 4
    )
    assert pixel_accuracy(y_true, y_pred, matching="dataset") == pytest.approx(
        3 / 4
    )


def test_foreground_iou():
    # gt fg = columns 1,2 (4 px); pred fg = columns 2,3 (4 px)
    # inter = 2, union = 6 -> 1/3
    gt = A([[0, 1, 1, 0], [0, 1, 1, 0]])
    pred = A([[0, 0, 3, 3], [0, 0, 3, 3]])
    assert foreground_iou([gt], [pred]) == pytest.approx(1 / 3)
    # both empty -> 1.0; mean with the first image -> (1/3 + 1)/2
    z = np.zeros((2, 2), int)
    assert foreground_iou([gt, z], [pred, z]) == pytest.approx(2 / 3)
    # ignored column 3 removes the false positive there: inter 2, union 4
    gt_i = gt.copy()
    gt_i[:, 3] = 255
    assert foreground_iou([gt_i], [pred]) == pytest.approx(1 / 2)
    # Boolean maps are accepted.
    assert foreground_iou([gt > 0], [gt > 0]) == 1.0


def test_corloc():
    gt = np.zeros((6, 6), int)
    gt[1:4, 1:4] = 1  # box (1,1)-(4,4), area 9

    hit = np.zeros((6, 6), int)
    hit[1:4, 1:3] = 7  # box area 6, IoU 6/9 >= 0.5
    hit[5, 5] = 7  # smaller component, ignored

    miss = np.zeros((6, 6), int)
    miss[4:6, 4:6] = 1  # largest component, box disjoint from gt
    miss[2, 2] = 1

    empty = np.zeros((6, 6), int)

    assert corloc([gt], [hit]) == 1.0
    assert corloc([gt], [hit], threshold=0.7) == 0.0  # 6/9 < 0.7
    assert corloc([gt], [miss]) == 0.0
    assert corloc([gt], [empty]) == 0.0
    assert corloc([gt, gt, gt], [hit, miss, empty]) == pytest.approx(1 / 3)

    # 8-connectivity: diagonal (0,0),(1,1),(2,2) is one 3-px component and
    # beats the 2-px horizontal bar; its box (0,0)-(3,3) equals the GT box.
    diag = np.zeros((6, 6), int)
    diag[[0, 1, 2], [0, 1, 2]] = 1
    diag[5, 0:2] = 1
    gt_d = np.zeros((6, 6), int)
    gt_d[0:3, 0:3] = 2
    assert corloc([gt_d], [diag]) == 1.0

    # Several GT objects: a hit on any of them counts.
    gt_two = np.zeros((6, 6), int)
    gt_two[0:2, 0:2] = 1
    gt_two[4:6, 4:6] = 1
    assert corloc([gt_two], [miss]) == 1.0  # miss box is (4,4)-(6,6)

    with pytest.raises(ValueError, match="threshold"):
        corloc([gt], [hit], threshold=1.5)


# ---------------------------------------------------------------------------
# Validation errors
# ---------------------------------------------------------------------------


def test_shape_mismatch_names_index_and_shapes():
    y_true = [np.zeros((2, 4), int), np.zeros((2, 4), int)]
    y_pred = [np.zeros((2, 4), int), np.zeros((2, 3), int)]
    for fn in (hungarian_miou, pixel_accuracy, segmentation_covering,
               foreground_iou, corloc):
        with pytest.raises(ValueError) as exc:
            fn(y_true, y_pred)
        msg = str(exc.value)
        assert "1" in msg and "(2, 4)" in msg and "(2, 3)" in msg


def test_annotation_shape_mismatch():
    with pytest.raises(ValueError, match=r"y_true\[0\]\[1\].*\(3, 3\)"):
        hungarian_miou([(np.zeros((2, 2), int), np.zeros((3, 3), int))],
                       [np.zeros((2, 2), int)])


def test_length_mismatch_and_empty():
    with pytest.raises(ValueError, match="same number of images"):
        hungarian_miou([GT_2x4, GT_2x4], [PRED_2x4])
    with pytest.raises(ValueError, match="y_true is empty"):
        hungarian_miou([], [])
    with pytest.raises(ValueError, match="y_pred is empty"):
        pixel_accuracy([GT_2x4], [])
    with pytest.raises(ValueError, match="empty"):
        segmentation_covering([[]], [GT_2x4])


def test_dtype_validation():
    with pytest.raises(ValueError, match=r"y_pred\[0\].*not integral"):
        hungarian_miou([GT_2x4], [PRED_2x4 + 0.5])
    with pytest.raises(ValueError, match=r"y_true\[0\].*not integral"):
        hungarian_miou([np.full((2, 2), np.nan)], [np.zeros((2, 2))])
    # Integral floats are fine.
    assert hungarian_miou([GT_2x4.astype(float)], [PRED_2x4.astype(np.float32)]) \
        == pytest.approx(7 / 12)
    with pytest.raises(TypeError, match=r"y_pred\[0\].*dtype"):
        hungarian_miou([GT_2x4], [PRED_2x4.astype(str)])
    with pytest.raises(ValueError, match=r"y_true\[0\].*2-D"):
        hungarian_miou([np.zeros(4, int)], [np.zeros(4, int)])
    with pytest.raises(TypeError, match="y_pred"):
        hungarian_miou([GT_2x4], None)


def test_parameter_validation():
    with pytest.raises(ValueError, match="matching"):
        hungarian_miou([GT_2x4], [PRED_2x4], matching="global")
    with pytest.raises(ValueError, match="matching"):
        pixel_accuracy([GT_2x4], [PRED_2x4], matching="foo")
    with pytest.raises(TypeError, match="ignore_index"):
        hungarian_miou([GT_2x4], [PRED_2x4], ignore_index=0.5)
    with pytest.raises(ValueError, match="matching"):
        make_miou_scorer(matching="foo")
    with pytest.raises(ValueError, match="return_details"):
        make_segmentation_scorer(hungarian_miou, return_details=True)
    with pytest.raises(TypeError, match="corloc"):
        make_segmentation_scorer(corloc, matching="image")
    with pytest.raises(ValueError, match="metric"):
        make_segmentation_scorer("nope")


def test_3d_array_input():
    y_true = np.stack([GT_2x4, GT_2x4])
    y_pred = np.stack([PRED_2x4, GT_2x4])
    assert hungarian_miou(y_true, y_pred) == pytest.approx((7 / 12 + 1) / 2)


# ---------------------------------------------------------------------------
# Property-based tests
# ---------------------------------------------------------------------------

HSET = settings(max_examples=50, deadline=None, derandomize=True, database=None)

MATCHED_METRICS = {
    "miou_image": partial(hungarian_miou, matching="image"),
    "miou_dataset": partial(hungarian_miou, matching="dataset"),
    "acc_image": partial(pixel_accuracy, matching="image"),
    "acc_dataset": partial(pixel_accuracy, matching="dataset"),
    "covering": segmentation_covering,
    "pri": probabilistic_rand_index,
}
ALL_METRICS = dict(MATCHED_METRICS, fg_iou=foreground_iou)


@st.composite
def map_pairs(draw, n_pred_labels=5):
    """1-3 images of shape up to 4x4; GT in {0,1,2,255}, pred in 0..4."""
    n = draw(st.integers(1, 3))
    gts, preds = [], []
    for _ in range(n):
        shape = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
        gts.append(draw(hnp.arrays(np.int64, shape,
                                   elements=st.sampled_from([0, 1, 2, 255]))))
        preds.append(draw(hnp.arrays(np.int64, shape,
                                     elements=st.integers(0, n_pred_labels - 1))))
    if not any((g != 255).any() for g in gts):
        gts[0][0, 0] = 0  # make sure at least one pixel is evaluated
    return gts, preds


@pytest.mark.parametrize("name", list(ALL_METRICS))
@HSET
@given(data=map_pairs())
def test_prop_identical_is_one(name, data):
    gts, _ = data
    assert ALL_METRICS[name](gts, [g.copy() for g in gts]) == pytest.approx(1.0)


@pytest.mark.parametrize("name", list(ALL_METRICS))
@HSET
@given(data=map_pairs())
def test_prop_bounds(name, data):
    gts, preds = data
    s = ALL_METRICS[name](gts, preds)
    assert isinstance(s, float)
    assert -1e-12 <= s <= 1 + 1e-12


@pytest.mark.parametrize("name", list(MATCHED_METRICS))
@HSET
@given(data=map_pairs(),
       mapping=st.lists(st.integers(0, 10**6), min_size=5, max_size=5,
                        unique=True))
def test_prop_relabel_invariance(name, data, mapping):
    gts, preds = data
    mapping = np.asarray(mapping)
    fn = MATCHED_METRICS[name]
    # The same injective remap for all images (valid for every mode).
    assert fn(gts, [mapping[p] for p in preds]) == fn(gts, preds)


@pytest.mark.parametrize("name", ["miou_image", "acc_image", "covering", "pri"])
@HSET
@given(data=map_pairs(), perms=st.lists(st.permutations(range(5)),
                                        min_size=3, max_size=3))
def test_prop_per_image_relabel_invariance(name, data, perms):
    gts, preds = data
    fn = MATCHED_METRICS[name]
    relabelled = [np.asarray(perm)[p] for perm, p in zip(perms, preds)]
    assert fn(gts, relabelled) == fn(gts, preds)


@pytest.mark.parametrize("name", list(ALL_METRICS))
@HSET
@given(data=map_pairs(), seed=st.integers(0, 2**32 - 1))
def test_prop_ignore_pixels_have_no_effect(name, data, seed):
    gts, preds = data
    rng = np.random.default_rng(seed)
    changed = [np.where(g == 255, rng.integers(0, 8, g.shape), p)
               for g, p in zip(gts, preds)]
    fn = ALL_METRICS[name]
    assert fn(gts, changed) == fn(gts, preds)


@HSET
@given(data=map_pairs(), perms=st.lists(st.permutations(range(5)), min_size=3,
                                        max_size=3))
def test_prop_voi_distance(data, perms):
    """VoI is 0 on identical maps, >= 0, invariant to relabelling and ignored pixels."""
    gts, preds = data
    assert variation_of_information(gts, [g.copy() for g in gts]) == pytest.approx(0.0)
    voi = variation_of_information(gts, preds)
    assert voi >= 0
    relabelled = [np.asarray(perm)[p] for perm, p in zip(perms, preds)]
    assert variation_of_information(gts, relabelled) == pytest.approx(voi)
    changed = [np.where(g == 255, 7, p) for g, p in zip(gts, preds)]
    assert variation_of_information(gts, changed) == pytest.approx(voi)


@HSET
@given(data=map_pairs())
def test_prop_pri_and_voi_agree_with_references(data):
    """Per image: PRI is scikit-learn's Rand index, VoI scikit-image's; both symmetric."""
    from skimage.metrics import variation_of_information as skimage_voi
    from sklearn.metrics import rand_score

    for gt, pred in zip(*data):
        if (gt == 255).all():
            continue
        keep = gt != 255
        assert probabilistic_rand_index(gt, pred) == pytest.approx(
            rand_score(gt[keep], pred[keep]))
        assert variation_of_information(gt, pred) == pytest.approx(
            skimage_voi(gt, pred, ignore_labels=[255]).sum())
        full = np.where(keep, gt, 3)
        assert probabilistic_rand_index(full, pred) == pytest.approx(
            probabilistic_rand_index(pred, full))
        assert variation_of_information(full, pred) == pytest.approx(
            variation_of_information(pred, full))


def test_pri_voi_hand_computed():
    # gt 0 0 1 1 / pred 5 5 5 7: of the 6 pixel pairs, (0,1), (0,3), (1,3) agree
    gt, pred = A([[0, 0, 1, 1]]), A([[5, 5, 5, 7]])
    assert probabilistic_rand_index([gt], [pred]) == 0.5
    # joint p = (1/2, 1/4, 1/4): VoI = 2 H(joint) - H(gt) - H(pred)
    h_pred = -(0.75 * np.log2(0.75) + 0.25 * np.log2(0.25))
    assert variation_of_information([gt], [pred]) == pytest.approx(2 * 1.5 - 1 - h_pred)
    # one segment against two halves: 4 of the 6 pairs split, 1 bit of entropy
    assert probabilistic_rand_index([gt], [np.zeros_like(gt)]) == pytest.approx(2 / 6)
    assert variation_of_information([gt], [np.zeros_like(gt)]) == 1.0
    # a single evaluated pixel has no pair to disagree on
    assert probabilistic_rand_index([A([[0, 255]])], [A([[1, 2]])]) == 1.0


def test_pri_voi_average_annotators_then_images():
    gt, pred = A([[0, 0, 1, 1]]), A([[5, 5, 5, 7]])
    annotators = [gt, np.zeros_like(gt)]  # image 0: the mean over its two annotators
    y_true, y_pred = [annotators, gt], [pred, gt]
    expected = (np.mean([0.5, probabilistic_rand_index(annotators[1], pred)]) + 1) / 2
    assert probabilistic_rand_index(y_true, y_pred) == pytest.approx(expected)
    expected = np.mean([variation_of_information(a, pred) for a in annotators]) / 2
    assert variation_of_information(y_true, y_pred) == pytest.approx(expected)
    with pytest.raises(ValueError, match="ignore_index"):
        variation_of_information([A([[255]])], [A([[0]])])


# ---------------------------------------------------------------------------
# Scorers
# ---------------------------------------------------------------------------


class ThresholdSegmenter(BaseEstimator):
    """Dummy segmenter: label map = (image > threshold)."""

    def __init__(self, threshold=0.5):
        self.threshold = threshold

    def fit(self, X, y=None):
        self.fitted_ = True
        return self

    def predict(self, X):
        return [(np.asarray(x) > self.threshold).astype(np.int64) for x in X]


def _threshold_data():
    rng = np.random.default_rng(0)
    X = [rng.random((8, 8)) for _ in range(6)]
    y = [(x > 0.3).astype(np.int64) for x in X]
    return X, y


@pytest.mark.parametrize("scorer", [miou_scorer, dataset_miou_scorer,
                                    make_segmentation_scorer("pixel_accuracy")])
def test_scorer_in_grid_search(scorer):
    X, y = _threshold_data()
    pipe = Pipeline([("seg", ThresholdSegmenter())])
    gs = GridSearchCV(pipe, {"seg__threshold": [0.1, 0.3, 0.7]},
                      scoring=scorer, cv=KFold(3))
    gs.fit(X, y)
    assert gs.best_params_ == {"seg__threshold": 0.3}
    assert gs.best_score_ == pytest.approx(1.0)


def test_scorer_value_pickle_and_repr():
    X, y = _threshold_data()
    est = ThresholdSegmenter(threshold=0.7).fit(X, y)
    expected = hungarian_miou(y, est.predict(X))
    assert miou_scorer(est, X, y) == pytest.approx(expected)
    for sc in (miou_scorer, dataset_miou_scorer,
               make_segmentation_scorer(segmentation_covering)):
        clone = pickle.loads(pickle.dumps(sc))
        assert clone(est, X, y) == sc(est, X, y)
    assert "hungarian_miou" in repr(miou_scorer)
    assert "dataset" in repr(dataset_miou_scorer)
    assert dataset_miou_scorer(est, X, y) == pytest.approx(
        hungarian_miou(y, est.predict(X), matching="dataset"))
