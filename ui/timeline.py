"""A small timeline of the dates of the cables behind an answer: cited cables stand out, the rest are grey.

Built with matplotlib's object API on the Agg canvas, never pyplot, because several users' answers are drawn
at once in different threads and pyplot keeps global state.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

from rag.models import Answer

__all__ = ["timeline_figure"]

ACCENT, MUTED, INK = "#2f5fd0", "#b4bccb", "#4a5568"
# A single date, or dates days apart, still get an axis wide enough to read as a span of time.
MIN_SPAN = timedelta(days=60)


def _dates(answer: Answer) -> tuple[dict[str, datetime], dict[str, datetime]]:
    """(cited cables, other retrieved cables), each id → date, undated cables left out."""
    cited_ids = {c.cable_id for c in answer.citations}
    cited: dict[str, datetime] = {}
    other: dict[str, datetime] = {}
    for hit in answer.hits:
        if hit.cable.date is None:
            continue
        # An abstention cites nothing: the nearest cables it lists are what stands behind it.
        target = cited if hit.cable.id in cited_ids or (answer.abstained and len(cited) < 3) else other
        target.setdefault(hit.cable.id, hit.cable.date)
    return cited, {k: v for k, v in other.items() if k not in cited}


def timeline_figure(answer: Answer) -> Figure | None:
    """The figure, or None when no cable behind the answer has a date."""
    cited, other = _dates(answer)
    if not cited and not other:
        return None
    every = [*cited.values(), *other.values()]
    first, last = min(every), max(every)
    pad = max(MIN_SPAN - (last - first), timedelta(0)) / 2 + timedelta(days=20)
    fig = Figure(figsize=(5.0, 1.5), dpi=120, layout="constrained")
    fig.patch.set_alpha(0)
    ax = fig.add_subplot()
    ax.set_facecolor("none")
    ax.axhline(0, color="#d9dee8", linewidth=1, zorder=0)
    if other:
        ax.scatter(list(other.values()), [0] * len(other), s=22, color=MUTED, zorder=2, label="retrieved")
    if cited:
        ax.scatter(list(cited.values()), [0] * len(cited), s=46, color=ACCENT, zorder=3,
                   edgecolor="white", linewidth=1, label="nearest (no answer)" if answer.abstained else "cited")
        for n, (cable_id, when) in enumerate(sorted(cited.items(), key=lambda kv: kv[1])):
            ax.annotate(cable_id, (when, 0), xytext=(0, 9 if n % 2 == 0 else -14), textcoords="offset points",
                        ha="center", fontsize=7.5, color=INK)
    ax.set_xlim(first - pad, last + pad)
    ax.set_ylim(-1.2, 1.4)
    ax.yaxis.set_visible(False)
    locator = AutoDateLocator(minticks=2, maxticks=5)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.tick_params(axis="x", labelsize=7, colors=INK, length=3)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.spines["bottom"].set_color("#d9dee8")
    ax.set_title("When the cables behind the last answer were sent", loc="left", fontsize=8, color=INK, pad=4)
    ax.legend(loc="lower right", bbox_to_anchor=(1, 1), fontsize=7, frameon=False, ncol=2, handletextpad=0.1,
              borderaxespad=0, columnspacing=0.8)
    return fig
