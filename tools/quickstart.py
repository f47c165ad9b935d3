#!/usr/bin/env python3
"""Prints README's Quickstart commands, one per line, exactly as written
(the lines of the fenced block between the quickstart markers, without their
trailing comments). .ci/run runs each of them in a clean environment, so the
front door that README shows is the one CI tests.

    python3 tools/quickstart.py [README.md]
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import List


def commands(readme: str) -> List[str]:
    m = re.search(r"<!-- quickstart:begin.*?-->\n```bash\n(.*?)```\n<!-- quickstart:end -->", readme, re.S)
    if not m:
        raise SystemExit("README.md: no ```bash block between <!-- quickstart:begin --> and <!-- quickstart:end -->")
    out = []
    for line in m.group(1).splitlines():
        cmd = re.sub(r"\s+#.*$", "", line).strip()
        if cmd and not cmd.startswith("#"):
            out.append(cmd)
    if not out:
        raise SystemExit("README.md: the quickstart block holds no command")
    return out


if __name__ == "__main__":
    path = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "README.md")
    print("\n".join(commands(path.read_text())))
