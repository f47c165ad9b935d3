"""Rendering of a results dictionary: the terminal table, results.md, README's
headline table and its rewriting between the bench-table markers."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional

from .roofline import ladder_text

__all__ = ["render_table", "render_targets", "render_markdown", "render_readme", "README_BEGIN", "README_END",
           "update_readme"]

#: The markers in README.md between which ``--update-readme`` writes the table.
README_BEGIN, README_END = "<!-- bench-table:begin -->", "<!-- bench-table:end -->"


def _f(v: Optional[float], fmt: str = ".2f", none: str = "-") -> str:
    """``v`` formatted, ``none`` for None."""
    return none if v is None else format(v, fmt)


#: The other runtimes of the model rows: (results.json key, column name).
_RUNTIMES = (("ort", "ORT"), ("openvino", "OpenVINO"), ("inductor", "inductor"))


def _rt(r: Dict[str, Any], key: str, col: str, fmt: str = ".2f", na: str = "n/a") -> str:
    """Model row ``r``'s figure ``col`` of runtime ``key`` (e.g. ``ours_over_openvino``):
    the value, ``na`` when the runtime was asked for but is n/a (its note
    says why), "-" when the row does not time that runtime."""
    v = r.get(col)
    if v is not None:
        return format(v, fmt)
    return na if r.get(f"{key}_note") else "-"


def _notes(rows: List[Dict[str, Any]]) -> List[str]:
    """The distinct n/a notes of the model rows' runtimes, in order."""
    seen: List[str] = []
    for r in rows:
        for key, _ in _RUNTIMES:
            n = r.get(f"{key}_note")
            if n and n not in seen:
                seen.append(n)
    return seen


def _mem(v: Optional[int]) -> str:
    """Bytes as MiB with one decimal, "-" for None."""
    return "-" if v is None else f"{v / 2**20:.1f}"


def render_table(res: Dict[str, Any]) -> str:
    """The compact terminal table: one row per case, then the group geomeans and the targets."""
    lines: List[str] = []
    L = res["layers"]
    if L:
        w = max(len("layer case"), max(len(r["id"]) for r in L))
        head = (f"{'layer case':<{w}} {'ours ms':>9} {'torch ms':>9} {'speedup':>8} {'GB/s':>7} {'GFLOP/s':>8} "
                f"{'%roof':>6} {'torch%':>6} {'mem MiB o/t':>13}  models")
        lines += [head, "-" * len(head)]
        for r in L:
            if r.get("status") != "ok":
                lines.append(f"{r['id']:<{w}} FAILED: {r.get('error', '')}")
                continue
            mem = (f"{_mem(r.get('peak_mem_ours'))}/{_mem(r.get('peak_mem_torch'))}"
                   if "peak_mem_ours" in r else "")
            lines.append(f"{r['id']:<{w}} {r['ours_ms']:>9.3f} {r['torch_ms']:>9.3f} {r['speedup']:>7.2f}x "
                         f"{r['GBps']:>7.1f} {r['GFLOPs']:>8.1f} {r['pct_roofline']:>5.0f}% "
                         f"{r['torch_pct_roofline']:>5.0f}% {mem:>13}  {','.join(r['models'])}")
        lines.append("")
    M = res["models"]
    if M:
        w = max(len("model case"), max(len(r["id"]) for r in M))
        head = (f"{'model case':<{w}} {'ours ms':>9} {'torch ms':>9} {'speedup':>8} {'img/s':>8} "
                f"{'ORT ms':>8} {'ours/ORT':>9} {'torch/ORT':>9} {'OV ms':>8} {'ours/OV':>8} "
                f"{'ind. ms':>8} {'ours/ind':>8} {'mem MiB o/t':>13}")
        lines += [head, "-" * len(head)]
        for r in M:
            if r.get("status") != "ok":
                lines.append(f"{r['id']:<{w}} FAILED: {r.get('error', '')}")
                continue
            lines.append(f"{r['id']:<{w}} {r['ours_ms']:>9.2f} {r['torch_ms']:>9.2f} {r['speedup']:>7.2f}x "
                         f"{r['images_per_s']:>8.1f} {_rt(r, 'ort', 'ort_ms'):>8} "
                         f"{_rt(r, 'ort', 'ours_over_ort'):>9} {_rt(r, 'ort', 'ort_speedup_vs_torch'):>9} "
                         f"{_rt(r, 'openvino', 'openvino_ms'):>8} {_rt(r, 'openvino', 'ours_over_openvino'):>8} "
                         f"{_rt(r, 'inductor', 'inductor_ms'):>8} {_rt(r, 'inductor', 'ours_over_inductor'):>8} "
                         + (f"{_mem(r.get('peak_mem_ours'))}/{_mem(r.get('peak_mem_torch'))}"
                            if "peak_mem_ours" in r else "").rjust(13))
            for key, _ in _RUNTIMES:
                if r.get(f"{key}_note"):
                    lines.append(f"  note: {r[f'{key}_note']}")
        lines.append("")
    G = res["groups"]
    if G:
        w = max(len("group"), max(len(g["group"]) for g in G))
        head = f"{'group':<{w}} {'n':>4} {'geomean':>8} {'min':>7} {'max':>7} {'%roof':>6} {'torch%':>6}"
        lines += [head, "-" * len(head)]
        for g in G:
            lines.append(f"{g['group']:<{w}} {g['n']:>4} {g['geomean_speedup']:>7.2f}x {g['min_speedup']:>6.2f}x "
                         f"{g['max_speedup']:>6.2f}x {_f(g['geomean_pct_roofline'], '.0f'):>5}% "
                         f"{_f(g['torch_geomean_pct_roofline'], '.0f'):>5}%")
        lines.append("")
    lines.append(render_targets(res["targets"], markdown=False))
    return "\n".join(lines)


def render_targets(targets: List[Dict[str, Any]], markdown: bool) -> str:
    """The targets (results.json's ``targets``) as a terminal or markdown table."""

    def status(t: Dict[str, Any]) -> str:
        return "n/a" if t["ok"] is None else ("PASS" if t["ok"] else "MISS")

    def meas(t: Dict[str, Any]) -> str:
        return "not measured" if t["measured"] is None else f"{t['measured']:.2f}{t['unit']} (n={t['n']})"

    def issue(t: Dict[str, Any]) -> str:
        return f"#{t.get('issue', 4)}"

    if markdown:
        lines = ["| target | issue | goal | measured | |", "| --- | --- | --- | --- | --- |"]
        lines += [f"| {t['name']} | {issue(t)} | {t['target']} | {meas(t)} | {status(t)} |" for t in targets]
        return "\n".join(lines)
    w = max(len(t["name"]) for t in targets)
    lines = [f"{'target':<{w}}  {'issue':>5}  {'goal':>8}  {'measured':>18}", "-" * (w + 45)]
    lines += [f"{t['name']:<{w}}  {issue(t):>5}  {t['target']:>8}  {meas(t):>18}  {status(t)}" for t in targets]
    return "\n".join(lines)


def _md_header(res: Dict[str, Any]) -> List[str]:
    """Command, machine, versions and roofline lines of results.md and README's table."""
    m, roof = res["machine"], res["roofline"]
    gemm = ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in roof["gemm_GFLOPs"].items())
    return [
        f"Command: `{res['command']}`  ",
        f"Machine: {m.get('cpu_model')} ({m.get('logical_cpus')} logical CPUs; AVX-512: "
        f"{'yes' if m.get('avx512') else 'no'}; torch CPU capability {m.get('torch_cpu_capability')}; "
        f"mobilenet_ext ISA {m.get('mobilenet_ext_cpu_isa')})"
        + (f", GPU {m['gpu']['name']}" if m.get("gpu") else "") + "  ",
        f"torch {res['versions']['torch']}, onnxruntime {res['versions'].get('onnxruntime')}, "
        f"openvino {res['versions'].get('openvino')}, "
        f"threads {res['threads']}, load {res.get('loadavg_1min', {}).get('start')}, "
        f"commit {str(res['git'].get('commit'))[:12]}"
        f"{' (dirty)' if res['git'].get('dirty') else ''}, {res['created']}  ",
        f"Roofline: copy {roof['copy_GBps']:.1f} GB/s{ladder_text(roof)}, sgemm {gemm}"
        + (f", FMA peak {roof['fma_peak_GFLOPs']['f32']:.0f} GFLOP/s ({roof.get('fma_peak_isa')})"
           if roof.get("fma_peak_GFLOPs") else ""),
    ]


def render_markdown(res: Dict[str, Any]) -> str:
    """results.md: header, targets, group geomeans, models and every layer row."""
    out = [f"# mobilenet_ext benchmark: {res['label']}", ""] + _md_header(res) + [""]
    out += ["## Targets", "", render_targets(res["targets"], markdown=True), ""]
    out += ["## Geomean speedup per group", "", "| group | n | geomean | min | max | % roofline ours | torch |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for g in res["groups"]:
        out.append(f"| {g['group']} | {g['n']} | {g['geomean_speedup']:.2f}x | {g['min_speedup']:.2f}x | "
                   f"{g['max_speedup']:.2f}x | {_f(g['geomean_pct_roofline'], '.0f')}% | "
                   f"{_f(g['torch_geomean_pct_roofline'], '.0f')}% |")
    if res["models"]:
        out += ["", "## Models", "", "Other runtimes run the nn.Conv2d model: ONNX Runtime (ORT), OpenVINO (CPU, "
                "f32, latency hint) and torch.compile (inductor); `ours/X` is the median of per-round "
                "t_ours / t_X, `X vs torch` the median of t_torch / t_X.", "",
                "| case | ours ms | nn.Conv2d ms | speedup | img/s | ORT ms | ours/ORT | ORT vs torch | "
                "OpenVINO ms | ours/OpenVINO | OpenVINO vs torch | inductor ms | ours/inductor | inductor vs torch | "
                "peak MiB ours/torch |",
                "| --- |" + " ---: |" * 14]
        for r in res["models"]:
            if r.get("status") != "ok":
                out.append(f"| {r['id']} | FAILED: {r.get('error', '')} |" + " |" * 13)
                continue
            cells = []
            for key, _ in _RUNTIMES:
                note = r.get(f"{key}_note")
                if note:  # the runtime was asked for but is n/a: the column says why
                    cells += [note.replace("|", "/"), "", ""]
                else:
                    cells += [_f(r.get(f"{key}_ms")), _f(r.get(f"ours_over_{key}")),
                              _f(r.get(f"{key}_speedup_vs_torch"))]
            mem = (f"{_mem(r.get('peak_mem_ours'))}/{_mem(r.get('peak_mem_torch'))}"
                   if "peak_mem_ours" in r else "")
            out.append(f"| {r['id']} | {r['ours_ms']:.2f} | {r['torch_ms']:.2f} | {r['speedup']:.2f}x | "
                       f"{r['images_per_s']:.1f} | " + " | ".join(cells) + f" | {mem} |")
    if res["layers"]:
        out += ["", "## Layers", "", "| case | ours ms | nn.Conv2d ms | speedup | GB/s | GFLOP/s | % roofline | "
                "torch % roofline | peak MiB ours/torch | models |",
                "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
        for r in res["layers"]:
            if r.get("status") != "ok":
                out.append(f"| {r['id']} | FAILED: {r.get('error', '')} | | | | | | | | |")
                continue
            mem = f"{_mem(r.get('peak_mem_ours'))}/{_mem(r.get('peak_mem_torch'))}" if "peak_mem_ours" in r else ""
            out.append(f"| {r['id']} | {r['ours_ms']:.3f} | {r['torch_ms']:.3f} | {r['speedup']:.2f}x | "
                       f"{r['GBps']:.1f} | {r['GFLOPs']:.1f} | {r['pct_roofline']:.0f}% | "
                       f"{r['torch_pct_roofline']:.0f}% | {mem} | {', '.join(r['models'])} |")
    return "\n".join(out) + "\n"


def render_readme(res: Dict[str, Any]) -> str:
    """The README headline: command, machine, group geomeans (forward and
    fwd+bwd of the main groups), models and targets, as markdown."""
    out = _md_header(res) + ["", "| group | n | geomean speedup | min | % roofline (ours / nn.Conv2d) |",
                             "| --- | ---: | ---: | ---: | ---: |"]
    for g in res["groups"]:
        if g["group"].startswith("model"):
            continue
        out.append(f"| {g['group']} | {g['n']} | {g['geomean_speedup']:.2f}x | {g['min_speedup']:.2f}x | "
                   f"{_f(g['geomean_pct_roofline'], '.0f')}% / {_f(g['torch_geomean_pct_roofline'], '.0f')}% |")
    if res["models"]:
        out += ["", "| model case | ours ms | nn.Conv2d ms | speedup | ours/ORT | ours/OpenVINO | ours/inductor |",
                "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in res["models"]:
            if r.get("status") == "ok":
                out.append(f"| {r['id']} | {r['ours_ms']:.2f} | {r['torch_ms']:.2f} | {r['speedup']:.2f}x | "
                           + " | ".join(_rt(r, k, f"ours_over_{k}") for k, _ in _RUNTIMES) + " |")
        notes = _notes(res["models"])
        if notes:
            out += ["", "n/a: " + "; ".join(n[len("n/a: "):] if n.startswith("n/a: ") else n
                                            for n in notes).replace("|", "/")]
    out += ["", render_targets(res["targets"], markdown=True)]
    return "\n".join(out) + "\n"


def update_readme(readme: Path, table: str, source: Path) -> None:
    """Replace what lies between README's bench-table markers by ``table``."""
    text = readme.read_text()
    i, j = text.find(README_BEGIN), text.find(README_END)
    if i < 0 or j < i:
        raise ValueError(f"{readme} has no {README_BEGIN} ... {README_END} markers")
    note = f"<!-- rendered from {source} by: python -m mobilenet_ext bench --render-readme {source} --update-readme -->"
    readme.write_text(text[:i + len(README_BEGIN)] + "\n" + note + "\n" + table + text[j:])

