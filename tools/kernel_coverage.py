#!/usr/bin/env python3
"""Line coverage of the CPU kernels by the C++ kernel tests (ctest).

Usage: ``./dev ctest coverage`` (builds the kernels and tests with
``--coverage`` into build-coverage/, runs ctest, then this script), or
``python3 tools/kernel_coverage.py BUILD_DIR`` on such a build.

For every source under csrc/cpu/ it prints the share of executable lines the
tests ran and the line numbers they never reached, aggregated over all
translation units (a header line counts as run if any unit ran it). It exits
1 if a kernel source (csrc/cpu/<isa>/*.cpp) has an unreached line that is not
marked ``// coverage: unreachable`` on the same line — so "every specialised
path is reached by a test" is checked, not asserted by hand. A line marked
``// coverage: needs avx512f`` (a call into the AVX-512 kernels from the
AVX2 family) is not counted on a CPU without that flag; ``needs
avx512f+amd`` (a routing choice made on AMD CPUs with AVX-512 only) on a CPU
that lacks either.
"""
from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path


def gcov_lines(build: Path, root: Path) -> dict[str, dict[int, int]]:
    """{source path relative to root: {line: max execution count}}."""
    lines: dict[str, dict[int, int]] = defaultdict(dict)
    for gcda in sorted(build.rglob("*.gcda")):
        out = subprocess.run(
            ["gcov", "--json-format", "--stdout", "-o", str(gcda.parent), str(gcda)],
            capture_output=True, check=True, cwd=build,
        ).stdout
        for chunk in out.splitlines():
            if not chunk.strip():
                continue
            data = json.loads(chunk)
            for f in data.get("files", []):
                path = Path(f["file"])
                if not path.is_absolute():
                    path = (build / path).resolve()
                try:
                    rel = str(path.resolve().relative_to(root))
                except ValueError:
                    continue
                if not rel.startswith("csrc/"):
                    continue
                d = lines[rel]
                for ln in f["lines"]:
                    n = ln["line_number"]
                    d[n] = max(d.get(n, 0), ln["count"])
    return lines


def main(argv: list[str]) -> int:
    root = Path(__file__).resolve().parent.parent
    build = Path(argv[1] if len(argv) > 1 else root / "build-coverage").resolve()
    lines = gcov_lines(build, root)
    if not lines:
        print(f"no coverage data under {build}: build with --coverage and run ctest first")
        return 2
    # kernels for an ISA this CPU lacks cannot run here: reported, not failed
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        flags = set()
    if "AuthenticAMD" in flags:  # vendor_id, a word of its own
        flags.add("amd")
    cannot_run = {"csrc/cpu/avx512/": "avx512f" not in flags}

    def excused(line: str) -> bool:
        m = re.search(r"coverage: needs ([\w+]+)", line)
        return bool(m) and not all(f in flags for f in m.group(1).split("+"))
    bad = 0
    print(f"{'source':58} {'lines':>7} {'run':>7}  unreached lines")
    for rel in sorted(lines):
        d = lines[rel]
        missed = sorted(n for n, c in d.items() if c == 0)
        src = (root / rel).read_text().splitlines()
        missed = [n for n in missed if "coverage: unreachable" not in src[n - 1] and not excused(src[n - 1])]
        pct = 100.0 * (len(d) - len(missed)) / max(1, len(d))
        shown = ",".join(map(str, missed[:20])) + (" ..." if len(missed) > 20 else "")
        print(f"{rel:58} {len(d):7d} {pct:6.1f}%  {shown}")
        is_kernel = rel.startswith("csrc/cpu/") and rel.endswith(".cpp") and "/" in rel[len("csrc/cpu/"):]
        skipped = any(rel.startswith(d) and no for d, no in cannot_run.items())
        if skipped:
            print(f"{'':58} (this CPU lacks the ISA: not counted)")
        elif is_kernel and missed:
            bad += 1
    if bad:
        print(f"{bad} kernel source(s) with lines no test reaches")
        return 1
    print("every line of every kernel source is reached by the kernel tests")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
