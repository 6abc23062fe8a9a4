#!/usr/bin/env python3
"""hnswlib side of scripts/ann_compare.sh: builds hnswlib on the same .fvecs files and
prints one JSON object per ef, in the same shape as `steerfeed bench ann`."""
import json
import resource
import sys
import time

import hnswlib
import numpy as np


def read_vecs(path, dtype):
    raw = np.fromfile(path, dtype=np.int32)
    dim = raw[0]
    rows = raw.reshape(-1, dim + 1)[:, 1:]
    return rows.view(dtype) if dtype == np.float32 else rows


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def main():
    base_p, query_p, gt_p, k, m, efc, efs, build_threads = sys.argv[1:9]
    k, m, efc, build_threads = int(k), int(m), int(efc), int(build_threads)
    efs = [int(e) for e in efs.split(",")]
    base = np.ascontiguousarray(read_vecs(base_p, np.float32))
    queries = np.ascontiguousarray(read_vecs(query_p, np.float32))
    gt = read_vecs(gt_p, np.int32)[:, :k]
    n, dim = base.shape
    before = rss_bytes()
    index = hnswlib.Index(space="ip", dim=dim)
    index.init_index(max_elements=n, M=m, ef_construction=efc, random_seed=100)
    t0 = time.perf_counter()
    index.add_items(base, np.arange(n), num_threads=build_threads)
    build_s = time.perf_counter() - t0
    index_bytes = rss_bytes() - before
    for ef in efs:
        index.set_ef(ef)
        # One batch call on one thread: no Python overhead per query is counted.
        t0 = time.perf_counter()
        labels, _ = index.knn_query(queries, k=k, num_threads=1)
        secs = time.perf_counter() - t0
        hits = sum(len(set(l.tolist()) & set(g.tolist())) for l, g in zip(labels, gt))
        print(json.dumps({
            "lib": "hnswlib", "ef": ef, "allow": 1.0, "recall_at_k": hits / (k * len(queries)),
            "qps": len(queries) / secs, "mean_us": secs * 1e6 / len(queries), "build_s": build_s,
            "index_bytes": index_bytes, "n": n, "dim": dim, "k": k, "threads": 1,
        }), flush=True)


if __name__ == "__main__":
    main()
