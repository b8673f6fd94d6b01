"""scikit-learn side of the logistic-regression probe benchmark.

Requires (pip): scikit-learn==1.9.1 numpy==2.4.6

Reads the features `examples/logistic_bench.rs` wrote and fits LogisticRegression with
the same split, C, tol and max_iter, printing lines shaped like the Rust example's.

    /tmp/ref-metrics/bin/python nodes/metrics/bench/logistic_sklearn.py OUT_DIR N D
"""

import sys
import time

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

out, n, d = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
X = np.fromfile(f"{out}/x.f32", dtype="<f4").reshape(n, d).astype(np.float64)
y = np.fromfile(f"{out}/y.u8", dtype=np.uint8).astype(int)
train = n * 3 // 4
for C in (0.01, 1.0):
    start = time.perf_counter()
    m = LogisticRegression(C=C, max_iter=1000).fit(X[:train], y[:train])
    secs = time.perf_counter() - start
    auc = roc_auc_score(y[train:], m.decision_function(X[train:]))
    print(f"scikit-learn n={train} d={d} C={C}: fit {secs:.3f} s, {m.n_iter_[0]} iterations, test AUROC {auc:.4f}")
