"""speedup.png and roofline.png (matplotlib, imported only when plotting)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

from .common import DIRECTIONS

__all__ = ["write_plots"]


def write_plots(res: Dict[str, Any], out_dir: Path) -> List[str]:
    """speedup.png (speedup per layer shape) and roofline.png (% of roofline
    per layer shape, ours vs nn.Conv2d) for each op x direction panel, in
    ``out_dir``; returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    rows = [r for r in res["layers"] if r.get("status") == "ok"]
    panels = sorted({(r["op"], r["direction"]) for r in rows},
                    key=lambda t: (t[0], DIRECTIONS.index(t[1])))
    written: List[str] = []
    series = sorted({(r["layout"], r["batch"], r["dtype"]) for r in rows})
    markers = "os^vD<>ph*"
    for fname, key, tkey, ylabel, logy in (("speedup.png", "speedup", None, "speedup vs nn.Conv2d (x)", True),
                                           ("roofline.png", "pct_roofline", "torch_pct_roofline",
                                            "% of measured roofline", False)):
        n = max(1, len(panels))
        fig, axes = plt.subplots(n, 1, figsize=(max(8, 0.22 * max((len({r['shape'] for r in rows if (r['op'], r['direction']) == p}) for p in panels), default=10) + 3), 3.2 * n),
                                 squeeze=False)
        for ax, (op, d) in zip(axes[:, 0], panels):
            pr = [r for r in rows if r["op"] == op and r["direction"] == d]
            shapes = sorted({r["shape"] for r in pr}, key=lambda s: [r["shape"] for r in rows].index(s))
            xi = {s: i for i, s in enumerate(shapes)}
            for j, (lay, b, dt) in enumerate(series):
                sr = [r for r in pr if (r["layout"], r["batch"], r["dtype"]) == (lay, b, dt)]
                if not sr:
                    continue
                lbl = f"{lay} b{b}" + (f" {dt}" if len({s[2] for s in series}) > 1 else "")
                color = f"C{j % 10}"  # the same series keeps its colour and marker in every panel
                ax.plot([xi[r["shape"]] for r in sr], [r[key] for r in sr], markers[j % len(markers)],
                        color=color, label=f"ours {lbl}" if tkey else lbl, alpha=0.8)
                if tkey:
                    ax.plot([xi[r["shape"]] for r in sr], [r[tkey] for r in sr], markers[j % len(markers)],
                            mfc="none", color=color, label=f"nn.Conv2d {lbl}", alpha=0.8)
            if logy:
                ax.set_yscale("log")
                ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
                ax.yaxis.set_major_formatter(FormatStrFormatter("%gx"))
                ax.yaxis.set_minor_formatter(NullFormatter())
                ax.axhline(1.0, color="k", lw=0.8)
            else:
                ax.axhline(100.0, color="k", lw=0.8)
            ax.set_xticks(range(len(shapes)))
            ax.set_xticklabels(shapes, rotation=60, ha="right", fontsize=6)
            ax.set_title(f"{op} {d}", fontsize=9)
            ax.set_ylabel(ylabel, fontsize=8)
            ax.grid(True, axis="y", alpha=0.3)
            ax.legend(fontsize=6, ncol=4)
        if not panels:
            axes[0, 0].text(0.5, 0.5, "no layer cases in this run", ha="center")
        fig.suptitle(f"mobilenet_ext {res['label']}: {ylabel}", fontsize=10)
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.3 / (3.2 * n)))
        path = out_dir / fname
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(str(path))
    return written

