"""The bench report's PNG charts (matplotlib, no display needed): each function saves one and returns its file name."""

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from report_analysis import SERVERS, med


def bar_with_range(ax: plt.Axes, x: float, values: list[float], width: float, label: str | None, color: str) -> None:
    m = med(values)
    ax.bar(x, m, width, label=label, color=color, yerr=[[m - min(values)], [max(values) - m]], capsize=3)


def save(fig: plt.Figure, out_dir: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(out_dir / name, dpi=110)
    plt.close(fig)
    return name


def chart_proxy_tax(tax: dict, out_dir: Path) -> str:
    fig, ax = plt.subplots(figsize=(8, 3.8))
    for i, t in enumerate(tax.values()):
        for j, how in enumerate(("direct", "nginx")):
            values = [r["rps"] for r in t[f"{how}_runs"]]
            bar_with_range(ax, i + (j - 0.5) * 0.38, values, 0.36, how if i == 0 else None, ("#888", "#2a7")[j])
        ax.text(i, t["nginx"] * 1.04, f"x{t['ratio']:.2f}", ha="center")
    ax.set_xticks(range(len(tax)), [name.replace(", ", ",\n").replace(": ", ":\n") for name in tax], fontsize=8)
    ax.set_ylabel("req/s (median, range)")
    ax.set_title("Django /plaintext: direct vs through nginx")
    ax.legend()
    return save(fig, out_dir, "proxy_tax.png")


def chart_servers(grouped: dict, endpoints: list[str], out_dir: Path) -> str:
    fig, ax = plt.subplots(figsize=(8, 3.8))
    for i, endpoint in enumerate(endpoints):
        for j, server in enumerate(SERVERS):
            values = [r["rps"] for r in grouped.get(f"{server} {endpoint}", [])]
            if values:
                bar_with_range(ax, i + (j - 0.5) * 0.38, values, 0.36, server if i == 0 else None, ("#37a", "#c73")[j])
    ax.set_xticks(range(len(endpoints)), endpoints)
    ax.set_ylabel("req/s through nginx")
    ax.set_title("gunicorn vs uWSGI (median, range)")
    ax.legend()
    return save(fig, out_dir, "servers.png")


def chart_peers(grouped: dict, stacks: list[str], endpoints: list[str], out_dir: Path) -> str:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    colors = ["#2a7", "#3a8", "#999", "#aaa", "#bbb"]
    width = 0.8 / max(1, len(stacks))
    for i, endpoint in enumerate(endpoints):
        for j, stack in enumerate(stacks):
            rs = grouped.get(f"{stack} {endpoint}", [])
            if not rs:
                continue
            x = i + (j - (len(stacks) - 1) / 2) * width
            bar_with_range(axes[0], x, [r["rps"] for r in rs], width, stack if i == 0 else None, colors[j % 5])
            axes[1].bar(x, med(r["p99_ms"] for r in rs), width, color=colors[j % 5])
    for ax, title in zip(axes, ("req/s (median, range)", "p99 ms (median)"), strict=True):
        ax.set_xticks(range(len(endpoints)), endpoints)
        ax.set_title(title)
    axes[0].legend(fontsize=7)
    return save(fig, out_dir, "peers.png")


def chart_ceilings(figures: list[tuple[str, float]], out_dir: Path) -> str:
    fig, ax = plt.subplots(figsize=(8, 3.8))
    ax.barh([label for label, _ in figures], [value for _, value in figures], color="#37a")
    ax.set_xscale("log")
    ax.set_xlabel("req/s (median, log scale)")
    ax.set_title("Ceilings: nginx alone, WSGI hello-world, Django")
    return save(fig, out_dir, "ceilings.png")


def chart_ttfb(deltas: dict, out_dir: Path) -> str:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for i, d in enumerate(deltas.values()):
        ax.bar(i - 0.19, d["direct"]["p50"], 0.36, color="#888", label="direct" if i == 0 else None)
        ax.bar(i + 0.19, d["nginx"]["p50"], 0.36, color="#2a7", label="nginx" if i == 0 else None)
    ax.set_xticks(range(len(deltas)), list(deltas))
    ax.set_ylabel("ms to first body byte (p50)")
    ax.set_title("Streaming: time to first byte")
    ax.legend()
    return save(fig, out_dir, "ttfb.png")


def chart_sweep(result: dict, out_dir: Path) -> str:
    fig, axes = plt.subplots(1, max(1, len(result)), figsize=(5 * max(1, len(result)), 3.6), squeeze=False)
    for ax, (server, s) in zip(axes[0], result.items(), strict=True):
        workers = sorted({p[0] for p in s["scores"]})
        threads = sorted({p[1] for p in s["scores"]})
        grid = [[s["scores"].get((w, t), math.nan) for t in threads] for w in workers]
        ax.imshow(grid, cmap="Greens", aspect="auto")
        for wi, row in enumerate(grid):
            for ti, value in enumerate(row):
                if not math.isnan(value):
                    ax.text(ti, wi, f"{value:,.0f}", ha="center", va="center", fontsize=8)
        ax.set_xticks(range(len(threads)), [f"{t} thr" for t in threads])
        ax.set_yticks(range(len(workers)), [f"{w} wrk" for w in workers])
        ax.set_title(f"{server}: req/s, mixed endpoints")
    return save(fig, out_dir, "sweep.png")
