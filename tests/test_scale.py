"""Per-image work on a dask.distributed cluster through joblib's dask backend."""

import numpy as np
import pytest
from joblib import parallel_backend

from sklearn_useg import CLASPSegmenter, KMeansSegmenter
from sklearn_useg.datasets import make_segmentation_blobs

distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        yield client


@pytest.mark.parametrize("segmenter", [CLASPSegmenter(n_init=3, random_state=0),
                                       KMeansSegmenter(4, random_state=0)])
def test_dask_predictions_equal_single_process(client, segmenter):
    X, _ = make_segmentation_blobs(6, grid_shape=(12, 16), n_segments=3, random_state=0)
    expected = segmenter.fit(X).predict(X)
    with distributed.get_task_stream(client) as stream, parallel_backend("dask"):
        labels = segmenter.predict(X)
    assert stream.data, "no task ran on the cluster"  # the work really left this process
    assert len(labels) == len(expected)
    for got, want in zip(labels, expected):
        assert got.dtype == np.int32
        np.testing.assert_array_equal(got, want)


@pytest.mark.real_data
def test_dask_on_real_features(client, bsds_small_features):
    features = bsds_small_features["token"]
    segmenter = CLASPSegmenter(n_init=3, random_state=0).fit(features)
    expected = segmenter.predict(features)
    with parallel_backend("dask"):
        labels = segmenter.predict(features)
    for got, want in zip(labels, expected):
        np.testing.assert_array_equal(got, want)
