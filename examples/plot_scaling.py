"""
Scaling out: ``n_jobs`` and a dask cluster
==========================================

Segmenters process images independently, so their ``predict`` runs one image per
joblib task. ``n_jobs`` spreads the tasks over local processes; joblib's dask
backend sends the very same tasks to a `dask.distributed` cluster. Here both run on
this machine and give the same labels as a single process. See :ref:`scaling` in the user guide.
"""

# %%
# Features, computed once in this process
# ---------------------------------------
import time

import numpy as np
from distributed import Client, LocalCluster
from joblib import parallel_config

from sklearn_useg import CLASPSegmenter, DinoFeatures
from sklearn_useg.datasets import load_bsds500

data = load_bsds500("val", n_images=6)
features = DinoFeatures(resize=224).transform(data.images)


def timed_predict(segmenter, backend=None):
    start = time.perf_counter()
    if backend is None:
        labels = segmenter.predict(features)
    else:
        with parallel_config(backend=backend):
            labels = segmenter.predict(features)
    return labels, time.perf_counter() - start


# %%
# One process, then two local processes
# -------------------------------------
segmenter = CLASPSegmenter(random_state=0).fit(features)
serial, t_serial = timed_predict(segmenter)
parallel, t_parallel = timed_predict(segmenter.set_params(n_jobs=2))
print(f"n_jobs=1: {t_serial:.2f} s, n_jobs=2: {t_parallel:.2f} s "
      "(the first parallel call also starts the worker processes)")

# %%
# A dask cluster
# --------------
# A local cluster of two in-process workers stands in for a real one; with a real
# cluster, pass its scheduler address to ``Client`` instead. (Worker *processes*,
# ``LocalCluster(processes=True)``, need the ``if __name__ == "__main__":`` guard in
# a script, as any multiprocessing code does.)
with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                  dashboard_address=None) as cluster, Client(cluster):
    on_dask, t_dask = timed_predict(segmenter.set_params(n_jobs=None), backend="dask")
print(f"dask, 2 workers: {t_dask:.2f} s")

same = all(np.array_equal(a, b) and np.array_equal(a, c)
           for a, b, c in zip(serial, parallel, on_dask))
print("identical labels everywhere:", same)
