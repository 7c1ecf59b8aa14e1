"""MECAnywhere's KNN example, on offload, with numpy on the provider.

A MECAnywhere user offloads work with ``offload_task`` and a callback, then
``join``s. Here the work is a k-nearest-neighbours classifier written in
Python with numpy (knn/classifier.py), running in a real Python image built
from Debian's packages (``bash scripts/python-image.sh``, then ``offload image
push`` it: the image travels to the provider by CID).

The dataset is three Gaussian clusters (450 training points, 180 query
points, the same on every run); the queries go out as three tasks of 60
points each; every callback scores its batch against the truth. The script
exits non-zero unless the accuracy is at least 0.9.

    OFFLOAD_HOME=/tmp/B python3 examples/python/knn.py --image CID_OR_NAME
"""

import argparse
import asyncio
import json
import pathlib
import random
import sys

import offload

HERE = pathlib.Path(__file__).resolve().parent
CENTRES = {"red": (2.0, 2.0), "green": (6.0, 2.5), "blue": (4.0, 6.0)}


def dataset(seed: int = 7):
    rnd = random.Random(seed)
    train, query, truth = [], [], {}
    for label, (cx, cy) in CENTRES.items():
        for _ in range(150):
            train.append([round(rnd.gauss(cx, 0.9), 4), round(rnd.gauss(cy, 0.9), 4), label])
        for _ in range(60):
            qid = f"q{len(query):03d}"
            query.append([qid, round(rnd.gauss(cx, 0.9), 4), round(rnd.gauss(cy, 0.9), 4)])
            truth[qid] = label
    rnd.shuffle(query)
    return train, query, truth


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", required=True, help="the Python image: a CID (offload image push) or a name")
    ap.add_argument("-k", type=int, default=5)
    args = ap.parse_args()

    client = offload.AsyncClient()
    await client.initiate_connection(timeout=10)
    code = await client.add(HERE / "knn")  # the classifier, mounted at /inputs/code

    train, query, truth = dataset()
    print(f"dataset: {len(CENTRES)} clusters, {len(train)} training points, {len(query)} query points")
    scores = {}

    def callback(result):
        label = result["task_id"]
        if result["state"] != "completed":
            print(f"{label}: {result['state']}: {result.get('error')} {result.get('stderr', '')}")
            scores[label] = None
            return
        out = json.loads(result["stdout"])
        right = sum(truth[q] == lbl for q, lbl in out["labels"].items())
        scores[label] = (right, len(out["labels"]))
        print(f"{label}: {right}/{len(out['labels'])} right on {result['provider'][:16]}… (numpy {out['numpy']}) {out['counts']}")

    for i in range(3):
        batch = query[i * 60:(i + 1) * 60]
        await client.offload_task(f"knn-{i}", args.image, {"k": args.k, "train": train, "query": batch}, callback,
                                  resource={"cpu": 1, "memory": 256}, runtime="docker",
                                  command=["python3", "/inputs/code/classifier.py"],
                                  inputs=[(code, "/inputs/code")])
    await client.join(task_timeout=300, join_timeout=600)
    await client.disconnect()

    if len(scores) != 3 or any(s is None for s in scores.values()):
        print("not every batch completed")
        return 1
    right = sum(s[0] for s in scores.values())
    total = sum(s[1] for s in scores.values())
    accuracy = right / total
    print(f"accuracy {accuracy:.3f} on {total} query points")
    return 0 if accuracy >= 0.9 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
