"""The report's and the comparison's figures, drawn with matplotlib's object-oriented API.

Each function draws one figure from numbers computed elsewhere and writes it as a PNG;
nothing here decides what the numbers are, so the tests check the numbers, not the pixels.

Figures are ``matplotlib.figure.Figure`` objects printed by their own Agg canvas, never pyplot's:
reports are also written from notebooks, whose backend (inline, widget) and open figures belong
to the user. No backend is selected or changed and nothing is registered with pyplot, so a
notebook's plots go on showing as before and no figure is left open.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bohb_runner.analysis.curves import Step
from bohb_runner.analysis.hyperparameters import BudgetCorrelation, PairGrid
from bohb_runner.analysis.sources import Hyperparameter, finite
from bohb_runner.store.journal import Evaluation

DPI = 100
OPTIMIZER_COLOURS = {"randomsearch": "#7f7f7f", "hyperband": "#1f77b4", "bohb": "#d62728", "grid": "#2ca02c"}


def _figure(figsize: tuple[float, float]) -> Figure:
    """A figure on its own Agg canvas (see the module docstring), with constrained layout."""
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI)
    return path


def _budget_colours(budgets: Sequence[float]) -> dict[float, Any]:
    ordered = sorted(set(budgets))
    cmap = matplotlib.colormaps["viridis"]
    if len(ordered) == 1:
        return {ordered[0]: cmap(0.35)}
    return {b: cmap(0.9 * i / (len(ordered) - 1)) for i, b in enumerate(ordered)}


def _repeat_error_bars(ax: Any, points: list[tuple[float, float, float | None]], colour: Any, **style: Any) -> None:
    """Error bars (the spread over ``--repeats``) for the (x, loss, std) points that have a std."""
    with_std = [p for p in points if p[2] is not None]
    if with_std:
        xs, losses, stds = zip(*with_std, strict=True)
        ax.errorbar(xs, losses, yerr=stds, fmt="none", ecolor=colour, **style)


def _budget_legend(ax: Any, colours: dict[float, Any]) -> None:
    for budget, colour in colours.items():
        ax.scatter([], [], color=colour, s=18, label=f"budget {budget:.4g}")
    ax.legend(fontsize=8, loc="best", framealpha=0.8)


def loss_std(evaluation: Evaluation) -> float | None:
    """The spread of repeated trainings (``--repeats``), where the worker reported one."""
    info = evaluation.info if isinstance(evaluation.info, dict) else {}
    value = info.get("loss_std")
    return float(value) if finite(value) else None


def _step_xy(steps: Sequence[Step], end: float | None) -> tuple[list[float], list[float]]:
    xs, ys = [s.x for s in steps], [s.loss for s in steps]
    if steps and end is not None and end > xs[-1]:
        xs.append(end)
        ys.append(ys[-1])
    return xs, ys


# -- comparison -------------------------------------------------------------------------------


def anytime_figure(
    curves: Sequence[tuple[str, Any, list[list[Step]]]],
    xlabel: str,
    title: str,
    path: Path,
    limit: float | None,
    end: float | None = None,
) -> Path:
    """Median incumbent error across seeds with the 25-75 % band, one colour per optimizer;
    each seed's own curve faintly behind it."""
    fig = _figure((7.5, 4.5))
    ax = fig.subplots()
    for index, (optimizer, curve, runs) in enumerate(curves):
        colour = OPTIMIZER_COLOURS.get(optimizer, f"C{index + 4}")
        for steps in runs:
            xs, ys = _step_xy(steps, limit if limit is not None else end)
            ax.step(xs, ys, where="post", color=colour, alpha=0.18, linewidth=0.8)
        keep = ~np.isnan(curve.median)
        if not keep.any():
            continue
        x, median, lower, upper = curve.x[keep], curve.median[keep], curve.lower[keep], curve.upper[keep]
        ax.fill_between(x, lower, upper, step="post", color=colour, alpha=0.2, linewidth=0)
        ax.step(x, median, where="post", color=colour, linewidth=2, label=f"{optimizer} (median of {curve.seeds})")
    if limit is not None:
        ax.axvline(limit, color="black", linestyle=":", linewidth=1)
    losses = [s.loss for _, _, runs in curves for steps in runs for s in steps]
    if losses and min(losses) > 0 and max(losses) / min(losses) > 20:
        ax.set_yscale("log")  # early diverged runs near 0.9 and final errors near 0.01 both stay readable
    ax.set_xlabel(xlabel)
    ax.set_ylabel("incumbent validation error")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    return _save(fig, path)


# -- one study --------------------------------------------------------------------------------


def trajectory_figure(
    budget_steps: list[Step], time_steps: list[Step], path: Path, budget_end: float, time_end: float
) -> Path:
    fig = _figure((11, 4))
    axes = fig.subplots(1, 2)
    for ax, steps, end, label in (
        (axes[0], budget_steps, budget_end, "epochs consumed"),
        (axes[1], time_steps, time_end, "wall-clock seconds"),
    ):
        xs, ys = _step_xy(steps, end)
        ax.step(xs, ys, where="post", color="#d62728", linewidth=2)
        ax.scatter([s.x for s in steps], [s.loss for s in steps], color="#d62728", s=16, zorder=3)
        for s in steps:
            std = loss_std(s.evaluation)
            if std is not None:
                ax.errorbar(s.x, s.loss, yerr=std, color="#d62728", capsize=3, linewidth=1)
        ax.set_xlabel(label)
        ax.set_ylabel("incumbent validation error")
        ax.grid(alpha=0.3)
    axes[0].set_title("incumbent trajectory (budget)")
    axes[1].set_title("incumbent trajectory (time)")
    return _save(fig, path)


def evaluations_over_time_figure(evaluations: list[Evaluation], times: list[float], path: Path) -> Path:
    fig = _figure((9, 4.5))
    ax = fig.subplots()
    ok = [(e, t) for e, t in zip(evaluations, times, strict=True) if e.ok]
    colours = _budget_colours([e.budget for e, _ in ok])
    for budget, colour in colours.items():
        points = [(t, e.loss, loss_std(e)) for e, t in ok if e.budget == budget]
        ax.scatter([p[0] for p in points], [p[1] for p in points], color=colour, s=18, alpha=0.85)
        _repeat_error_bars(ax, points, colour, alpha=0.6, capsize=2)
    failed = [t for e, t in zip(evaluations, times, strict=True) if not e.ok]
    if failed:
        top = max((e.loss for e, _ in ok), default=1.0)
        ax.scatter(failed, [top] * len(failed), marker="x", color="black", s=20, label="failed")
    _budget_legend(ax, colours)
    ax.set_xlabel("wall-clock seconds (finished)")
    ax.set_ylabel("validation error")
    ax.set_title(f"all {len(evaluations)} evaluations, coloured by budget")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _jitter(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.18, 0.18, n)


def effects_figure(hyperparameters: list[Hyperparameter], evaluations: list[Evaluation], path: Path) -> Path:
    """Loss against each hyperparameter, all budgets, coloured by budget."""
    count = max(1, len(hyperparameters))
    columns = min(3, count)
    rows = math.ceil(count / columns)
    fig = _figure((4.2 * columns, 3.3 * rows))
    axes = fig.subplots(rows, columns, squeeze=False)
    ok = [e for e in evaluations if e.ok]
    colours = _budget_colours([e.budget for e in ok]) if ok else {}
    for ax, hp in zip(axes.flat, hyperparameters, strict=False):
        active = [e for e in ok if hp.name in (e.config or {})]
        if hp.numeric:
            for budget, colour in colours.items():
                points = [e for e in active if e.budget == budget and finite(e.config[hp.name])]
                xs = [float(e.config[hp.name]) for e in points]
                ax.scatter(xs, [e.loss for e in points], color=colour, s=14, alpha=0.8)
                _repeat_error_bars(
                    ax, [(x, e.loss, loss_std(e)) for x, e in zip(xs, points, strict=True)], colour, alpha=0.5
                )
            if hp.log and all(float(e.config[hp.name]) > 0 for e in active if finite(e.config[hp.name])) and active:
                ax.set_xscale("log")
        else:
            labels = [str(c) for c in hp.choices] or sorted({str(e.config[hp.name]) for e in active})
            labels += sorted({str(e.config[hp.name]) for e in active} - set(labels))
            for budget, colour in colours.items():
                points = [e for e in active if e.budget == budget]
                xs = np.array([labels.index(str(e.config[hp.name])) for e in points], dtype=float) + _jitter(
                    len(points)
                )
                ax.scatter(xs, [e.loss for e in points], color=colour, s=14, alpha=0.8)
            ax.set_xticks(range(len(labels)))
            ax.set_xticklabels(labels)
        ax.set_title(hp.name + ("" if len(active) == len(ok) else f" (active in {len(active)})"), fontsize=10)
        ax.set_ylabel("validation error", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(hyperparameters) :]:
        ax.axis("off")
    if colours:
        _budget_legend(axes.flat[0], colours)
    fig.suptitle("loss against each hyperparameter (all budgets)")
    return _save(fig, path)


def pair_heatmaps_figure(grids: list[PairGrid], budget: float | None, path: Path) -> Path:
    count = max(1, len(grids))
    fig = _figure((5.2 * count, 4.4))
    axes = fig.subplots(1, count, squeeze=False)
    for ax, grid in zip(axes.flat, grids, strict=False):
        image = ax.imshow(grid.mean, origin="lower", cmap="viridis_r", aspect="auto")
        for (i, j), n in np.ndenumerate(grid.count):
            if n:
                ax.text(
                    j,
                    i,
                    f"{grid.mean[i, j]:.3f}\nn={int(n)}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    bbox={"facecolor": "white", "alpha": 0.7, "edgecolor": "none", "pad": 1},
                )
        ax.set_xticks(range(len(grid.x.labels)))
        ax.set_xticklabels(grid.x.labels, rotation=30, ha="right", fontsize=7)
        ax.set_yticks(range(len(grid.y.labels)))
        ax.set_yticklabels(grid.y.labels, fontsize=7)
        ax.set_xlabel(grid.x.hyperparameter.name)
        ax.set_ylabel(grid.y.hyperparameter.name)
        fig.colorbar(image, ax=ax, label="mean validation error")
    if not grids:
        axes.flat[0].text(0.5, 0.5, "not enough hyperparameters for a pair", ha="center", va="center")
        axes.flat[0].axis("off")
    where = f"budget {budget:.4g}" if budget is not None else "no budget"
    fig.suptitle(f"mean loss over pairs of hyperparameters ({where})")
    return _save(fig, path)


def histograms_figure(groups: dict[str, dict[str, list[float]]], budget: float | None, path: Path) -> Path:
    """Per hyperparameter, a histogram of the loss for each value (or bin of values)."""
    count = max(1, len(groups))
    columns = min(3, count)
    rows = math.ceil(count / columns)
    fig = _figure((4.2 * columns, 3.3 * rows))
    axes = fig.subplots(rows, columns, squeeze=False)
    all_losses = [loss for g in groups.values() for losses in g.values() for loss in losses]
    edges = np.histogram_bin_edges(all_losses, bins=12) if all_losses else np.linspace(0, 1, 13)
    for ax, (name, by_value) in zip(axes.flat, groups.items(), strict=False):
        present = [(index, label, losses) for index, (label, losses) in enumerate(by_value.items()) if losses]
        if present:  # grouped bars, side by side: overlaid outlines hide each other
            ax.hist(
                [losses for _, _, losses in present],
                bins=edges,
                color=[f"C{index}" for index, _, _ in present],
                label=[f"{label} (n={len(losses)})" for _, label, losses in present],
            )
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("validation error", fontsize=8)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(groups) :]:
        ax.axis("off")
    where = f"budget {budget:.4g}" if budget is not None else "no budget"
    fig.suptitle(f"loss per hyperparameter value ({where})")
    return _save(fig, path)


def rank_correlation_figure(correlations: list[BudgetCorrelation], path: Path) -> Path:
    count = max(1, len(correlations))
    fig = _figure((4.2 * count, 3.8))
    axes = fig.subplots(1, count, squeeze=False)
    for ax, c in zip(axes.flat, correlations, strict=False):
        ax.scatter([a for a, _ in c.pairs], [b for _, b in c.pairs], s=18, color="#1f77b4")
        rho = f"Spearman rho {c.rho:.2f}" if c.rho is not None else "too few configurations"
        ax.set_title(f"budget {c.low:.4g} -> {c.high:.4g}: {rho} (n={c.count})", fontsize=9)
        ax.set_xlabel(f"loss on budget {c.low:.4g}")
        ax.set_ylabel(f"loss on budget {c.high:.4g}")
        ax.grid(alpha=0.3)
    if not correlations:
        axes.flat[0].text(0.5, 0.5, "only one budget: nothing to correlate", ha="center", va="center")
        axes.flat[0].axis("off")
    return _save(fig, path)


def gantt_figure(rows: list[tuple[str, list[Evaluation]]], origin: float, path: Path) -> Path:
    """One row per worker, a bar per evaluation from start to finish, coloured by budget."""
    fig = _figure((10, 0.6 * max(2, len(rows)) + 1.5))
    ax = fig.subplots()
    budgets = [e.budget for _, evaluations in rows for e in evaluations]
    colours = _budget_colours(budgets) if budgets else {}
    for index, (_worker, evaluations) in enumerate(rows):
        for e in evaluations:
            start, end = (e.started or e.submitted) - origin, e.finished - origin
            ax.barh(
                index,
                max(end - start, 1e-3),
                left=start,
                height=0.7,
                color=colours[e.budget],
                edgecolor="black" if not e.ok else "none",
                hatch="//" if not e.ok else None,
            )
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([name for name, _ in rows], fontsize=8)
    ax.set_xlabel("wall-clock seconds")
    ax.set_title("worker utilisation (hatched: failed)")
    if colours:
        for budget, colour in colours.items():
            ax.scatter([], [], color=colour, s=18, label=f"budget {budget:.4g}")
        fig.legend(fontsize=8, loc="outside right upper")
    ax.grid(alpha=0.3, axis="x")
    return _save(fig, path)
