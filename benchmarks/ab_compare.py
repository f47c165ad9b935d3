#!/usr/bin/env python3
"""Compare two sets of benchmark runs, A (before) and B (after), made
alternately on one machine (A B A B ...): each case's speedup over
nn.Conv2d is taken per run (t_torch / t_ours measured side by side, so
machine drift cancels), its median over the runs of each side, and the
after/before ratio of those medians; groups report the geomean of their
cases' ratios.

    python benchmarks/ab_compare.py 'DIR/before_*' 'DIR/after_*' > comparison.md

Each argument is a glob of result folders (each with a results.json, as
``python -m mobilenet_ext bench --out FOLDER`` writes them).
"""
from __future__ import annotations

import collections
import glob
import json
import math
import statistics
import sys
from typing import Dict, List


def load(pattern: str) -> List[Dict[str, dict]]:
    runs = []
    for p in sorted(glob.glob(pattern.rstrip("/") + "/results.json")):
        r = json.load(open(p))
        runs.append({row["id"]: row for row in r["layers"] + r["models"]})
    if not runs:
        raise SystemExit(f"no results.json under {pattern!r}")
    return runs


def main(before_glob: str, after_glob: str) -> None:
    b, a = load(before_glob), load(after_glob)
    keys = sorted(set.intersection(*[set(r) for r in b + a]))
    groups: Dict[str, List[float]] = collections.defaultdict(list)
    lines = []
    for k in keys:
        rb = [r[k]["speedup"] for r in b if r[k].get("speedup")]
        ra = [r[k]["speedup"] for r in a if r[k].get("speedup")]
        if not rb or not ra:
            continue
        mb, ma = statistics.median(rb), statistics.median(ra)
        groups[a[0][k]["group"]].append(ma / mb)
        lines.append(f"| {k} | {mb:.2f}x | {ma:.2f}x | {ma / mb:.3f} | "
                     f"{min(rb):.2f}-{max(rb):.2f} | {min(ra):.2f}-{max(ra):.2f} |")
    print(f"{len(b)} runs before, {len(a)} after; speedup = median over runs of t_torch / t_ours\n")
    print("| group | n | geomean of after/before |\n| --- | ---: | ---: |")
    for g, v in sorted(groups.items()):
        print(f"| {g} | {len(v)} | {math.exp(sum(map(math.log, v)) / len(v)):.3f} |")
    print("\n| case | speedup before | after | after/before | range before | range after |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    print("\n".join(lines))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
