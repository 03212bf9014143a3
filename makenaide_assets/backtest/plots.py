"""The backtest's plots as inline PNG markdown (the equity curve reuses the daily report's plot)."""

import base64
import io
from types import ModuleType

import pandas as pd


def _pyplot() -> ModuleType:
    """matplotlib on first use: importing it adds ~0.4 s to every load of the definitions."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a server; must precede pyplot
    import matplotlib.pyplot as plt

    return plt


def trade_returns_markdown(trips: pd.DataFrame, title: str) -> str:
    """One bar per closed trade, in exit order: green made money after fees, red did not."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 2.6))
    if trips.empty:
        ax.text(0.5, 0.5, "no closed trades", ha="center", va="center", transform=ax.transAxes)
    else:
        colors = ["#2ca02c" if r > 0 else "#d62728" for r in trips["return_pct"]]
        ax.bar(range(len(trips)), trips["return_pct"], color=colors)
        ax.axhline(0, color="#333333", lw=0.8)
        step = max(1, len(trips) // 12)
        ax.set_xticks(range(0, len(trips), step))
        ax.set_xticklabels(trips["exit_partition"].iloc[::step], rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("return %")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    return f"![{title}](data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()})"
