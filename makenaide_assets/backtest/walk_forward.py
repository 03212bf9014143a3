"""Walk-forward evaluation over a parameter grid, through the fast engine.

python -m makenaide_assets.backtest.walk_forward --replay-dir DIR --start 2022-01-01 --end 2025-09-29
    [--train-days 180] [--test-days 90] [--workers 2] [--workdir DIR] [--min-train-trades 1]
    [--grid NAME=V1,V2 ...]

Each window runs every grid cell on its train days (fast engine, in a process pool), picks one on
the train results only (`strategy.walk_forward.choose`: highest total return among cells with at
least `--min-train-trades` closed trades, ties to the shallower drawdown, none: cell 0 = the
defaults), then runs that cell on its test days. Test windows run one after another, each starting
with the cash the previous one ended with (its positions marked at its last close: a test window
starts flat, so a position still open at its end is valued, not sold, and is no trade). Written to
the workdir: windows.csv (one row per window: chosen parameters, out-of-sample figures, buy-and-
hold KRW-BTC over the same days), oos_trades.csv (the test windows' closed trades, the evidence
`KellyEvidence` reads), oos_curve.csv, walk_forward.png, summary.json, train/<window>.csv.

The grid (DEFAULT_GRID) spans issue 15's six axes, two values each, the default first: stop-loss,
trailing ATR multiple, take-profit, minimum confidence and position cap (`signals`' run config)
and the candidate score threshold (`min_score`, `breadth_and_candidates`' run config): 64 cells a
window. A name is routed to the op whose config has it; any other name is refused (`op_of`).
What the cells share, since a cell costs a whole fast-engine run:
- the analysis up to candidates of a day, computed once per process for each min_score and reused by
  every cell and every overlapping window (`shared_analysis.run_shared`);
- the run of an exit variant whose family base (the cell with the same entry parameters and the
  first exit values) bought nothing: the same run, booked without running (`same_as`).
Everything after candidates (verdicts, 4-hour timing, the book, the plan, the stop watch) is per run
inside `FastEngine.analyse`, and it is most of a run on days with candidates.

Why 180 / 90 by default and not the issue's example 180 / 30: measured on this 2-core machine at
load 2-3 (another session busy) with the engine of fde7902, the heaviest train window of the long
recording (2023-09-23 → 2024-03-20, 73 days with candidates at min_score 4) costs 64 runs and 281 s;
the long recording's whole range at 180 / 90 (14 windows: 616 runs, 280 cells booked as copies)
822 s, and 575 s with the engine of cdbbe27. 180 / 30 (40 windows) would be about three times that,
over the ~15 minutes a default run should take here; `--test-days 30` still runs it, and the
Dagster assets run one partition per 30-day window, which a cluster spreads over machines
(walk_forward_asset.py).
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
from pydantic import ValidationError

from makenaide_assets import settings
from makenaide_assets.analysis.candidates import CandidatesConfig
from makenaide_assets.analysis.signals import SignalsConfig
from makenaide_assets.backtest.evaluate import BENCHMARK, BacktestResult, evaluate
from makenaide_assets.backtest.runner import BacktestSpec
from makenaide_assets.backtest.shared_analysis import run_shared
from makenaide_assets.resources.market_data import ReplayMarketData, daily_closes
from makenaide_assets.strategy import performance
from makenaide_assets.strategy.stats import trade_stats
from makenaide_assets.strategy.ticks import FEE_RATE
from makenaide_assets.strategy.walk_forward import Window, choose, grid_cells, windows

# Window lengths of the CLI: why 180 / 90 and not 180 / 30, the module docstring.
TRAIN_DAYS, TEST_DAYS = 180, 90
# The six axes of issue 15, each with the strategy's default first (cell 0 = the defaults); 2^6 = 64
# cells. The alternatives are the ones that change something on the recordings: the rules analyst's
# BUY confidences there are 75-90, so 80 drops some and 60 would drop none; half-Kelly on the
# configured estimates sizes at 8.75 % of equity, so a 5 % cap binds and 20 % would not. The stop
# watch between daily runs watches each cell's own exits (trading/stop_watch.py shared_exits).
DEFAULT_GRID: dict[str, list[float]] = {
    "stop_loss_pct": [0.08, 0.05],
    "trailing_atr_multiple": [3.0, 2.0],
    "take_profit_pct": [0.25, 0.15],
    "min_score": [4, 5],
    "min_confidence": [70.0, 80.0],
    "max_position_fraction": [0.10, 0.05],
}
# Run config held at one value in every cell (none by default: what the grid does not name stays at
# the ops' defaults).
DEFAULT_FIXED: dict[str, float] = {}
# The ops whose run config a cell may set, and the fast engine reproduces: a grid name belongs to the
# op whose config has that field (`min_score`: the candidate score threshold; the rest: `signals`).
CELL_OPS: dict[str, type[CandidatesConfig | SignalsConfig]] = {
    "breadth_and_candidates": CandidatesConfig,
    "signals": SignalsConfig,
}
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
    train_days: int = TRAIN_DAYS
    test_days: int = TEST_DAYS
    grid: Mapping[str, Sequence[float]] = field(default_factory=lambda: dict(DEFAULT_GRID))
    fixed: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_FIXED))
    initial_cash_krw: float = 10_000_000.0
    min_train_trades: int = 1

    def windows(self) -> list[Window]:
        return windows(self.start, self.end, self.train_days, self.test_days)

    def cells(self) -> list[dict[str, Any]]:
        return grid_cells(self.grid)

    def __post_init__(self) -> None:
        # Typed as the ops read them (min_score 5.0 → 5), and refused here, not after hours of runs.
        object.__setattr__(self, "grid", {name: [typed(name, v) for v in values] for name, values in self.grid.items()})
        object.__setattr__(self, "fixed", {name: typed(name, v) for name, v in self.fixed.items()})
        empty = sorted(name for name, values in self.grid.items() if not values)
        if empty:
            raise ValueError(f"grid parameters without a value: {empty}")

    def params(self, cell: int) -> dict[str, Any]:
        """A cell's parameters by name: the fixed values, then the cell's."""
        return {**self.fixed, **self.cells()[cell]}

    def ops_config(self, cell: int) -> dict[str, dict[str, dict[str, Any]]]:
        """A cell's run config for `BacktestSpec.ops_config`: each parameter under the op that reads it."""
        ops: dict[str, dict[str, dict[str, Any]]] = {}
        for name, value in self.params(cell).items():
            ops.setdefault(op_of(name), {"config": {}})["config"][name] = value
        return ops

    def describe(self) -> str:
        grid = ", ".join(f"{k} {list(v)}" for k, v in self.grid.items())
        fixed = ", ".join(f"{k} {v}" for k, v in self.fixed.items()) or "none"
        return (
            f"train {self.train_days} / test {self.test_days} days, {len(self.cells())} cells ({grid}; fixed: {fixed}; "
            "min_score is breadth_and_candidates' config, the rest signals', anything unnamed at its default); "
            f"choice: highest train return with >= {self.min_train_trades} closed trade(s), ties to the shallower "
            "drawdown, else cell 0"
        )


def op_of(name: str) -> str:
    """The op whose run config `name` is; refused clearly when it is neither's."""
    for op, config in CELL_OPS.items():
        if name in config.model_fields:
            return op
    known = "; ".join(f"{op}: {', '.join(config.model_fields)}" for op, config in CELL_OPS.items())
    raise ValueError(f"{name!r} is not run config a grid cell can set ({known})")


def typed(name: str, value: Any) -> Any:
    """`value` as `name`'s op validates it (its type, its bounds); refused in one line when it would not."""
    op = op_of(name)
    try:
        return getattr(CELL_OPS[op](**{name: value}), name)
    except ValidationError as exc:
        raise ValueError(f"{name} {value!r} is refused by the config of {op}: {exc.errors()[0]['msg']}") from None


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
    replay_dir: str, start: str, end: str, workdir: Path, cash: float, ops_config: Mapping[str, Any]
) -> tuple[pd.DataFrame, BacktestResult, float]:
    """One fast-engine run of a cell's run config: its fills, its evaluation, seconds. The analysis up
    to `candidates` comes from this process's cache (`shared_analysis`): the same for every cell with
    the same `min_score`, and for the overlapping days of other windows."""
    spec = BacktestSpec(
        start=start, end=end, replay_dir=replay_dir, workdir=workdir, initial_cash_krw=cash, ops_config=ops_config
    )
    with no_evidence():
        run = run_shared(spec)
    return run.fills(), evaluate(run, ReplayMarketData(replay_dir=replay_dir)), run.seconds


def train_cell(plan: Plan, window: Window, cell: int) -> dict[str, Any]:
    """A grid cell on a window's train days (a process pool task)."""
    workdir = plan.workdir / "runs" / window.key / f"train_{cell:02d}"
    fills, result, seconds = run_cell(
        plan.replay_dir, window.train_start, window.train_end, workdir, plan.initial_cash_krw, plan.ops_config(cell)
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


def exit_families(plan: Plan) -> dict[int, list[int]]:
    """Every cell whose exit parameters hold their first values (a base), with the cells that differ from
    it in exit parameters only: they run after it, and only if it bought (`same_run`)."""
    cells = plan.cells()
    first = {name: values[0] for name, values in plan.grid.items() if name in EXIT_PARAMS}

    def entry_params(cell: int) -> tuple[tuple[str, Any], ...]:
        return tuple((k, v) for k, v in cells[cell].items() if k not in EXIT_PARAMS)

    bases: dict[tuple[tuple[str, Any], ...], int] = {}
    for cell, params in enumerate(cells):
        if all(params[name] == value for name, value in first.items()):
            bases.setdefault(entry_params(cell), cell)
    families: dict[int, list[int]] = {base: [] for base in bases.values()}
    for cell in range(len(cells)):
        base = bases[entry_params(cell)]
        if cell != base:
            families[base].append(cell)
    return families


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
    train/<window>.csv and reported as soon as its last cell is in. The bases of `exit_families` run
    first; the other cells of a family only if their base bought."""
    todo = list(only if only is not None else plan.windows())
    n_cells, families = len(plan.cells()), exit_families(plan)
    (plan.workdir / "train").mkdir(parents=True, exist_ok=True)
    pending: dict[str, list[dict[str, Any]]] = {w.key: [] for w in todo}
    tables: dict[str, pd.DataFrame] = {}

    def finish(row: dict[str, Any]) -> None:
        pending[row["window"]].append(row)
        if len(pending[row["window"]]) == n_cells:
            table = chosen_table(plan, pending.pop(row["window"]))
            table.to_csv(plan.workdir / "train" / f"{row['window']}.csv", index=False)
            tables[row["window"]] = table
            best = table[table["chosen"]].iloc[0]
            ran = int(table["same_as"].isna().sum())
            progress(
                f"train {row['window']}: {len(tables)}/{len(todo)} windows, {ran} runs ({n_cells - ran} cells the same "
                f"run as another), chose cell {best['cell']} ({_params_text(plan.cells()[best['cell']])}): train "
                f"return {best['total_return_pct']:+.2f} %, {best['trades']} trades"
            )

    def done(row: dict[str, Any]) -> list[int]:
        """Book a cell's result; after a base, its family: the copies booked, the cells still to run returned."""
        finish(row)
        to_run = []
        for cell in families.get(row["cell"], []):
            copy = same_run(plan, row, cell)
            if copy is None:
                to_run.append(cell)
            else:
                finish(copy)
        return to_run

    windows_by_key = {w.key: w for w in todo}
    if workers <= 1:
        for window in todo:
            for base in families:
                for cell in done(train_cell(plan, window, base)):
                    finish(train_cell(plan, window, cell))
        return tables
    with ProcessPoolExecutor(max_workers=workers) as pool:
        running = {pool.submit(train_cell, plan, window, base) for window in todo for base in families}
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
            plan.replay_dir, window.test_start, window.test_end, workdir, cash, plan.ops_config(cell)
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


def _grid_arg(text: str) -> tuple[str, list[Any]]:
    name, _, values = text.partition("=")
    if not name or not values:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=V1,V2")
    try:
        return name, [typed(name, float(v)) for v in values.split(",")]
    except ValueError as exc:  # an unknown name, a value that is no number or outside its bounds
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from exc


def _params_text(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in params.items())


def _json_number(value: Any) -> Any:
    return float(value) if hasattr(value, "__float__") else str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m makenaide_assets.backtest.walk_forward", description=__doc__)
    parser.add_argument("--start", required=True, help="first day of the first train window")
    parser.add_argument("--end", required=True, help="last day of the last test window")
    parser.add_argument("--replay-dir", default=None, help="default: MAKENAIDE_REPLAY_DIR or the packaged sample")
    parser.add_argument("--train-days", type=int, default=TRAIN_DAYS)
    parser.add_argument("--test-days", type=int, default=TEST_DAYS, help="also the step from window to window")
    parser.add_argument("--workers", type=int, default=2, help="processes for the train runs")
    parser.add_argument("--min-train-trades", type=int, default=1, help="closed trades a cell needs to be chosen")
    parser.add_argument("--workdir", default=None, help="default: <var>/walk_forward/<recording>_<start>_<end>")
    parser.add_argument(
        "--grid", action="append", default=None, type=_grid_arg, metavar="NAME=V1,V2",
        help="a parameter and its values, repeated; replaces the default grid. min_score is breadth_and_candidates' "
        "config (the candidate score threshold), any other name a field of signals' config",
    )  # fmt: skip
    args = parser.parse_args(argv)
    grid = dict(args.grid) if args.grid else dict(DEFAULT_GRID)
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
