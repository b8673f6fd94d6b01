"""scikit-learn on the very features a `train-probe` (`mean-logistic`) node fitted.

Requirements (pip): scikit-learn==1.9.1 safetensors==0.8.0 numpy==2.4.6

    dag export 'acts_train[layer=15]' /tmp/p/train
    dag export 'acts_test[layer=15]' /tmp/p/test
    dag export 'probe[layer=15,probe=mean-logistic].probe' /tmp/p/probe
    python nodes/worker/benches/probe_sklearn.py /tmp/p/train /tmp/p/test /tmp/p/probe

Reads the stored activations (mean over real tokens, as the node does), fits
LogisticRegression(C, class_weight) with the node's settings, and prints its fit time and test
AUROC beside the node's (from the probe's metrics.json and config.json), and the largest
coefficient difference.
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score


def features(d, label):
    meta = json.loads((Path(d) / "meta.json").read_text())
    xs, ys = [], []
    for s in range(meta["shards"]):
        t = load_file(str(Path(d) / f"shard-{s:05d}.safetensors"))
        a, m = t["activations"].astype(np.float64), t["attention_mask"].astype(bool)
        xs.append((a * m[..., None]).sum(1) / m.sum(1, keepdims=True))
        ys += [int(json.loads(l)["columns"][label]) for l in open(Path(d) / f"shard-{s:05d}.jsonl")]
    return np.concatenate(xs), np.array(ys)


def main():
    train, test, probe = sys.argv[1:4]
    cfg = json.loads((Path(probe) / "config.json").read_text())
    ours = json.loads((Path(probe) / "metrics.json").read_text())
    p = cfg["params"]
    label = p.get("label_column", "label")
    xtr, ytr = features(train, label)
    xte, yte = features(test, label)
    cw = "balanced" if p.get("class_weight") == "balanced" else None
    start = time.perf_counter()
    m = LogisticRegression(C=cfg["fit"]["C"], class_weight=cw, max_iter=1000).fit(xtr, ytr)
    secs = time.perf_counter() - start
    auc = roc_auc_score(yte, m.decision_function(xte))
    w = load_file(str(Path(probe) / "weights.safetensors"))["coef"].astype(np.float64)
    print(f"scikit-learn: n={len(ytr)} d={xtr.shape[1]} C={cfg['fit']['C']}: fit {secs:.3f} s, {m.n_iter_[0]} iterations, test AUROC {auc:.4f}")
    print(f"dag train-probe: {cfg['fit']['n_iter']} iterations, test AUROC {ours['test']['auroc']:.4f} (its fit time is `fit_seconds` in `dag show`)")
    print(f"max |coef difference| {np.abs(w - m.coef_[0]).max():.2e}, |AUROC difference| {abs(auc - ours['test']['auroc']):.4f}")


if __name__ == "__main__":
    main()
