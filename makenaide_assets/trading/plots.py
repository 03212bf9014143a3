"""Small PNG plots embedded in asset metadata as markdown, so the UI shows them inline."""

import base64
import io
from types import ModuleType

import pandas as pd

from makenaide_assets.strategy.performance import drawdown


def _pyplot() -> ModuleType:
    """matplotlib on first use: importing it adds ~0.4 s to every load of the definitions."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a server; must precede pyplot
    import matplotlib.pyplot as plt

    return plt


def equity_curve_markdown(equity: pd.DataFrame, title: str, initial_cash_krw: float) -> str:
    """`equity` has partition_key and equity_krw (+ optional benchmark_krw, drawdown_pct); returns an <img> in markdown.

    The drawdown panel is the same series the reports print (`performance.drawdown`)."""
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 4), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    dates = pd.to_datetime(equity["partition_key"])
    top.plot(dates, equity["equity_krw"] / 1e6, label="equity", color="#1f77b4")
    if "benchmark_krw" in equity:
        top.plot(dates, equity["benchmark_krw"] / 1e6, label="buy & hold KRW-BTC", color="#999999", lw=1)
        top.legend(loc="upper left", fontsize=8)
    top.set_ylabel("M KRW")
    top.set_title(title, fontsize=10)
    # A caller whose drawdown is not against a fixed start (deposits) gives its own `drawdown_pct`.
    if "drawdown_pct" in equity:
        under = equity["drawdown_pct"].astype("float64")
    else:
        under = drawdown(equity["equity_krw"].astype("float64"), initial_cash_krw) * 100
    bottom.fill_between(dates, under, 0, color="#d62728", alpha=0.4)
    bottom.set_ylabel("DD %")
    fig.autofmt_xdate()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return f"![{title}](data:image/png;base64,{encoded})"
