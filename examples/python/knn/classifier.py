"""k-nearest neighbours in numpy: the workload of examples/python/knn.py.

It runs inside the Python image (scripts/python-image.sh) on a provider.
Its input is the task's data (offload puts it in $OFFLOAD_DATA, or in the
file named by $OFFLOAD_DATA_PATH when it is large): JSON
``{"k": 5, "train": [[x, y, label], ...], "query": [[id, x, y], ...]}``.
It prints one JSON line ``{"labels": {id: label}, "counts": {label: n}}``
and labels each query point with the majority label of its k nearest
training points (Euclidean; a tie goes to the nearer neighbours' label),
like the Go classifier of examples/knn.
"""

import json
import os
import sys

import numpy as np


def load() -> dict:
    path = os.environ.get("OFFLOAD_DATA_PATH")
    if path:
        with open(path) as f:
            return json.load(f)
    return json.loads(os.environ["OFFLOAD_DATA"])


def classify(train_x: np.ndarray, train_y: np.ndarray, query_x: np.ndarray, k: int) -> list:
    # All query-to-training squared distances at once: (q, t).
    d = ((query_x[:, None, :] - train_x[None, :, :]) ** 2).sum(axis=2)
    k = min(k, len(train_x))
    nearest = np.argsort(d, axis=1, kind="stable")[:, :k]
    out = []
    for row in train_y[nearest]:
        labels, counts = np.unique(row, return_counts=True)
        top = set(labels[counts == counts.max()])
        out.append(next(lbl for lbl in row if lbl in top))  # nearest among the tied
    return out


def main() -> int:
    task = load()
    k = int(task.get("k", 5))
    if k < 1:
        print("k must be at least 1", file=sys.stderr)
        return 2
    train = task["train"]
    query = task["query"]
    train_x = np.array([p[:-1] for p in train], dtype=np.float64)
    train_y = np.array([p[-1] for p in train])
    query_x = np.array([q[1:] for q in query], dtype=np.float64)
    if query_x.shape[1] != train_x.shape[1]:
        print(f"query points have {query_x.shape[1]} features, training points {train_x.shape[1]}", file=sys.stderr)
        return 2
    labels = classify(train_x, train_y, query_x, k)
    counts = {str(lbl): int(n) for lbl, n in zip(*np.unique(labels, return_counts=True))}
    print(json.dumps({"labels": {str(q[0]): str(lbl) for q, lbl in zip(query, labels)}, "counts": counts,
                      "numpy": np.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
