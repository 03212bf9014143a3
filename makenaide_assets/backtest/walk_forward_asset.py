"""Walk-forward evaluation as Dagster runs: one `walk_forward_window` partition per window, one report.

`walk_forward_window` is partitioned by the first day of its test window (a fixed 30-day grid from
2022-06-30, the first day 180 days of partitions can train for), so a backfill of its partitions
is one run per window: the queued run coordinator and a cluster run launcher (dagster-k8s, or
dagster-aws's ECS launcher, docs/production.md) spread them over machines. Each trains the grid
on its window (`walk_forward.train_windows`: the CLI's grid, DEFAULT_GRID's 64 cells unless `grid`
names others, its cells sharing the analysis up to candidates inside each of the run's processes)
and writes its table to `<workdir>/train/`;
`walk_forward_report` then runs the chosen cells on the test windows one after another (each
starts with the previous window's equity: that part cannot be parallel, and it is the cheap one)
and writes what the CLI writes. The workdir must be shared by the runs (a volume or EFS on a cluster).
"""

import itertools
from pathlib import Path

import dagster as dg
import pandas as pd
from pydantic import Field

from makenaide_assets import settings
from makenaide_assets.backtest.walk_forward import DEFAULT_GRID, Plan, out_of_sample, report, train_windows
from makenaide_assets.market.metadata import preview
from makenaide_assets.partitions import recording_days
from makenaide_assets.strategy.walk_forward import Window, window_at

GRID_START, GRID_STEP_DAYS, GRID_END = "2022-06-30", 30, "2026-12-31"
windows_partitions = dg.StaticPartitionsDefinition(
    pd.date_range(GRID_START, GRID_END, freq=f"{GRID_STEP_DAYS}D").strftime("%Y-%m-%d").tolist()
)


class WalkForwardConfig(dg.Config):
    replay_dir: str | None = Field(None, description="replay directory; default MAKENAIDE_REPLAY_DIR or the sample")
    end: str | None = Field(None, description="last day a test window may reach; default the recording's last day")
    train_days: int = Field(180, ge=1)
    test_days: int = Field(GRID_STEP_DAYS, ge=1, description="keep it the partitions' step, or windows overlap")
    min_train_trades: int = Field(1, ge=0, description="closed trades a cell needs on the train window to be chosen")
    grid: dict[str, list[float]] | None = Field(
        None,
        description="parameters and their values, as the CLI's --grid: min_score (breadth_and_candidates' config) "
        "or any field of signals' config; default DEFAULT_GRID (the six axes, 64 cells)",
    )
    workers: int = Field(1, ge=1, description="processes for one window's grid (a cluster run: its pod's cores)")
    workdir: str | None = Field(None, description="shared folder; default <var>/walk_forward/<replay>_<train>_<test>")

    def plan(self) -> Plan:
        replay = self.replay_dir or settings.replay_dir()
        end = self.end or (recording_days(Path(replay)) or (None, None))[1]
        if end is None:
            raise dg.Failure(f"{replay} holds no daily candles")
        name = f"{Path(replay).name}_{self.train_days}_{self.test_days}"
        workdir = Path(self.workdir) if self.workdir else settings.var_dir() / "walk_forward" / name
        try:
            return Plan(
                replay_dir=replay, start=GRID_START, end=end, workdir=workdir, train_days=self.train_days,
                test_days=self.test_days, grid=dict(self.grid or DEFAULT_GRID), min_train_trades=self.min_train_trades,
            )  # fmt: skip
        except ValueError as exc:  # a name no op's config has, a value its config refuses
            raise dg.Failure(f"walk-forward grid: {exc}") from exc


@dg.asset(partitions_def=windows_partitions, group_name="backtest", kinds={"pandas"})
def walk_forward_window(context: dg.AssetExecutionContext, config: WalkForwardConfig) -> dg.MaterializeResult:
    """The parameter grid on one walk-forward train window (fast engine), and the cell chosen for its test window."""
    plan = config.plan()
    if context.partition_key > plan.end:
        raise dg.Failure(f"window {context.partition_key} starts after the recording's last day {plan.end}")
    window = window_at(context.partition_key, plan.end, plan.train_days, plan.test_days)
    table = train_windows(plan, config.workers, context.log.info, only=[window])[window.key]
    chosen = table[table["chosen"]].iloc[0]
    return dg.MaterializeResult(
        value=table,
        metadata={
            "train": f"{window.train_start} → {window.train_end}",
            "test": f"{window.test_start} → {window.test_end}",
            "chosen": dg.MetadataValue.json({k: float(chosen[k]) for k in plan.grid}),
            "plan": plan.describe(),
            "cells": preview(table, rows=50),
            "workdir": str(plan.workdir),
        },
    )


@dg.asset(deps=[walk_forward_window], group_name="backtest", kinds={"pandas"})
def walk_forward_report(context: dg.AssetExecutionContext, config: WalkForwardConfig) -> dg.MaterializeResult:
    """The trained windows' chosen cells on their test windows, chained, against buy-and-hold KRW-BTC."""
    plan = config.plan()
    tables = {path.stem: pd.read_csv(path) for path in sorted((plan.workdir / "train").glob("*.csv"))}
    if not tables:
        raise dg.Failure(f"no trained window in {plan.workdir / 'train'}: materialise walk_forward_window first")
    windows = [window_at(key, plan.end, plan.train_days, plan.test_days) for key in tables]
    gaps = _gaps(windows)
    if gaps:
        raise dg.Failure(f"the test windows do not follow each other: {gaps}; train the missing windows")
    choices = {key: int(t.loc[t["chosen"], "cell"].iloc[0]) for key, t in tables.items()}
    tested = out_of_sample(plan, choices, context.log.info, only=windows)
    summary = report(plan, tested)
    mine, bench = summary["strategy"], summary["benchmark"]
    return dg.MaterializeResult(
        value=tested["windows"],
        metadata={
            "out_of_sample": summary["out_of_sample"],
            "windows": dg.MetadataValue.int(len(windows)),
            "total_return_pct": dg.MetadataValue.float(round(mine["total_return_pct"], 2)),
            "benchmark_total_return_pct": dg.MetadataValue.float(round(bench["total_return_pct"], 2)),
            "max_drawdown_pct": dg.MetadataValue.float(round(mine["max_drawdown_pct"], 2)),
            "trades": dg.MetadataValue.int(int(summary["trades"]["trades"])),
            "per_window": preview(tested["windows"], rows=100),
            "plot": dg.MetadataValue.path(str(plan.workdir / "walk_forward.png")),
            "kelly_evidence": dg.MetadataValue.path(str(plan.workdir / "oos_trades.csv")),
        },
    )


def _gaps(windows: list[Window]) -> list[str]:
    """Test windows that do not start the day after the previous one ended."""
    out = []
    for before, after in itertools.pairwise(windows):
        if pd.Timestamp(after.test_start) != pd.Timestamp(before.test_end) + pd.Timedelta(days=1):
            out.append(f"{before.test_end} → {after.test_start}")
    return out
