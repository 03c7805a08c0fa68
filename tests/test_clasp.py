"""CLASPSegmenter: exact thin spectrum, elbow, silhouette, recovery, sklearn integration."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, silhouette_score
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from sklearn_useg.datasets import make_segmentation_blobs
from sklearn_useg.graph import eigengap_elbow, l2_normalize, thin_factor_spectrum
from sklearn_useg.metrics import hungarian_miou, miou_scorer
from sklearn_useg.segmenters.clasp import CLASPSegmenter, cosine_silhouette


@pytest.fixture(autouse=True)
def _single_thread():
    """The dense references here are small: threaded BLAS only adds busy-waiting."""
    with threadpool_limits(limits=1):
        yield


def _blobs(n_images=2, **kwargs):
    params = dict(grid_shape=(16, 20), n_segments=4, noise=0.05, random_state=0)
    params.update(kwargs)
    return make_segmentation_blobs(n_images, **params)


def _naive_elbow(eigenvalues):
    """The rule written out point by point: distance of (i, δ_i) to the chord."""
    lam = np.asarray(eigenvalues, dtype=float)
    gaps = lam[:-1] - lam[1:]
    p1, p2 = np.array([1.0, gaps[0]]), np.array([len(gaps), gaps[-1]])
    chord = p2 - p1
    if not chord.any():  # one gap, or a flat chord of length 0
        return 2
    best, best_i = -1.0, 1
    for i, gap in enumerate(gaps, start=1):
        v = np.array([i, gap]) - p1
        dist = abs(chord[0] * v[1] - chord[1] * v[0]) / np.linalg.norm(chord)
        if dist > best:
            best, best_i = dist, i
    return best_i + 1


def _dense_clasp(features, seg, random_state=0):
    """Dense reference of CLASP: eigh of the n x n affinity, the elbow, k-means per K on
    A's eigenvectors (scaled by √λ with ``embedding="scaled"``), sklearn's silhouette,
    with ``sweep_n_init`` restarts, then the chosen K with ``n_init``. The k-means seed
    is drawn as the segmenter draws it (one seed per call from random_state, then one
    per image)."""
    seed = np.random.RandomState(
        np.random.RandomState(random_state).randint(2**31 - 1)).randint(2**31 - 1)
    X = l2_normalize(features.reshape(-1, features.shape[-1])).astype(np.float64)
    values, vectors = np.linalg.eigh(X @ X.T)
    values, vectors = values[::-1], vectors[:, ::-1]
    if seg.embedding == "scaled":
        vectors = vectors * np.sqrt(np.maximum(values, 0))
    k_opt = _naive_elbow(values)
    floor = min(seg.min_segments, seg.max_segments)
    lo = max(floor, math.floor(k_opt * (1 - seg.beta)))
    hi = min(max(math.ceil(k_opt * (1 + seg.beta)), floor), seg.max_segments)
    best = None
    for k in range(lo, hi + 1):
        labels = KMeans(k, n_init=seg.sweep_n_init or seg.n_init, random_state=seed
                        ).fit_predict(l2_normalize(vectors[:, :k]))
        score = silhouette_score(X, labels, metric="cosine")
        if best is None or score > best[0]:
            best = (score, k, labels)
    labels = KMeans(best[1], n_init=seg.n_init, random_state=seed).fit_predict(
        l2_normalize(vectors[:, :best[1]]))
    return k_opt, best[1], labels


def _check_matches_dense(features, embedding="scaled", sweep_n_init=1):
    seg = CLASPSegmenter(n_init=3, sweep_n_init=sweep_n_init, embedding=embedding,
                         random_state=0)
    labels, details = seg.fit([features]).predict([features], return_details=True)
    k_opt, k, dense_labels = _dense_clasp(features, seg)
    assert details[0]["k_opt"] == k_opt
    assert details[0]["n_segments"] == k
    assert adjusted_rand_score(dense_labels, labels[0].ravel()) == 1.0


def test_thin_spectrum_equals_dense_eigh():
    rng = np.random.RandomState(0)
    for n, d in ((300, 16), (12, 40)):  # thin (d < n) and wide factors
        X = l2_normalize(rng.randn(n, d)).astype(np.float64)
        values, U = thin_factor_spectrum(X, n_vectors=5)
        dense = np.linalg.eigvalsh(X @ X.T)[::-1]
        np.testing.assert_allclose(values, dense, atol=1e-10 * dense[0])
        assert np.all(values[min(n, d):] == 0.0)  # exact zeros beyond the rank
        np.testing.assert_allclose(U.T @ U, np.eye(5), atol=1e-10)
        np.testing.assert_allclose(X @ (X.T @ U), U * values[:5], atol=1e-9 * dense[0])
        _, U_torch = thin_factor_spectrum(X, n_vectors=5, device="cpu")
        np.testing.assert_allclose(U_torch, U, atol=1e-9)
    # eigenvectors only up to the numerical rank: a rank-2 factor gives 2
    X = np.repeat(np.eye(2, 4), 5, axis=0)
    values, U = thin_factor_spectrum(X, n_vectors=4)
    assert U.shape == (10, 2) and np.allclose(values[:2], 5) and np.all(values[2:] == 0)


@given(st.lists(st.floats(0, 100), min_size=2, max_size=40))
def test_elbow_matches_pointwise_rule(values):
    lam = np.sort(values)[::-1]
    assert eigengap_elbow(lam) == _naive_elbow(lam)


def test_elbow_known_value_and_edge_cases():
    # gaps 1, 1, 8, 0.1, 0.1, ...: the elbow of the gap curve is at i = 3 -> K_opt = 4
    lam = np.array([20, 19, 18, 10, 9.9, 9.8, 9.7, 9.6, 9.5, 9.4, 9.3])
    assert eigengap_elbow(lam) == _naive_elbow(lam) == 4
    assert eigengap_elbow([3.0]) == 1
    assert eigengap_elbow([3.0, 1.0]) == 2


@given(st.integers(0, 2**16), st.integers(3, 40), st.integers(2, 6))
def test_cosine_silhouette_equals_sklearn(seed, n, k):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, 5)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    labels = rng.randint(0, min(k, n - 1), n)
    if len(np.unique(labels)) < 2:
        labels[0] = 1 - labels[1]
    assert cosine_silhouette(X, labels) == pytest.approx(
        silhouette_score(X, labels, metric="cosine"), abs=1e-9)


@pytest.mark.parametrize("embedding, sweep_n_init",
                         [("scaled", 1), ("eigenvectors", 1), ("scaled", None)])
def test_matches_dense_computation_on_random_features(embedding, sweep_n_init):
    X, _ = _blobs(1, n_segments=5, noise=0.3, n_features=24, random_state=3)
    _check_matches_dense(X[0], embedding, sweep_n_init)
    rng = np.random.RandomState(1)
    _check_matches_dense(rng.randn(12, 15, 32).astype(np.float32) + 0.5, embedding,
                         sweep_n_init)


def test_sweep_restarts_pick_k_and_every_restart_labels_it():
    """With ``sweep_n_init`` < ``n_init`` the returned labels are the fixed-K fit of the
    chosen K with all ``n_init`` restarts, and their silhouette is reported (here one
    restart alone labels the chosen K differently)."""
    X, _ = _blobs(1, n_segments=5, noise=1.0, n_features=24, random_state=3)
    labels, details = CLASPSegmenter(sweep_n_init=1, random_state=0).fit(X).predict(
        X, return_details=True)
    k = details[0]["n_segments"]
    assert k == max(details[0]["silhouettes"], key=details[0]["silhouettes"].get)
    fixed, fixed_details = CLASPSegmenter(n_segments=k, random_state=0).fit(X).predict(
        X, return_details=True)
    np.testing.assert_array_equal(labels[0], fixed[0])
    assert details[0]["silhouette"] == fixed_details[0]["silhouette"]


@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_recovers_k_and_partition_on_blobs(k):
    # the paper's floor: K from the spectrum alone, down to 2
    X, y = _blobs(2, n_segments=k, random_state=k)
    labels, details = CLASPSegmenter(min_segments=2, random_state=0).fit(X).predict(
        X, return_details=True)
    assert [d["n_segments"] for d in details] == [k, k]
    assert hungarian_miou(y, labels) >= 0.95
    for d in details:
        assert d["n_segments"] == max(d["silhouettes"], key=d["silhouettes"].get)


@pytest.mark.parametrize("params", [dict(spectrum="laplacian"), dict(silhouette="euclidean"),
                                    dict(normalize="center_l2"), dict(n_segments=3),
                                    dict(embedding="eigenvectors", beta=0.5)])
def test_variants_recover_blobs(params):
    # (at random_state=7 the euclidean silhouette picks K=2 on one image: measured in
    # the K-dimensional embedding, it favours small K; see the estimator's docstring)
    X, y = _blobs(2, n_segments=3, random_state=8)
    labels, details = CLASPSegmenter(min_segments=2, random_state=0, **params).fit(
        X).predict(X, return_details=True)
    assert hungarian_miou(y, labels) >= 0.95
    assert all(d["n_segments"] == 3 for d in details)


def test_fixed_k_and_sweep_range():
    X, _ = _blobs(1, n_segments=4)
    _, details = CLASPSegmenter(n_segments=6, random_state=0).fit(X).predict(
        X, return_details=True)
    assert details[0]["n_segments"] == 6 and list(details[0]["silhouettes"]) == [6]
    seg = CLASPSegmenter(beta=0.5, min_segments=2, max_segments=8)
    assert seg._k_range(5, cap=20) == [2, 3, 4, 5, 6, 7, 8]
    assert seg._k_range(1, cap=20) == [2]
    assert CLASPSegmenter(beta=0.1)._k_range(10, cap=20) == [9, 10, 11]
    assert CLASPSegmenter(beta=0.0)._k_range(4, cap=3) == [3]
    # min_segments raises the floor of the sweep, never above max_segments or the cap
    assert CLASPSegmenter(beta=0.35, min_segments=4)._k_range(2, cap=20) == [4]
    assert CLASPSegmenter(beta=0.35, min_segments=4)._k_range(4, cap=20) == [4, 5, 6]
    assert CLASPSegmenter(min_segments=4)._k_range(2, cap=3) == [3]
    assert CLASPSegmenter(min_segments=5, max_segments=4)._k_range(2, cap=20) == [4]


def test_min_segments_floors_the_chosen_k():
    X, y = _blobs(2, n_segments=2, random_state=2)
    _, free = CLASPSegmenter(min_segments=2, random_state=0).fit(X).predict(
        X, return_details=True)
    labels, floored = CLASPSegmenter(min_segments=4, random_state=0).fit(X).predict(
        X, return_details=True)
    assert [d["n_segments"] for d in free] == [2, 2]
    assert all(d["n_segments"] >= 4 and min(d["silhouettes"]) >= 4 for d in floored)
    assert all(lab.max() + 1 == d["n_segments"] for lab, d in zip(labels, floored))


grids = st.tuples(st.integers(1, 6), st.integers(1, 6), st.integers(1, 5)).flatmap(
    lambda s: arrays(np.float32, s, elements=st.floats(-2, 2, width=32)))


@settings(max_examples=25, deadline=None)
@given(grids, st.sampled_from(["affinity", "laplacian"]),
       st.sampled_from(["cosine", "euclidean"]), st.integers(0, 3))
def test_output_contract_on_any_grid(grid, spectrum, silhouette, seed):
    seg = CLASPSegmenter(spectrum=spectrum, silhouette=silhouette, n_init=2,
                         max_segments=4, random_state=seed)
    labels, details = seg.fit([grid]).predict([grid], return_details=True)
    out = labels[0]
    assert out.shape == grid.shape[:2] and out.dtype == np.int32
    assert np.array_equal(np.unique(out), np.arange(out.max() + 1))
    assert out.max() + 1 == details[0]["n_segments"] <= 4
    again = CLASPSegmenter(spectrum=spectrum, silhouette=silhouette, n_init=2,
                           max_segments=4, random_state=seed).fit([grid]).predict([grid])
    np.testing.assert_array_equal(again[0], out)


@pytest.mark.parametrize("params, error", [
    (dict(n_segments=1), ValueError), (dict(n_segments=2.5), ValueError),
    (dict(beta=-0.1), ValueError), (dict(max_segments=1), ValueError),
    (dict(min_segments=1), ValueError),
    (dict(spectrum="normalized"), ValueError), (dict(silhouette="l1"), ValueError),
    (dict(normalize="none"), ValueError), (dict(n_init=0), ValueError),
    (dict(sweep_n_init=0), ValueError),
    (dict(refine="yes"), ValueError), (dict(refine_params={"iterations": 5}), ValueError),
    (dict(device="tpu"), ValueError),
])
def test_invalid_params(params, error):
    X, _ = _blobs(1)
    with pytest.raises(error):
        CLASPSegmenter(**params).fit(X)


def test_crf_needs_the_image():
    X, _ = _blobs(1)
    with pytest.raises(ValueError, match="needs the image"):
        CLASPSegmenter(refine="crf", random_state=0).fit(X).predict(X)


def test_grid_search_over_beta_and_n_segments():
    X, y = _blobs(4, n_segments=3, random_state=11)
    pipe = Pipeline([("seg", CLASPSegmenter(min_segments=2, n_init=3, random_state=0))])
    grid = {"seg__n_segments": [None, 2, 5], "seg__beta": [0.25, 0.5]}
    search = GridSearchCV(pipe, grid, scoring=miou_scorer, cv=2).fit(X, y)
    assert search.best_params_["seg__n_segments"] is None
    # one of the 4 images has two regions with similar centres: the silhouette keeps
    # K = 2 there (mIoU 0.66), the other three are recovered exactly
    assert search.best_score_ >= 0.9


@pytest.mark.real_data
def test_real_images_contract_and_determinism(bsds_small, bsds_small_features):
    features = bsds_small_features["token"]
    for crf in (False, True):
        seg = CLASPSegmenter(refine="crf" if crf else None, n_init=3, random_state=0)
        labels, details = seg.fit(features).predict(features, return_details=True)
        again = seg.predict(features)
        for image, out, rep, det in zip(bsds_small.images, labels, again, details):
            assert out.shape == image.shape[:2] and out.dtype == np.int32
            assert np.array_equal(np.unique(out), np.arange(out.max() + 1))
            np.testing.assert_array_equal(out, rep)
            if not crf:
                assert out.max() + 1 == det["n_segments"] >= 2


@pytest.mark.real_data
def test_matches_dense_computation_on_a_real_image(bsds_small_features):
    _check_matches_dense(bsds_small_features["token"][0].features)
