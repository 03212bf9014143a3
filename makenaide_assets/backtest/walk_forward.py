"""Walk-forward evaluation over a parameter grid, through the fast engine.

python -m makenaide_assets.backtest.walk_forward --replay-dir DIR --start 2022-01-01 --end 2025-09-29
    [--train-days 180] [--test-days 30] [--workers 2] [--workdir DIR] [--min-train-trades 1]

Each window runs every grid cell on its train days (fast engine, in a process pool), picks one on
the train results only (`strategy.walk_forward.choose`: highest total return among cells with at
least `--min-train-trades` closed trades, ties to the shallower drawdown, none: cell 0 = the
defaults), then runs that cell on its test days. Test windows run one after another, each starting
with the cash the previous one ended with (its positions marked at its last close: a test window
starts flat, so a position still open at its end is valued, not sold, and is no trade). Written to
the workdir: windows.csv (one row per window: chosen parameters, out-of-sample figures, buy-and-
hold KRW-BTC over the same days), oos_trades.csv (the test windows' closed trades, the evidence
`KellyEvidence` reads), oos_curve.csv, walk_forward.png, summary.json, train/<window>.csv.
"""

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from makenaide_assets import settings
from makenaide_assets.backtest.evaluate import BENCHMARK, BacktestResult, evaluate
from makenaide_assets.backtest.fast import run_fast
from makenaide_assets.backtest.runner import BacktestSpec
from makenaide_assets.resources.market_data import ReplayMarketData, daily_closes
from makenaide_assets.strategy import performance
from makenaide_assets.strategy.stats import trade_stats
from makenaide_assets.strategy.ticks import FEE_RATE
from makenaide_assets.strategy.walk_forward import Window, choose, grid_cells, windows

# Small enough for two cores: 8 cells. The first value of each is the strategy's default (cell 0).
# The stop watch between daily runs watches these same exits (trading/stop_watch.py shared_exits);
# before it did, a `signals` exit looser than the watch's defaults never fired first (every cell of
# 0.08/0.12 × 3/4.5 ATR was the default run).
DEFAULT_GRID: dict[str, list[float]] = {
    "stop_loss_pct": [0.08, 0.05],
    "trailing_atr_multiple": [3.0, 2.0],
    "take_profit_pct": [0.25, 0.15],
}
# Held at the signals defaults. The candidate score threshold (`CandidateParams.min_score`, 4) is not
# run config of `signals`, and the fast engine refuses config of other ops: it stays fixed too.
DEFAULT_FIXED: dict[str, float] = {"min_confidence": 70.0, "max_position_fraction": 0.10}
EVIDENCE_ENV = "MAKENAIDE_KELLY_EVIDENCE"
# `signals` config read only for a held position (strategy/exits.py): a run that never bought is the same run
# whatever their values.
EXIT_PARAMS = {"stop_loss_pct", "trailing_atr_multiple", "trailing_pct", "take_profit_pct", "trend_ma"}
TRAIN_COLUMNS = [
    "window", "cell", "trades", "total_return_pct", "max_drawdown_pct", "sharpe", "win_rate", "profit_factor",
    "exposure_pct", "seconds", "same_as", "chosen",
]  # fmt: skip
TRADE_COLUMNS = [
    "window", "market", "entry_partition", "exit_partition", "executed_at", "kind", "entries", "holding_days",
    "pnl_krw", "return_pct",
]  # fmt: skip


@dataclass(frozen=True)
class Plan:
    replay_dir: str
    start: str
    end: str
    workdir: Path
    train_days: int = 180
    test_days: int = 30
    grid: Mapping[str, Sequence[float]] = field(default_factory=lambda: dict(DEFAULT_GRID))
    fixed: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_FIXED))
    initial_cash_krw: float = 10_000_000.0
    min_train_trades: int = 1

    def windows(self) -> list[Window]:
        return windows(self.start, self.end, self.train_days, self.test_days)

    def cells(self) -> list[dict[str, Any]]:
        return grid_cells(self.grid)

    def params(self, cell: int) -> dict[str, Any]:
        """`signals` run config of a cell: the fixed values, then the cell's."""
        return {**self.fixed, **self.cells()[cell]}

    def describe(self) -> str:
        grid = ", ".join(f"{k} {list(v)}" for k, v in self.grid.items())
        fixed = ", ".join(f"{k} {v}" for k, v in self.fixed.items())
        return (
            f"train {self.train_days} / test {self.test_days} days, {len(self.cells())} cells ({grid}; fixed: {fixed}, "
            "the rest at the signals defaults, candidate min_score 4); choice: highest train return with >= "
            f"{self.min_train_trades} closed trade(s), ties to the shallower drawdown, else cell 0"
        )


@contextmanager
def no_evidence() -> Iterator[None]:
    """The walk-forward's own runs size from their own ledger: evidence from an earlier walk-forward
    (MAKENAIDE_KELLY_EVIDENCE) would feed its results back into the runs that produce them."""
    saved = os.environ.pop(EVIDENCE_ENV, None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ[EVIDENCE_ENV] = saved


def run_cell(
    replay_dir: str, start: str, end: str, workdir: Path, cash: float, params: Mapping[str, Any]
) -> tuple[pd.DataFrame, BacktestResult, float]:
    """One fast-engine run with `params` as `signals` config: its fills, its evaluation, seconds."""
    spec = BacktestSpec(
        start=start, end=end, replay_dir=replay_dir, workdir=workdir, initial_cash_krw=cash,
        ops_config={"signals": {"config": dict(params)}},
    )  # fmt: skip
    with no_evidence():
        run = run_fast(spec)
    return run.fills(), evaluate(run, ReplayMarketData(replay_dir=replay_dir)), run.seconds


def train_cell(plan: Plan, window: Window, cell: int) -> dict[str, Any]:
    """A grid cell on a window's train days (a process pool task)."""
    workdir = plan.workdir / "runs" / window.key / f"train_{cell:02d}"
    fills, result, seconds = run_cell(
        plan.replay_dir, window.train_start, window.train_end, workdir, plan.initial_cash_krw, plan.params(cell)
    )
    stats, mine = result.trade_stats, result.strategy
    return {
        "window": window.key, "cell": cell, "trades": stats.trades, "total_return_pct": mine["total_return_pct"],
        "max_drawdown_pct": mine["max_drawdown_pct"], "sharpe": mine["sharpe"], "win_rate": stats.win_rate,
        "profit_factor": stats.profit_factor, "exposure_pct": mine["exposure_pct"], "seconds": seconds,
        "bought": int(fills["side"].isin(["buy", "add"]).sum()), "same_as": None,
    }  # fmt: skip


def same_run(plan: Plan, row: dict[str, Any], cell: int) -> dict[str, Any] | None:
    """Cell `cell`'s train result without running it, when it cannot differ from `row`'s: `row` bought
    nothing and the cells differ only in exit parameters, which nothing but a held position consults."""
    cells = plan.cells()
    differ = {k for k in cells[cell] if cells[cell][k] != cells[row["cell"]][k]}
    if row["bought"] or not differ <= EXIT_PARAMS:
        return None
    return {**row, "cell": cell, "seconds": 0.0, "same_as": row["cell"]}


def chosen_table(plan: Plan, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """A window's train results, one row per cell with its parameters, the choice marked."""
    train = pd.DataFrame(rows).sort_values("cell", ignore_index=True)
    train["chosen"] = train["cell"] == choose(train, plan.min_train_trades)
    params = pd.DataFrame([plan.cells()[c] for c in train["cell"]])
    return pd.concat([train[TRAIN_COLUMNS], params], axis=1)


def train_windows(
    plan: Plan, workers: int, progress: Callable[[str], None], only: Sequence[Window] | None = None
) -> dict[str, pd.DataFrame]:
    """Every (window, cell) on the train days, `workers` at a time; a window's table is written to
    train/<window>.csv and reported as soon as its last cell is in."""
    todo = list(only if only is not None else plan.windows())
    cells = list(range(len(plan.cells())))
    (plan.workdir / "train").mkdir(parents=True, exist_ok=True)
    pending = {w.key: [] for w in todo}
    tables: dict[str, pd.DataFrame] = {}

    def finish(row: dict[str, Any]) -> None:
        pending[row["window"]].append(row)
        if len(pending[row["window"]]) == len(cells):
            table = chosen_table(plan, pending.pop(row["window"]))
            table.to_csv(plan.workdir / "train" / f"{row['window']}.csv", index=False)
            tables[row["window"]] = table
            best = table[table["chosen"]].iloc[0]
            progress(
                f"train {row['window']}: {len(tables)}/{len(todo)} windows, chose cell {best['cell']} "
                f"({_params_text(plan.cells()[best['cell']])}): train return {best['total_return_pct']:+.2f} %, "
                f"{best['trades']} trades"
            )

    def done(row: dict[str, Any]) -> list[int]:
        """Book a cell's result; after cell 0, the window's other cells: those still to run."""
        finish(row)
        if row["cell"] != 0:
            return []
        copies = [same_run(plan, row, cell) for cell in cells[1:]]
        for copy in copies:
            if copy is not None:
                finish(copy)
        return [cell for cell, copy in zip(cells[1:], copies, strict=True) if copy is None]

    windows_by_key = {w.key: w for w in todo}
    if workers <= 1:
        for window in todo:
            for cell in done(train_cell(plan, window, 0)):
                finish(train_cell(plan, window, cell))
        return tables
    # Cell 0 of every window first: a window that bought nothing needs no other exit-parameter cell.
    with ProcessPoolExecutor(max_workers=workers) as pool:
        running = {pool.submit(train_cell, plan, window, 0) for window in todo}
        while running:
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                row = future.result()
                for cell in done(row):
                    running.add(pool.submit(train_cell, plan, windows_by_key[row["window"]], cell))
    return tables


def out_of_sample(
    plan: Plan,
    choices: Mapping[str, int],
    progress: Callable[[str], None],
    only: Sequence[Window] | None = None,
) -> dict[str, pd.DataFrame]:
    """The chosen cells on their test days, chained: each window starts with the previous one's final equity."""
    cash, rows, curves, trades = plan.initial_cash_krw, [], [], []
    for window in only if only is not None else plan.windows():
        if window.key not in choices:
            raise ValueError(f"window {window.key} has no train result: train it first")
        cell = choices[window.key]
        workdir = plan.workdir / "runs" / window.key / "test"
        fills, result, seconds = run_cell(
            plan.replay_dir, window.test_start, window.test_end, workdir, cash, plan.params(cell)
        )
        stats, mine, bench = result.trade_stats, result.strategy, result.benchmark
        rows.append({
            "window": window.key, "train_start": window.train_start, "train_end": window.train_end,
            "test_start": window.test_start, "test_end": window.test_end, "cell": cell, **plan.cells()[cell],
            "start_equity_krw": cash, "end_equity_krw": mine["final_equity_krw"],
            "return_pct": mine["total_return_pct"], "benchmark_return_pct": bench["total_return_pct"],
            "trades": stats.trades, "win_rate": stats.win_rate, "profit_factor": stats.profit_factor,
            "max_drawdown_pct": mine["max_drawdown_pct"], "benchmark_max_drawdown_pct": bench["max_drawdown_pct"],
            "sharpe": mine["sharpe"], "exposure_pct": mine["exposure_pct"], "seconds": seconds,
        })  # fmt: skip
        curves.append(result.curve[list(performance.CURVE_COLUMNS)].assign(window=window.key))
        trades.append(_trades_of(window, result.trips, fills))
        progress(
            f"test {window.test_start} → {window.test_end}: cell {cell} ({_params_text(plan.cells()[cell])}), "
            f"{mine['total_return_pct']:+.2f} % (buy & hold {BENCHMARK} {bench['total_return_pct']:+.2f} %), "
            f"{stats.trades} trades, equity {mine['final_equity_krw']:,.0f} KRW"
        )
        cash = mine["final_equity_krw"]
    return {
        "windows": pd.DataFrame(rows),
        "curve": pd.concat(curves, ignore_index=True),
        "trades": pd.concat(trades, ignore_index=True) if trades else pd.DataFrame(columns=TRADE_COLUMNS),
    }


def _trades_of(window: Window, trips: pd.DataFrame, fills: pd.DataFrame) -> pd.DataFrame:
    """The window's round trips with the instant each closed (the sell's fill), which the Kelly
    evidence filters on: only what had closed before D may size D."""
    sells = fills.loc[fills["side"] == "sell", ["market", "partition_key", "executed_at", "kind"]]
    sells = sells.rename(columns={"partition_key": "exit_partition"})
    closed = trips.merge(sells, on=["market", "exit_partition"], how="left", validate="one_to_one")
    return closed.assign(window=window.key)[TRADE_COLUMNS]


def report(plan: Plan, tested: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """Overall figures of the chained test windows against buy-and-hold KRW-BTC from the first test day;
    writes windows.csv, oos_trades.csv, oos_curve.csv, walk_forward.png and summary.json."""
    cash, curve, trips = plan.initial_cash_krw, tested["curve"].copy(), tested["trades"]
    first, last = curve["date"].iloc[0], curve["date"].iloc[-1]
    closes = daily_closes(ReplayMarketData(replay_dir=plan.replay_dir), [BENCHMARK], first, last)
    curve["benchmark_krw"] = performance.buy_and_hold(closes[BENCHMARK], cash, FEE_RATE).to_numpy()
    curve["drawdown_pct"] = performance.drawdown(curve["equity_krw"], cash).to_numpy() * 100
    bench = curve[["date", "benchmark_krw"]].rename(columns={"benchmark_krw": "equity_krw"}).dropna()
    stats = trade_stats(trips["pnl_krw"].astype(float), trips["return_pct"].astype(float) / 100)
    summary = {
        "replay_dir": plan.replay_dir, "range": f"{plan.start} → {plan.end}", "out_of_sample": f"{first} → {last}",
        "windows": len(tested["windows"]), "plan": plan.describe(),
        "strategy": performance.summarise(curve, cash),
        "benchmark": performance.summarise(bench.assign(exposure=1.0), cash),
        "trades": stats.as_dict(),
        "chosen_cells": tested["windows"]["cell"].value_counts().sort_index().to_dict(),
    }  # fmt: skip
    out = plan.workdir
    tested["windows"].to_csv(out / "windows.csv", index=False)
    trips.to_csv(out / "oos_trades.csv", index=False)
    curve.to_csv(out / "oos_curve.csv", index=False)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=_json_number))
    plot(curve, tested["windows"], f"walk-forward out of sample, {first} → {last}", out / "walk_forward.png")
    return summary


def plot(curve: pd.DataFrame, windows_: pd.DataFrame, title: str, path: Path) -> None:
    """Out-of-sample equity against buy-and-hold, test windows marked, drawdown below."""
    from makenaide_assets.backtest.plots import _pyplot

    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    dates = pd.to_datetime(curve["date"])
    top.plot(dates, curve["equity_krw"] / 1e6, label="walk-forward (out of sample)", color="#1f77b4")
    top.plot(dates, curve["benchmark_krw"] / 1e6, label=f"buy & hold {BENCHMARK}", color="#999999", lw=1)
    for start in pd.to_datetime(windows_["test_start"]):
        top.axvline(start, color="#dddddd", lw=0.6, zorder=0)
    top.set_ylabel("M KRW")
    top.set_title(title, fontsize=10)
    top.legend(loc="upper left", fontsize=8)
    bottom.fill_between(dates, curve["drawdown_pct"], 0, color="#d62728", alpha=0.4)
    bottom.set_ylabel("DD %")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run_walk_forward(plan: Plan, workers: int = 2, progress: Callable[[str], None] = print) -> dict[str, Any]:
    started = time.monotonic()
    plan.workdir.mkdir(parents=True, exist_ok=True)
    tables = train_windows(plan, workers, progress)
    choices = {key: int(t.loc[t["chosen"], "cell"].iloc[0]) for key, t in tables.items()}
    summary = report(plan, out_of_sample(plan, choices, progress))
    summary["seconds"] = time.monotonic() - started
    (plan.workdir / "summary.json").write_text(json.dumps(summary, indent=2, default=_json_number))
    return summary


def _grid_arg(text: str) -> tuple[str, list[float]]:
    name, _, values = text.partition("=")
    if not name or not values:
        raise argparse.ArgumentTypeError(f"--grid {text!r}: expected NAME=V1,V2")
    return name, [float(v) for v in values.split(",")]


def _params_text(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in params.items())


def _json_number(value: Any) -> Any:
    return float(value) if hasattr(value, "__float__") else str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m makenaide_assets.backtest.walk_forward", description=__doc__)
    parser.add_argument("--start", required=True, help="first day of the first train window")
    parser.add_argument("--end", required=True, help="last day of the last test window")
    parser.add_argument("--replay-dir", default=None, help="default: MAKENAIDE_REPLAY_DIR or the packaged sample")
    parser.add_argument("--train-days", type=int, default=180)
    parser.add_argument("--test-days", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2, help="processes for the train runs")
    parser.add_argument("--min-train-trades", type=int, default=1, help="closed trades a cell needs to be chosen")
    parser.add_argument("--workdir", default=None, help="default: <var>/walk_forward/<recording>_<start>_<end>")
    parser.add_argument(
        "--grid", action="append", default=None, metavar="NAME=V1,V2",
        help="a signals parameter and its values, repeated; replaces the default grid",
    )  # fmt: skip
    args = parser.parse_args(argv)
    grid = dict(_grid_arg(text) for text in args.grid) if args.grid else dict(DEFAULT_GRID)
    replay = args.replay_dir or settings.replay_dir()
    default = settings.var_dir() / "walk_forward" / f"{Path(replay).name}_{args.start}_{args.end}"
    plan = Plan(
        replay_dir=replay, start=args.start, end=args.end, workdir=Path(args.workdir or default),
        train_days=args.train_days, test_days=args.test_days, min_train_trades=args.min_train_trades, grid=grid,
    )  # fmt: skip
    print(f"walk-forward {plan.start} → {plan.end} on {replay}: {len(plan.windows())} windows; {plan.describe()}")
    summary = run_walk_forward(plan, args.workers, progress=lambda line: print(line, flush=True))
    mine, bench, trades = summary["strategy"], summary["benchmark"], summary["trades"]
    print(
        f"\nout of sample {summary['out_of_sample']}: {mine['total_return_pct']:+.2f} % "
        f"(buy & hold {BENCHMARK} {bench['total_return_pct']:+.2f} %), max drawdown {mine['max_drawdown_pct']:.2f} % "
        f"({bench['max_drawdown_pct']:.2f} %), Sharpe {mine['sharpe']:.2f} ({bench['sharpe']:.2f}), "
        f"exposure {mine['exposure_pct']:.1f} %, {trades['trades']} trades, win rate {trades['win_rate']:.1%}, "
        f"profit factor {trades['profit_factor']:.2f}; {summary['seconds']:.0f} s"
    )
    print(f"results in {plan.workdir}: windows.csv, oos_trades.csv, oos_curve.csv, walk_forward.png, summary.json")
    return 0


if __name__ == "__main__":
    # Through the package module, so the pool's tasks pickle as makenaide_assets.backtest.walk_forward.*.
    from makenaide_assets.backtest import walk_forward

    sys.exit(walk_forward.main())
