"""Plotly figures, one consistent style, always drawn from saved result tables.

Every function here takes a DataFrame (as saved by :mod:`interp.store`) and returns a
``plotly.graph_objects.Figure``; none recomputes anything, so every figure can be regenerated
from a results folder.  Heatmaps are layer x head with layer 0 at the bottom (as in the paper),
exact values on hover, heads labelled ``L{layer}H{head}``.  Colour scales are colour-blind safe:
sequential (viridis) for scores, diverging (RdBu) for changes.

>>> import pandas as pd
>>> table = pd.DataFrame({"layer": [0, 0, 1, 1], "head": [0, 1, 0, 1], "value": [0.1, 0.2, 0.9, 0.3]})
>>> figure = layer_head_heatmap(table, "value", title="prefix matching")
>>> figure.data[0].z.shape
(2, 2)
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from interp.errors import InterpError

__all__ = [
    "DIVERGING",
    "FIGURE_FORMATS",
    "SEQUENTIAL",
    "dynamics_figure",
    "head_label",
    "layer_head_heatmap",
    "repeated_loss_figure",
    "save_figure",
    "scatter_with_labels",
    "correlation_heatmap",
    "layer_share_figure",
    "retention_figure",
    "angular_distance_figure",
    "laser_heatmap_figure",
    "layer_drop_figure",
    "pruning_curves_figure",
    "pruning_grid_figure",
    "pruning_rankings_figure",
    "attention_pattern_figure",
    "model_comparison_figure",
    "save_figures",
    "curve_figure",
    "causal_effect_figure",
    "pattern_task_figure",
]

SEQUENTIAL = "Viridis"  # perceptually uniform and colour-blind safe, for scores
DIVERGING = "RdBu"  # for signed changes; centred on zero by the caller via zmid
FONT = dict(family="Helvetica, Arial, sans-serif", size=13)
TEMPLATE = "plotly_white"


def head_label(layer, head) -> str:
    """The paper's name for a head (accepts numpy integers too).

    >>> head_label(5, 3)
    'L5H3'
    """
    return f"L{int(layer)}H{int(head)}"


def _style(figure: go.Figure, title: str, width: int | None = None, height: int | None = None) -> go.Figure:
    figure.update_layout(template=TEMPLATE, font=FONT, title=dict(text=title, x=0.02),
                         margin=dict(l=60, r=20, t=60, b=50))
    if width:
        figure.update_layout(width=width)
    if height:
        figure.update_layout(height=height)
    return figure


def layer_head_heatmap(
    table: pd.DataFrame,
    value: str,
    title: str,
    *,
    diverging: bool = False,
    colorbar_title: str | None = None,
) -> go.Figure:
    """Heatmap of ``table[value]`` over (layer, head); layer 0 at the bottom."""
    for column in ("layer", "head", value):
        if column not in table.columns:
            raise InterpError(f"heatmap needs a {column!r} column; the table has {list(table.columns)}")
    grid = table.pivot_table(index="layer", columns="head", values=value, aggfunc="mean").sort_index()
    layers, heads = grid.index.to_numpy(), grid.columns.to_numpy()
    labels = np.array([[head_label(layer, head) for head in heads] for layer in layers])
    z = grid.to_numpy()
    colour = dict(colorscale=DIVERGING, zmid=0.0) if diverging else dict(colorscale=SEQUENTIAL)
    figure = go.Figure(
        go.Heatmap(
            z=z, x=heads, y=layers, customdata=labels, **colour,
            colorbar=dict(title=colorbar_title or value),
            hovertemplate="%{customdata}<br>" + (colorbar_title or value) + " = %{z:.5f}<extra></extra>",
        )
    )
    figure.update_xaxes(title="head", dtick=1)
    figure.update_yaxes(title="layer", dtick=max(1, len(layers) // 15), autorange=True)  # layer 0 at the bottom
    return _style(figure, title, width=max(420, 60 * len(heads) + 200), height=max(420, 22 * len(layers) + 160))


def scatter_with_labels(
    table: pd.DataFrame,
    x: str,
    y: str,
    title: str,
    *,
    label_top: int = 5,
    rank_by: str | None = None,
    colour: str | None = "layer",
) -> go.Figure:
    """Scatter of heads, the ``label_top`` heads by ``rank_by`` (default ``x`` + ``y``) labelled."""
    frame = table.copy()
    frame["label"] = [head_label(layer, head) for layer, head in zip(frame["layer"], frame["head"], strict=True)]
    score = frame[rank_by] if rank_by else frame[x] + frame[y]
    top = frame.loc[score.nlargest(label_top).index]
    marker = dict(size=8, opacity=0.8)
    if colour:
        marker.update(color=frame[colour], colorscale=SEQUENTIAL, showscale=True, colorbar=dict(title=colour))
    figure = go.Figure(
        go.Scatter(
            x=frame[x], y=frame[y], mode="markers", marker=marker, customdata=frame["label"],
            hovertemplate="%{customdata}<br>" + x + " = %{x:.4f}<br>" + y + " = %{y:.4f}<extra></extra>",
            showlegend=False,
        )
    )
    figure.add_trace(
        go.Scatter(x=top[x], y=top[y], mode="text", text=top["label"], textposition="top center",
                   showlegend=False, hoverinfo="skip")
    )
    figure.update_xaxes(title=x)
    figure.update_yaxes(title=y)
    return _style(figure, title, width=640, height=520)


def save_figure(figure: go.Figure, stem: Path, formats: Sequence[str] = ("html", "png")) -> list[Path]:
    """Write one figure as ``stem.html`` (no browser) and static images (one Chromium session).

    The same path as :func:`save_figures`; a job with several figures should pass them all there at
    once, so the browser starts once per command.

    >>> figure = layer_head_heatmap(pd.DataFrame({"layer": [0], "head": [0], "value": [1.0]}), "value", title="one")
    >>> import tempfile; folder = Path(tempfile.mkdtemp())
    >>> [path.name for path in save_figure(figure, folder / "one", ("html",))]
    ['one.html']
    """
    return save_figures({Path(stem): figure}, formats)


def repeated_loss_figure(loss: pd.DataFrame, model: str, max_seeds: int = 8) -> go.Figure:
    """Per-token loss on repeated random sequences, x in units of the repeat length L.

    Each seed has its own L, so positions are drawn as ``(position - 1) / L``: the repeat
    boundaries fall at 1, 2, 3 for every seed and are marked.  Faint lines are single seeds,
    the bold line the mean over all seeds by repeat and offset.
    """
    for column in ("seed", "position", "repeat", "loss"):
        if column not in loss.columns:
            raise InterpError(f"loss figure needs a {column!r} column; the table has {list(loss.columns)}")
    frame = loss.copy()
    period = frame.groupby("seed")["position"].transform("max") / frame.groupby("seed")["repeat"].transform("max")
    frame["x"] = (frame["position"] - 1) / period.round()
    figure = go.Figure()
    for seed in sorted(frame["seed"].unique())[:max_seeds]:
        rows = frame[frame["seed"] == seed]
        figure.add_trace(go.Scatter(x=rows["x"], y=rows["loss"], mode="lines",
                                    line=dict(width=1, color="rgba(80,80,160,0.25)"),
                                    name=f"seed {seed}",
                                    hovertemplate="position %{customdata}<br>loss %{y:.3f}<extra></extra>",
                                    customdata=rows["position"], showlegend=False))
    frame["bin"] = (frame["x"] * 25).round() / 25
    mean = frame.groupby("bin", as_index=False)["loss"].mean()
    figure.add_trace(go.Scatter(x=mean["bin"], y=mean["loss"], mode="lines", line=dict(width=3, color="#1f3b73"),
                                name="mean over seeds",
                                hovertemplate="%{x:.2f} repeats<br>mean loss %{y:.3f}<extra></extra>"))
    for boundary in range(1, int(frame["repeat"].max())):
        figure.add_vline(x=boundary, line=dict(dash="dash", color="grey"))
    figure.update_xaxes(title="position (in repeats of the random block)")
    figure.update_yaxes(title="loss (nats)")
    return _style(figure, f"{model}: per-token loss on repeated random tokens", width=760, height=420)


def dynamics_figure(head_scores: pd.DataFrame, summary: pd.DataFrame, title: str) -> go.Figure:
    """Head scores and losses against training step, stacked on one shared log-scaled step axis.

    ``head_scores`` has columns ``step, layer, head, metric, value``; ``summary`` has ``step,
    metric, value`` (``repeated_loss_repeat_N``, ``icl_score`` and ``icl_score_band`` rows are plotted). Step 0
    cannot sit on a log axis; it stays in the tables.

    >>> heads = pd.DataFrame({"step": [1, 2], "layer": [1, 1], "head": [0, 0],
    ...                       "metric": ["prefix_matching"] * 2, "value": [0.1, 0.8]})
    >>> summary = pd.DataFrame({"step": [1, 2], "metric": ["icl_score"] * 2, "value": [0.0, -0.5]})
    >>> len(dynamics_figure(heads, summary, "toy").data)
    2
    """
    from plotly.colors import qualitative
    from plotly.subplots import make_subplots

    for table, columns in ((head_scores, ("step", "layer", "head", "metric", "value")),
                           (summary, ("step", "metric", "value"))):
        missing = [column for column in columns if column not in table.columns]
        if missing:
            raise InterpError(f"dynamics figure needs columns {missing}; the table has {list(table.columns)}")
    head_scores, summary = head_scores[head_scores["step"] > 0], summary[summary["step"] > 0]
    preferred = ["prefix_matching", "previous_token", "copying"]  # the induction story, top to bottom
    metrics = sorted(dict.fromkeys(head_scores["metric"]), key=lambda m: preferred.index(m) if m in preferred else 99)
    repeated = sorted(metric for metric in summary["metric"].unique() if metric.startswith("repeated_loss_repeat_"))
    panels = [metric.replace("_", " ") for metric in metrics] + ["loss on repeated random tokens",
                                                                 "in-context-learning score"]
    figure = make_subplots(rows=len(panels), cols=1, shared_xaxes=True, subplot_titles=panels, vertical_spacing=0.05)
    heads = head_scores[["layer", "head"]].drop_duplicates().sort_values(["layer", "head"]).itertuples(index=False)
    palette = qualitative.Dark24
    for index, (layer, head) in enumerate(heads):
        label, colour = head_label(layer, head), palette[index % len(palette)]
        for row, metric in enumerate(metrics, start=1):
            series = head_scores[(head_scores["metric"] == metric) & (head_scores["layer"] == layer)
                                 & (head_scores["head"] == head)].sort_values("step")
            figure.add_trace(go.Scatter(
                x=series["step"], y=series["value"], mode="lines+markers", name=label, legendgroup=label,
                showlegend=row == 1, line=dict(color=colour, dash="solid" if layer % 2 else "dot"), marker=dict(size=4),
                hovertemplate=f"{label}<br>step %{{x}}<br>{metric} = %{{y:.4f}}<extra></extra>"), row=row, col=1)
    for metric in repeated:
        series = summary[summary["metric"] == metric].sort_values("step")
        name = "repeat " + metric.rsplit("_", 1)[1]
        figure.add_trace(go.Scatter(x=series["step"], y=series["value"], mode="lines+markers", name=name,
                                    line=dict(color="grey", width=1 + repeated.index(metric)),
                                    hovertemplate=f"{name}<br>step %{{x}}<br>loss = %{{y:.3f}}<extra></extra>"),
                         row=len(metrics) + 1, col=1)
    for metric, name, width in (("icl_score", "ICL score (one late, one early token)", 1),
                                ("icl_score_band", "ICL score (bands of tokens)", 3)):
        series = summary[summary["metric"] == metric].sort_values("step")
        if series.empty:
            continue
        figure.add_trace(go.Scatter(x=series["step"], y=series["value"], mode="lines+markers", name=name,
                                    line=dict(color="black", width=width),
                                    hovertemplate=f"step %{{x}}<br>{name} = %{{y:.3f}}<extra></extra>"),
                         row=len(panels), col=1)
    figure.update_xaxes(type="log")
    figure.update_xaxes(title="training step (log scale)", row=len(panels), col=1)
    figure.update_yaxes(title="nats", row=len(metrics) + 1, col=1)
    figure.update_yaxes(title="late - early loss", row=len(panels), col=1)
    return _style(figure, title, width=900, height=240 * len(panels) + 120)


def correlation_heatmap(table: pd.DataFrame, row: str, column: str, value: str, title: str) -> go.Figure:
    """Heatmap of a correlation ``value`` over ``row`` x ``column`` labels, diverging around 0 in [-1, 1]."""
    for name in (row, column, value):
        if name not in table.columns:
            raise InterpError(f"correlation heatmap needs a {name!r} column; the table has {list(table.columns)}")
    grid = table.pivot_table(index=row, columns=column, values=value, aggfunc="mean")
    figure = go.Figure(
        go.Heatmap(z=grid.to_numpy(), x=[str(label) for label in grid.columns], y=[str(label) for label in grid.index],
                   colorscale=DIVERGING, zmid=0.0, zmin=-1.0, zmax=1.0, colorbar=dict(title=value),
                   hovertemplate="%{y} / %{x}<br>" + value + " = %{z:.3f}<extra></extra>")
    )
    return _style(figure, title, width=max(480, 26 * len(grid.columns) + 260),
                  height=max(420, 20 * len(grid.index) + 160))


def retention_figure(table: pd.DataFrame, title: str) -> go.Figure:
    """Share of induction score kept vs fraction of heads removed, one line per task/shots, a panel per metric."""
    from plotly.subplots import make_subplots

    metrics = list(dict.fromkeys(table["induction_metric"]))
    from plotly.colors import qualitative

    figure = make_subplots(rows=1, cols=len(metrics), subplot_titles=metrics, shared_yaxes=True)
    keys = list(dict.fromkeys(zip(table["task"], table["shots"], strict=True)))
    # same colour per line in every panel
    palette = {key: qualitative.Safe[index % len(qualitative.Safe)] for index, key in enumerate(keys)}
    for column, metric in enumerate(metrics, start=1):
        part = table[table["induction_metric"] == metric]
        for (task, shots), curve in part.groupby(["task", "shots"], sort=False):
            aggregate = task == "aggregate"
            figure.add_trace(
                go.Scatter(x=curve["fraction_removed"], y=curve["retained"], mode="lines",
                           name="aggregate" if aggregate else f"{task}/{shots}", legendgroup=f"{task}/{shots}",
                           showlegend=column == 1,
                           line=dict(width=4 if aggregate else 1.5, color="black" if aggregate
                                     else palette[(task, shots)]),
                           opacity=1.0 if aggregate else 0.6),
                row=1, col=column,
            )
        figure.update_xaxes(title="fraction of heads removed (least important first)", row=1, col=column)
    figure.update_yaxes(title="share of total score kept", range=[0, 1.05], row=1, col=1)
    return _style(figure, title, width=520 * len(metrics) + 200, height=500)


def layer_share_figure(table: pd.DataFrame, title: str) -> go.Figure:
    """Share of total importance per layer (mean over tasks/shots), heads and FFNs side by side."""
    summary = table.groupby(["component", "layer"])["share"].mean().reset_index()
    figure = go.Figure()
    for component, part in summary.groupby("component"):
        figure.add_trace(go.Bar(x=part["layer"], y=part["share"], name=component,
                                hovertemplate="layer %{x}<br>share = %{y:.3f}<extra></extra>"))
    figure.update_layout(barmode="group")
    figure.update_xaxes(title="layer", dtick=1)
    figure.update_yaxes(title="share of total importance (mean over tasks)")
    return _style(figure, title, width=900, height=460)


def attention_pattern_figure(pattern: pd.DataFrame, title: str, period: int | None = None) -> go.Figure:
    """One head's attention pattern (query down, key across), repeat boundaries marked.

    ``pattern`` has columns ``query, key, weight`` (and optionally ``token``, the key's text).
    On a repeated random block an induction head draws a stripe ``period - 1`` below the
    diagonal: each query attends to the token after its previous occurrence.

    >>> table = pd.DataFrame({"query": [0, 1, 1], "key": [0, 0, 1], "weight": [1.0, 0.3, 0.7]})
    >>> attention_pattern_figure(table, "L0H0").data[0].z.shape
    (2, 2)
    """
    for column in ("query", "key", "weight"):
        if column not in pattern.columns:
            raise InterpError(f"attention pattern figure needs a {column!r} column; the table has "
                              f"{list(pattern.columns)}")
    grid = pattern.pivot_table(index="query", columns="key", values="weight", aggfunc="mean").sort_index()
    hover, tokens = "query %{y}<br>key %{x}<br>attention = %{z:.3f}<extra></extra>", None
    if "token" in pattern.columns:  # the key's text; a position's token is the key of its diagonal cell
        text = pattern[pattern["query"] == pattern["key"]].set_index("key")["token"].astype(str)
        rows, columns = text.reindex(grid.index).to_numpy(object), text.reindex(grid.columns).to_numpy(object)
        tokens = np.stack(np.broadcast_arrays(rows[:, None], columns[None, :]), axis=-1)  # (query, key, 2)
        hover = "query %{y} %{customdata[0]}<br>key %{x} %{customdata[1]}<br>attention = %{z:.3f}<extra></extra>"
    figure = go.Figure(go.Heatmap(
        z=grid.to_numpy(), x=grid.columns.to_numpy(), y=grid.index.to_numpy(), colorscale=SEQUENTIAL, zmin=0.0,
        customdata=tokens, colorbar=dict(title="attention"), hovertemplate=hover))
    if period:
        last = int(grid.index.max())
        for boundary in range(1 + period, last + 1, period):  # BOS at 0, repeats start at 1 + k * period
            figure.add_vline(x=boundary - 0.5, line=dict(dash="dot", color="white", width=1))
            figure.add_hline(y=boundary - 0.5, line=dict(dash="dot", color="white", width=1))
    figure.update_xaxes(title="key position", constrain="domain")
    figure.update_yaxes(title="query position", autorange="reversed", scaleanchor="x")
    return _style(figure, title, width=640, height=600)


def model_comparison_figure(tables: "dict[str, pd.DataFrame]", value: str, title: str) -> go.Figure:
    """The same layer x head score for several models side by side, on one shared colour scale.

    ``tables`` maps a model name to a table with ``layer, head`` and ``value`` columns.

    >>> one = pd.DataFrame({"layer": [0, 1], "head": [0, 0], "mean": [0.1, 0.9]})
    >>> len(model_comparison_figure({"a": one, "b": one}, "mean", "prefix matching").data)
    2
    """
    from plotly.subplots import make_subplots

    if not tables:
        raise InterpError("model comparison needs at least one model's table")
    names = list(tables)
    figure = make_subplots(rows=1, cols=len(names), subplot_titles=names, horizontal_spacing=0.06)
    low = min(float(table[value].min()) for table in tables.values())
    high = max(float(table[value].max()) for table in tables.values())
    for column, name in enumerate(names, start=1):
        table = tables[name]
        for needed in ("layer", "head", value):
            if needed not in table.columns:
                raise InterpError(f"comparison table of {name!r} lacks a {needed!r} column; it has "
                                  f"{list(table.columns)}")
        grid = table.pivot_table(index="layer", columns="head", values=value, aggfunc="mean").sort_index()
        labels = np.array([[head_label(layer, head) for head in grid.columns] for layer in grid.index])
        figure.add_trace(go.Heatmap(
            z=grid.to_numpy(), x=grid.columns.to_numpy(), y=grid.index.to_numpy(), customdata=labels,
                                    coloraxis="coloraxis",
            hovertemplate=name + " %{customdata}<br>" + value + " = %{z:.4f}<extra></extra>"), row=1, col=column)
        figure.update_xaxes(title="head", row=1, col=column)
    figure.update_yaxes(title="layer", row=1, col=1)
    figure.update_layout(coloraxis=dict(colorscale=SEQUENTIAL, cmin=low, cmax=high, colorbar=dict(title=value)))
    return _style(figure, title, width=360 * len(names) + 160, height=560)


FIGURE_FORMATS = ("html", "png", "pdf", "svg")
_RENDER_TABS = 2  # browser tabs rendering at once: one per core of a small machine; more only queue
_RENDER_TIMEOUT_S = 180  # seconds per image; a large heatmap's PDF on a loaded 2-core CPU takes tens of seconds


def save_figures(figures: "dict[Path, go.Figure]", formats: Sequence[str] = ("html", "png", "pdf")) -> list[Path]:
    """Write many figures (``stem -> figure``): HTML without a browser, every static image in one Chromium session.

    Starting the browser costs about 5 s on a 2-core CPU, rendering one image well under 1 s, so a
    command passes all of its figures here in one call.  HTML references one ``plotly.min.js``
    written beside it (opens offline).  Images keep each figure's own layout size (PNG at 2x).
    Every file is written to a temporary name and renamed; a figure that cannot be rendered raises
    :class:`InterpError` naming its file, after the others have been written.

    >>> figure = layer_head_heatmap(pd.DataFrame({"layer": [0], "head": [0], "value": [1.0]}), "value", title="one")
    >>> import tempfile; folder = Path(tempfile.mkdtemp())
    >>> [path.name for path in save_figures({folder / "a": figure, folder / "b": figure}, ("html",))]
    ['a.html', 'b.html']
    """
    unknown = [fmt for fmt in formats if fmt not in FIGURE_FORMATS]
    if unknown:
        raise InterpError(f"unknown figure format {unknown[0]!r}; choose from {', '.join(FIGURE_FORMATS)}")
    written: list[Path] = []
    static: list[tuple[go.Figure, Path]] = []
    for stem, figure in figures.items():
        for fmt in formats:
            path = Path(stem).with_suffix(f".{fmt}")
            if fmt == "html":
                _write_html(figure, path)
            else:
                static.append((figure, path))
            written.append(path)
    if static:
        _write_images(static)
    return written


def _write_html(figure: go.Figure, path: Path) -> None:
    """``path`` plus, once per folder, the ``plotly.min.js`` it loads: plain text, no browser."""
    import plotly.io as pio
    from plotly.offline import get_plotlyjs

    from interp.store import atomic_write

    bundle = path.parent / "plotly.min.js"
    if not bundle.exists():
        atomic_write(bundle, lambda temporary: temporary.write_text(get_plotlyjs(), encoding="utf-8"))
    page = pio.to_html(figure, include_plotlyjs="directory", full_html=True)
    atomic_write(path, lambda temporary: temporary.write_text(page, encoding="utf-8"))


def _write_images(items: "list[tuple[go.Figure, Path]]") -> None:
    """Render every (figure, path) in one kaleido (Chromium) session, then write each atomically."""
    from interp.store import atomic_write

    try:
        images = _run_async(lambda: _render_images(items))
    except Exception as error:  # the browser did not start or died: nothing was rendered
        raise InterpError(f"could not render {_name_files([path for _, path in items])} ({_first_line(error)}); "
                          "static export needs kaleido>=1 and a Chromium (apt-get install chromium)") from None
    failed = []
    for (_, path), image in zip(items, images, strict=True):
        if isinstance(image, BaseException):
            failed.append((path, _first_line(image)))
        elif not image:
            failed.append((path, "kaleido returned no bytes"))
        else:
            atomic_write(path, functools.partial(Path.write_bytes, data=image))
    if failed:
        reasons = "; ".join(f"{path.name} ({reason})" for path, reason in failed[:3])
        more = f" and {len(failed) - 3} more" if len(failed) > 3 else ""
        raise InterpError(f"could not render {reasons}{more}; the other figures were written")


async def _render_images(items: "list[tuple[go.Figure, Path]]") -> list:
    """Bytes (or the exception) of each image, in order, from one browser with a few tabs."""
    import kaleido

    async with kaleido.Kaleido(n=min(_RENDER_TABS, len(items)), timeout=_RENDER_TIMEOUT_S, mathjax=False) as session:
        renders = [session.calc_fig(figure, opts=dict(format=path.suffix[1:], scale=2 if path.suffix == ".png" else 1))
                   for figure, path in items]
        return await asyncio.gather(*renders, return_exceptions=True)


def _run_async(factory):
    """Run ``factory()``'s coroutine to the end, also from inside a running event loop (Jupyter)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _name_files(paths: "list[Path]") -> str:
    return paths[0].name + (f" and {len(paths) - 1} more" if len(paths) > 1 else "")


def _percent_label(column: str) -> str:
    return {"head_percent": "% of heads pruned", "ffn_percent": "% of FFNs pruned"}.get(column, column)


def pruning_curves_figure(table: pd.DataFrame, column: str, title: str) -> go.Figure:
    """Accuracy vs % pruned, one thin line per task, the task average in bold black."""
    figure = go.Figure()
    for task, part in table.groupby("task", sort=True):
        part = part.sort_values(column)
        figure.add_trace(go.Scatter(x=part[column], y=part["accuracy"], mode="lines+markers", name=str(task),
                                    line=dict(width=1.5), opacity=0.65,
                                    hovertemplate=f"{task}<br>%{{x}}%: accuracy %{{y:.3f}}<extra></extra>"))
    average = table.groupby(column)["accuracy"].mean().reset_index()
    figure.add_trace(go.Scatter(x=average[column], y=average["accuracy"], mode="lines+markers", name="average",
                                line=dict(width=4, color="black"),
                                hovertemplate="average<br>%{x}%: accuracy %{y:.3f}<extra></extra>"))
    figure.update_xaxes(title=_percent_label(column), dtick=10)
    figure.update_yaxes(title="accuracy", rangemode="tozero")
    return _style(figure, title, width=860, height=500)


def pruning_rankings_figure(table: pd.DataFrame, column: str, title: str) -> go.Figure:
    """Task-average accuracy vs % pruned, one line per ranking; random seeds as their mean with a min-max band."""
    frame = table.assign(group=np.where(table["ranking"].str.startswith("random"), "random", table["ranking"]))
    per_ranking = frame.groupby(["group", "ranking", column])["accuracy"].mean().reset_index()
    figure = go.Figure()
    for group, part in per_ranking.groupby("group", sort=True):
        curve = part.groupby(column)["accuracy"].agg(["mean", "min", "max"]).reset_index()
        if group == "random" and part["ranking"].nunique() > 1:
            figure.add_trace(go.Scatter(x=list(curve[column]) + list(curve[column])[::-1],
                                        y=list(curve["max"]) + list(curve["min"])[::-1], fill="toself",
                                        line=dict(width=0), fillcolor="rgba(120,120,120,0.25)", showlegend=False,
                                        hoverinfo="skip"))
        bold = group == "own"
        figure.add_trace(go.Scatter(x=curve[column], y=curve["mean"], mode="lines+markers",
                                    name=f"random ({part['ranking'].nunique()} seeds)" if group == "random" else group,
                                    line=dict(width=4 if bold else 2, dash="dot" if group == "random" else None),
                                    hovertemplate=f"{group}<br>%{{x}}%: accuracy %{{y:.3f}}<extra></extra>"))
    figure.update_xaxes(title=_percent_label(column), dtick=10)
    figure.update_yaxes(title="accuracy (mean over tasks)", rangemode="tozero")
    return _style(figure, title, width=860, height=500)


def pruning_grid_figure(table: pd.DataFrame, title: str) -> go.Figure:
    """Mean accuracy over tasks and shots on the (% heads, % FFNs) grid."""
    grid = table.pivot_table(index="head_percent", columns="ffn_percent", values="accuracy",
                             aggfunc="mean").sort_index()
    figure = go.Figure(go.Heatmap(z=grid.to_numpy(), x=[str(value) for value in grid.columns],
                                  y=[str(value) for value in grid.index], colorscale=SEQUENTIAL,
                                  colorbar=dict(title="accuracy"), text=np.round(grid.to_numpy(), 3),
                                  texttemplate="%{text}",
                                  hovertemplate="heads %{y}%, FFNs %{x}%<br>accuracy %{z:.3f}<extra></extra>"))
    figure.update_xaxes(title="% of FFNs pruned")
    figure.update_yaxes(title="% of heads pruned")
    return _style(figure, title, width=700, height=560)


def angular_distance_figure(table: pd.DataFrame, title: str) -> go.Figure:
    """Angular distance d(l, n) over (block size n, first layer l), as Gromov et al. Figure 2."""
    grid = table.pivot_table(index="layer", columns="n", values="distance", aggfunc="mean").sort_index()
    figure = go.Figure(go.Heatmap(z=grid.to_numpy(), x=grid.columns.to_numpy(), y=grid.index.to_numpy(),
                                  colorscale=SEQUENTIAL, colorbar=dict(title="distance"),
                                  hovertemplate="layer %{y}, n = %{x}<br>d = %{z:.4f}<extra></extra>"))
    figure.update_xaxes(title="block size n (layers)")
    figure.update_yaxes(title="first layer l of the block")
    return _style(figure, title, width=720, height=600)


def layer_drop_figure(table: pd.DataFrame, title: str) -> go.Figure:
    """Accuracy (mean over tasks) and text loss vs fraction of layers dropped, l* vs the baseline."""
    from plotly.subplots import make_subplots

    figure = make_subplots(rows=1, cols=2, subplot_titles=("task accuracy (mean over tasks)", "loss on text"))
    colours = ("#0072B2", "#D55E00", "#009E73", "#CC79A7")  # Okabe-Ito: colour-blind safe, one per method
    for index, (method, part) in enumerate(table.groupby("method", sort=True)):
        accuracy = part.groupby("fraction_dropped")["accuracy"].mean().reset_index()
        loss = part.groupby("fraction_dropped")["text_loss"].mean().reset_index()
        line = dict(color=colours[index % len(colours)])
        figure.add_trace(go.Scatter(x=accuracy["fraction_dropped"], y=accuracy["accuracy"], mode="lines+markers",
                                    name=method, legendgroup=method, line=line), row=1, col=1)
        figure.add_trace(go.Scatter(x=loss["fraction_dropped"], y=loss["text_loss"], mode="lines+markers",
                                    name=method, legendgroup=method, showlegend=False, line=line), row=1, col=2)
    figure.update_xaxes(title="fraction of layers dropped")
    figure.update_yaxes(title="accuracy", row=1, col=1)
    figure.update_yaxes(title="nats per token", row=1, col=2)
    return _style(figure, title, width=1100, height=480)


def laser_heatmap_figure(table: pd.DataFrame, matrix: str, title: str) -> go.Figure:
    """Change in mean answer log-loss over (layer, rho) for one matrix; blue = lower loss."""
    part = table[table["matrix"] == matrix]
    grid = part.pivot_table(index="layer", columns="rho", values="loss_delta", aggfunc="mean").sort_index()
    grid = grid[sorted(grid.columns, reverse=True)]
    figure = go.Figure(go.Heatmap(z=grid.to_numpy(), x=[str(value) for value in grid.columns], y=grid.index.to_numpy(),
                                  colorscale=DIVERGING, reversescale=True, zmid=0.0, colorbar=dict(title="loss change"),
                                  hovertemplate="layer %{y}, rho %{x}<br>loss change %{z:.4f}<extra></extra>"))
    figure.update_xaxes(title="rho (share of rank kept)", type="category")
    figure.update_yaxes(title="layer", dtick=1)
    return _style(figure, title, width=720, height=max(420, 24 * len(grid.index) + 160))


def curve_figure(table: pd.DataFrame, x: str, y: str, title: str, group: Sequence[str] = ()) -> go.Figure:
    """One line of ``y`` against ``x`` per combination of the ``group`` columns (pruning curves, sweeps).

    >>> table = pd.DataFrame({"fraction": [0, 0.5, 0, 0.5], "accuracy": [0.8, 0.7, 0.8, 0.4],
    ...                       "component": ["head", "head", "ffn", "ffn"]})
    >>> len(curve_figure(table, "fraction", "accuracy", "pruning", group=["component"]).data)
    2
    """
    for column in (x, y, *group):
        if column not in table.columns:
            raise InterpError(f"curve figure needs a {column!r} column; the table has {list(table.columns)}")
    figure = go.Figure()
    parts = table.groupby(list(group), sort=False) if group else [((), table)]
    for key, part in parts:
        key = key if isinstance(key, tuple) else (key,)
        name = " / ".join(str(value) for value in key) or y
        curve = part.groupby(x, as_index=False)[y].mean().sort_values(x)
        figure.add_trace(go.Scatter(x=curve[x], y=curve[y], mode="lines+markers", name=name,
                                    hovertemplate=name + "<br>" + x + " = %{x}<br>" + y + " = %{y:.4f}<extra></extra>"))
    figure.update_xaxes(title=x.replace("_", " "))
    figure.update_yaxes(title=y.replace("_", " "))
    return _style(figure, title, width=760, height=460)


_RANKING_COLOURS = {"prefix_matching": "#d62728", "copying": "#1f77b4", "own": "#2ca02c"}  # random is grey


def causal_effect_figure(table: pd.DataFrame, y_label: str, title: str, facet_rows: str = "ablation",
                         facet_columns: str = "shots") -> go.Figure:
    """Change vs % of heads removed, one line per ranking (with its 95% interval), random draws as a grey band.

    ``table`` has columns percent, ranking, change, change_ci_low, change_ci_high, random_min,
    random_max, random_mean and the facet columns (rows of ``causal_vs_random``, one task or ``all``).

    >>> rows = pd.DataFrame({"ablation": "zero", "shots": 5, "percent": [1, 10], "ranking": "own",
    ...                      "change": [-0.1, -0.3],
    ...                      "change_ci_low": [-0.2, -0.4], "change_ci_high": [0.0, -0.2], "random_min": [-0.05, -0.1],
    ...                      "random_max": [0.0, 0.0], "random_mean": [-0.02, -0.05]})
    >>> len(causal_effect_figure(rows, "accuracy change", "causal test").data)
    3
    """
    from plotly.subplots import make_subplots

    row_values, column_values = sorted(table[facet_rows].unique()), sorted(table[facet_columns].unique())
    figure = make_subplots(rows=len(row_values), cols=len(column_values), shared_xaxes=True, shared_yaxes=True,
                           subplot_titles=[f"{facet_rows} {row}, {facet_columns} {column}"
                                           for row in row_values for column in column_values])
    for row_index, row_value in enumerate(row_values, start=1):
        for column_index, column_value in enumerate(column_values, start=1):
            panel = table[(table[facet_rows] == row_value)
                          & (table[facet_columns] == column_value)].sort_values("percent")
            first = row_index == 1 and column_index == 1
            band = panel.drop_duplicates("percent")
            figure.add_trace(go.Scatter(x=list(band["percent"]) + list(band["percent"])[::-1],
                                        y=list(band["random_max"]) + list(band["random_min"])[::-1], fill="toself",
                                        mode="lines", line=dict(width=0), fillcolor="rgba(120,120,120,0.25)",
                                        hoverinfo="skip",
                                        name="random (min-max over draws)", showlegend=first, legendgroup="random"),
                             row=row_index, col=column_index)
            figure.add_trace(go.Scatter(x=band["percent"], y=band["random_mean"], mode="lines", name="random (mean)",
                                        line=dict(color="grey", dash="dot"), showlegend=first,
                                        legendgroup="random mean",
                                        hovertemplate="random<br>%{x}% of heads: %{y:.3f}<extra></extra>"),
                             row=row_index, col=column_index)
            for ranking, curve in panel.groupby("ranking", sort=True):
                colour = _RANKING_COLOURS.get(ranking, "black")
                figure.add_trace(go.Scatter(
                    x=curve["percent"], y=curve["change"], mode="lines+markers", name=ranking, legendgroup=ranking,
                    showlegend=first, line=dict(color=colour),
                    error_y=dict(type="data", symmetric=False, array=curve["change_ci_high"] - curve["change"],
                                 arrayminus=curve["change"] - curve["change_ci_low"], color=colour),
                    hovertemplate=ranking + "<br>%{x}% of heads: %{y:.3f}<extra></extra>"), row=row_index,
                                 col=column_index)
    percents = sorted(table["percent"].unique())
    figure.update_xaxes(title="% of heads removed", type="log", tickvals=percents,
                        ticktext=[f"{value:g}" for value in percents],
                        minor=dict(showgrid=False))
    figure.update_yaxes(title=y_label, zeroline=True)
    return _style(figure, title, width=420 * len(column_values) + 200, height=320 * len(row_values) + 120)



def pattern_task_figure(table: pd.DataFrame, title: str) -> go.Figure:
    """Accuracy change per task and removal, the top-k heads beside as many random heads; one panel per k.

    ``table`` holds rows of ``causal_vs_random`` for one ranking and metric (columns task, ablation,
    percent, k, change with its interval, random_mean, random_min, random_max).  Bars of the ranking
    carry their 95% paired interval; bars of the random heads their min-max over draws.  A task-by-task
    view, since on abstract pattern tasks a model may learn one task and sit at chance on the next.

    >>> rows = pd.DataFrame({"task": ["recursion", "topic_sul"], "ablation": "knockout", "percent": 3.0, "k": 8,
    ...                      "change": [-0.2, 0.0], "change_ci_low": [-0.3, -0.1], "change_ci_high": [-0.1, 0.1],
    ...                      "random_mean": [0.0, 0.01], "random_min": [-0.02, 0.0], "random_max": [0.02, 0.03]})
    >>> [trace.name for trace in pattern_task_figure(rows, "knockout").data]
    ['top k% by prefix matching', 'k random heads (bars: min-max over draws)']
    """
    from plotly.subplots import make_subplots

    percents = sorted(table["percent"].unique())
    counts = table.groupby("percent")["k"].first()
    heads = {percent: f"{count} head" if count == 1 else f"{count} heads" for percent, count in counts.items()}
    figure = make_subplots(rows=1, cols=len(percents), shared_yaxes=True,
                           subplot_titles=[f"top {percent:g}% ({heads[percent]})" for percent in percents])
    for column, percent in enumerate(percents, start=1):
        panel = table[table["percent"] == percent].sort_values(["task", "ablation"])
        positions = [list(panel["task"]), list(panel["ablation"])]  # a two-level category axis: task, then removal
        first = column == 1
        figure.add_trace(go.Bar(
            x=positions, y=panel["change"], name="top k% by prefix matching",
            marker_color=_RANKING_COLOURS["prefix_matching"], showlegend=first, legendgroup="top",
            error_y=dict(type="data", symmetric=False, array=panel["change_ci_high"] - panel["change"],
                         arrayminus=panel["change"] - panel["change_ci_low"]),
            hovertemplate="%{x}<br>change %{y:.3f}<extra>top heads</extra>"), row=1, col=column)
        figure.add_trace(go.Bar(
            x=positions, y=panel["random_mean"], name="k random heads (bars: min-max over draws)",
            marker_color="rgba(120,120,120,0.6)", showlegend=first, legendgroup="random",
            error_y=dict(type="data", symmetric=False, array=panel["random_max"] - panel["random_mean"],
                         arrayminus=panel["random_mean"] - panel["random_min"], color="grey"),
            hovertemplate="%{x}<br>mean change %{y:.3f}<extra>random heads</extra>"), row=1, col=column)
    figure.update_layout(barmode="group")
    figure.update_yaxes(title="accuracy change", zeroline=True, row=1, col=1)
    width = 160 + sum(90 * len(table[table["percent"] == percent]) for percent in percents)
    return _style(figure, title, width=max(width, 600), height=460)
