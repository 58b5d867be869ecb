"""Pictures and reports of a comparison: pass@k per stage, verdict mix, reward per cycle.

Writes PNGs (matplotlib, Agg backend), ``compare.json``, ``report.md`` (links the PNGs) and a
self-contained ``report.html`` (PNGs embedded as data URIs) into one folder.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Mapping, Sequence

from halo_ray.verifiers.verdicts import JUDGED, VERDICTS
from halo_ray.io import atomic_write, write_json

VERDICT_COLOURS = dict(zip(VERDICTS, ("#2ca02c", "#ff7f0e", "#d62728", "#9467bd", "#7f7f7f", "#bcbd22", "#17becf")))


def shown_verdicts(stages: Sequence[Mapping]) -> list[str]:
    """The verdicts a report shows: the judge's five always, the others (UNTESTED, FAILED, unknown ones
    from older files) only where some stage has them, so tables do not grow columns of zeros."""
    counts = [s["verdicts"] for s in stages]
    extra = sorted({v for c in counts for v in c} - set(VERDICTS))
    return [v for v in (*VERDICTS, *extra) if v in JUDGED or any(c.get(v) for c in counts)]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def plot_pass_at_k(stages: Sequence[Mapping], path: Path) -> Path:
    """Grouped bars: pass@k of each stage, one group per k, with 95% confidence bars over problems and n."""
    plt = _pyplot()
    ks = list(stages[0]["pass_at_k"])
    fig, ax = plt.subplots(figsize=(1.5 + 1.2 * len(ks) * len(stages) ** 0.5, 3.6))
    width = 0.8 / len(stages)
    for i, stage in enumerate(stages):
        xs = [j + (i - (len(stages) - 1) / 2) * width for j in range(len(ks))]
        values = [stage["pass_at_k"].get(k, 0.0) for k in ks]
        cis = [(stage.get("pass_at_k_ci") or {}).get(k) for k in ks]
        err = [[v - ci[0] if ci else 0.0 for v, ci in zip(values, cis)],
               [ci[1] - v if ci else 0.0 for v, ci in zip(values, cis)]]
        ax.bar(xs, values, width, yerr=err, capsize=3, label=f"{stage['name']} (n={stage['problems']})")
    ax.set_xticks(range(len(ks)), [f"pass@{k}" for k in ks])
    ax.set_ylim(0, 1)
    ax.set_ylabel("mean over problems (95% CI)")
    subsets = sorted({str(s.get("subset", "?")) for s in stages})
    ax.set_title(f"pass@k per stage on {', '.join(subsets)}", fontsize="medium")
    ax.legend(fontsize="small")
    return _save(fig, path)


def plot_verdicts(stages: Sequence[Mapping], path: Path) -> Path:
    """Stacked bars: the fraction of samples with each verdict, one bar per stage."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.8 + 1.1 * len(stages), 3.6))
    names = [s["name"] for s in stages]
    bottom = [0.0] * len(stages)
    for verdict in shown_verdicts(stages):
        share = [s["verdicts"].get(verdict, 0) / max(sum(s["verdicts"].values()), 1) for s in stages]
        ax.bar(names, share, 0.6, bottom=bottom, label=verdict, color=VERDICT_COLOURS.get(verdict))
        bottom = [b + x for b, x in zip(bottom, share)]
    ax.set_ylim(0, 1)
    ax.set_ylabel("fraction of samples")
    ax.set_title("verdict mix per stage")
    ax.legend(fontsize="small", bbox_to_anchor=(1.02, 1), loc="upper left")
    return _save(fig, path)


def plot_rewards(curves: Mapping[str, Sequence[tuple[int, float]]], path: Path) -> Path:
    """One line per run: mean reward per cycle (whole-number cycles, the y axis from 0)."""
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for name, points in curves.items():
        ax.plot([c for c, _ in points], [r for _, r in points], marker="o", label=name)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    top = max([r for points in curves.values() for _, r in points] + [1.0])
    ax.set_ylim(0, top * 1.05)
    ax.set_xlabel("cycle")
    ax.set_ylabel("mean reward")
    ax.set_title("reward per cycle")
    ax.legend(fontsize="small")
    return _save(fig, path)


def plot_stage_curve(stages: Sequence[Mapping], path: Path, title: str = "held-out pass@1 per stage") -> Path:
    """pass@1 of successive stages of one run (SFT, then each RAFT cycle) as a line with values.

    A stage may carry ``problems`` (n, shown in the title) and ``pass_at_1_ci`` ([low, high], drawn as a bar).
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.8 + 1.0 * len(stages), 3.6))
    names = [s["name"] for s in stages]
    values = [s["pass_at_1"] for s in stages]
    cis = [s.get("pass_at_1_ci") for s in stages]  # [low, high] when the stage carries it
    err = [[v - ci[0] if ci else 0.0 for v, ci in zip(values, cis)], [ci[1] - v if ci else 0.0 for v, ci in zip(values, cis)]]
    ax.errorbar(range(len(stages)), values, yerr=err if any(cis) else None, marker="o", capsize=3)
    ns = {s.get("problems") for s in stages} - {None}
    if ns:
        title = f"{title} (n={', '.join(map(str, sorted(ns)))} problems)"
    for i, v in enumerate(values):
        ax.annotate(f"{v:.3f}", (i, v), textcoords="offset points", xytext=(0, 7), ha="center", fontsize="small")
    ax.set_xticks(range(len(stages)), names, rotation=20)
    ax.set_ylim(0, 1)
    ax.set_ylabel("pass@1")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-3 and value != 0 else f"{value:.{digits}f}"
    return str(value)


def test_rows(comparison: Mapping) -> tuple[list[str], list[list[str]]]:
    """The significance table as header + rows of strings (shared by the terminal, Markdown and HTML)."""
    header = ["stage vs baseline", "k", "n", "baseline", "stage", "diff", "95% CI", "t", "p (t)", "p (Wilcoxon)", "note"]
    rows = []
    for t in comparison["tests"]:
        ci = f"[{_fmt(t['ci_low'])}, {_fmt(t['ci_high'])}]" if t["ci_low"] is not None else "–"
        note = t["note"]
        if t["only_baseline"] or t["only_stage"]:
            note = (note + "; " if note else "") + (f"unpaired: {t['only_baseline']} only in baseline, "
                                                    f"{t['only_stage']} only in stage")
        rows.append([f"{t['stage']} vs {t['baseline']}", f"pass@{t['k']}", str(t["n"]), _fmt(t["mean_baseline"]),
                     _fmt(t["mean_candidate"]), _fmt(t["mean_diff"]), ci, _fmt(t["t"]), _fmt(t["p_t"]),
                     _fmt(t["p_wilcoxon"]), note])
    return header, rows


def stage_rows(comparison: Mapping) -> tuple[list[str], list[list[str]]]:
    ks = list(comparison["stages"][0]["pass_at_k"])
    verdicts = shown_verdicts(comparison["stages"])
    header = ["stage", "model", "subset", "problems", "samples", *[f"pass@{k}" for k in ks], "compile rate", *verdicts]
    rows = [[s["name"], str(s["model"]), str(s.get("subset", "?")), str(s["problems"]), str(s["samples"]),
             *[_fmt(s["pass_at_k"].get(k)) for k in ks], _fmt(s["compile_rate"]),
             *[str(s["verdicts"].get(v, 0)) for v in verdicts]] for s in comparison["stages"]]
    return header, rows


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_report(comparison: Mapping, out_dir: str | Path,
                 curves: Mapping[str, Sequence[tuple[int, float]]] | None = None) -> dict[str, Path]:
    """Write the pictures, ``compare.json``, ``report.md`` and ``report.html`` into ``out_dir``.

    Args:
        comparison: the output of ``compare_results``.
        out_dir: folder to write (created).
        curves: reward per cycle by run name (``reward_curves``), optional.
    Returns:
        The written files by kind: ``pass_at_k``, ``verdicts``, ``rewards`` (when curves), ``json``,
        ``markdown``, ``html``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"pass_at_k": plot_pass_at_k(comparison["stages"], out / "pass_at_k.png"),
             "verdicts": plot_verdicts(comparison["stages"], out / "verdicts.png")}
    if curves:
        files["rewards"] = plot_rewards(curves, out / "rewards.png")
    files["json"] = out / "compare.json"
    write_json(files["json"], {**comparison, "reward_curves": dict(curves or {})})
    titles = {"pass_at_k": "pass@k per stage", "verdicts": "verdict mix per stage", "rewards": "reward per cycle"}
    pictures = [(titles[kind], path) for kind, path in files.items() if kind in titles]
    stage_table, test_table = stage_rows(comparison), test_rows(comparison)
    intro = ("Paired tests over problems: each stage against the first (baseline), per k; "
             "t from scipy.stats.ttest_rel, Wilcoxon signed-rank from scipy.stats.wilcoxon.")
    md = ["# Benchmark comparison", "", "## Stages", "", _markdown_table(*stage_table), "",
          "## Significance", "", intro, "", _markdown_table(*test_table), ""]
    md += [f"## {title}\n\n![{title}]({path.name})\n" for title, path in pictures]
    files["markdown"] = out / "report.md"
    with atomic_write(files["markdown"]) as fh:
        fh.write("\n".join(md))
    images = "".join(
        f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' "
        f"src='data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}'>" for title, path in pictures)
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>Benchmark comparison</title><style>"
            "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}</style></head><body>"
            f"<h1>Benchmark comparison</h1><h2>Stages</h2>{_html_table(*stage_table)}"
            f"<h2>Significance</h2><p>{html.escape(intro)}</p>{_html_table(*test_table)}{images}</body></html>")
    files["html"] = out / "report.html"
    with atomic_write(files["html"]) as fh:
        fh.write(page)
    return files
