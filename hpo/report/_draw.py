"""Drawing the colour-task plots: matplotlib (Agg, PNG) and plotly (HTML) from `_data`'s data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._data import NA_POSITION, Parallel, PerBackbone, Tradeoff

_DPI = 100


def _figure(w: float, h: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), dpi=_DPI)


def _save_png(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path)
    return path


def _save_html(fig, path: Path, title: str) -> Path:
    fig.update_layout(title_text=title)
    fig.write_html(path, include_plotlyjs="directory")  # one plotly.min.js beside, not per file
    return path


# --------------------------------------------------------------------------- per backbone


def backbone_png(d: PerBackbone, path: Path, title: str) -> Path:
    fig = _figure(max(5.0, 1.1 * len(d.backbones) + 2), 4.2)
    ax = fig.add_subplot()
    bars = ax.bar(d.backbones, d.best, color="tab:blue")
    for bar, v, n, num in zip(bars, d.best, d.trials, d.best_trial):
        ax.annotate(f"{v:.3f}\n#{num}, {n} trial{'s' if n != 1 else ''}",
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=8)
    ax.set_ylabel(f"best {d.objective}")
    ax.set_ylim(0, max(1.0, max(d.best) * 1.15) if d.best else 1.0)
    ax.set_title(title, fontsize=10)
    ax.tick_params(axis="x", labelrotation=20)
    return _save_png(fig, path)


def backbone_html(d: PerBackbone, path: Path, title: str) -> Path:
    import plotly.graph_objects as go

    fig = go.Figure(go.Bar(
        x=list(d.backbones), y=list(d.best),
        text=[f"{v:.3f} (#{num}, {n} trials)" for v, num, n in
              zip(d.best, d.best_trial, d.trials)], textposition="outside"))
    fig.update_yaxes(title_text=f"best {d.objective}")
    return _save_html(fig, path, title)


# --------------------------------------------------------------------------- trade-offs


def _costs(d: Tradeoff) -> tuple[list[float], str]:
    """x values and axis label: parameters in millions, latency in ms (which latency: the
    trial's own, eager PyTorch in the training process; `vcr-hpo export` measures what ships)."""
    if d.cost == "num_params":
        return [c / 1e6 for c in d.costs], "parameters (millions)"
    return list(d.costs), ("latency_ms: median ms of a batch-1 forward pass, eager PyTorch on "
                           "the trial's device (not an exported model)")


def tradeoff_png(d: Tradeoff, objective: str, path: Path, title: str) -> Path:
    costs, label = _costs(d)
    d = Tradeoff(d.cost, d.trials, d.values, tuple(costs), d.front)
    fig = _figure(7.0, 4.5)
    ax = fig.add_subplot()
    on = set(d.front)
    rest = [i for i in range(len(d.trials)) if i not in on]
    ax.scatter([d.costs[i] for i in rest], [d.values[i] for i in rest], c="tab:grey",
               alpha=0.6, label="trial")
    front = sorted(on, key=lambda i: d.costs[i])
    ax.plot([d.costs[i] for i in front], [d.values[i] for i in front], "o-", c="tab:red",
            label=f"Pareto front ({len(front)})")
    for i in front:
        ax.annotate(f"#{d.trials[i]}", (d.costs[i], d.values[i]), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(label)
    ax.set_ylabel(objective)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=10)
    return _save_png(fig, path)


def tradeoff_html(d: Tradeoff, objective: str, path: Path, title: str) -> Path:
    import plotly.graph_objects as go

    costs, label = _costs(d)
    d = Tradeoff(d.cost, d.trials, d.values, tuple(costs), d.front)
    on = set(d.front)
    front = sorted(on, key=lambda i: d.costs[i])
    rest = [i for i in range(len(d.trials)) if i not in on]
    fig = go.Figure([
        go.Scatter(x=[d.costs[i] for i in rest], y=[d.values[i] for i in rest], mode="markers",
                   name="trial", text=[f"#{d.trials[i]}" for i in rest],
                   marker={"color": "grey"}),
        go.Scatter(x=[d.costs[i] for i in front], y=[d.values[i] for i in front],
                   mode="lines+markers", name=f"Pareto front ({len(front)})",
                   text=[f"#{d.trials[i]}" for i in front], marker={"color": "red"}),
    ])
    fig.update_xaxes(title_text=label)
    fig.update_yaxes(title_text=objective)
    return _save_html(fig, path, title)


# --------------------------------------------------------------------------- parallel


def parallel_png(d: Parallel, path: Path, title: str) -> Path:
    from matplotlib import colormaps
    from matplotlib.colors import Normalize

    n_axes = len(d.axes)
    fig = _figure(max(7.0, 1.3 * n_axes + 2), 5.0)
    ax = fig.add_subplot()
    norm = Normalize(min(d.values), max(d.values)) if d.values else Normalize(0, 1)
    cmap = colormaps["viridis"]
    xs = list(range(n_axes))
    for k, v in sorted(enumerate(d.values), key=lambda kv: kv[1]):  # best drawn on top
        ax.plot(xs, [a.positions[k] for a in d.axes], color=cmap(norm(v)), alpha=0.7, lw=1.2)
    for x, a in enumerate(d.axes):
        ax.axvline(x, color="black", lw=0.8)
        for p, label in zip(a.tick_positions, a.tick_labels):
            ax.text(x + 0.03, p, label, fontsize=7, va="center",
                    color="tab:red" if p == NA_POSITION else "black")
    ax.axhline(NA_POSITION, color="tab:red", lw=0.5, ls=":")
    ax.set_xticks(xs, [f"{a.name}" + (f"\n({a.missing} n/a)" if a.missing else "")
                       for a in d.axes], fontsize=8)
    ax.set_yticks([])
    ax.set_xlim(-0.2, n_axes - 0.5)
    ax.set_ylim(NA_POSITION - 0.08, 1.08)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    from matplotlib.cm import ScalarMappable

    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=d.objective, pad=0.01)
    ax.set_title(title, fontsize=10)
    return _save_png(fig, path)


def parallel_html(d: Parallel, path: Path, title: str) -> Path:
    import plotly.graph_objects as go

    dims: list[dict[str, Any]] = [
        {"label": a.name + (f" ({a.missing} n/a)" if a.missing else ""),
         "values": list(a.positions), "range": [NA_POSITION - 0.05, 1.05],
         "tickvals": list(a.tick_positions), "ticktext": list(a.tick_labels)}
        for a in d.axes
    ]
    fig = go.Figure(go.Parcoords(line={"color": list(d.values), "colorscale": "Viridis",
                                       "showscale": True}, dimensions=dims))
    return _save_html(fig, path, title)


# --------------------------------------------------------------------------- confusion


def confusion_html(summary: dict[str, Any], path: Path, title: str) -> Path:
    import plotly.graph_objects as go

    names = summary["class_names"]
    m = summary["matrix"]
    share = [[v / sum(row) if sum(row) else 0.0 for v in row] for row in m]
    recall = [summary["per_class"][c]["recall"] for c in names]
    ylabels = [f"{c} ({r:.0%})" if r is not None else f"{c} (-)" for c, r in zip(names, recall)]
    fig = go.Figure(go.Heatmap(z=share, x=names, y=ylabels, text=m, texttemplate="%{text}",
                               colorscale="Blues", zmin=0, zmax=1,
                               colorbar={"title": "share of true class"}))
    fig.update_yaxes(autorange="reversed", title_text="true (recall)")
    fig.update_xaxes(title_text="predicted")
    return _save_html(fig, path, title)
