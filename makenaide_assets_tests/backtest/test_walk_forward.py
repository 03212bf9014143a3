"""Walk-forward evaluation on the long recording through the fast engine: the CLI's library and the
Dagster assets, over 2024-01-28 → 2024-04-30 (30-day windows, a KRW-DOGE entry on 2024-03-28)."""

import json
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from makenaide_assets.backtest import walk_forward_asset
from makenaide_assets.backtest.runner import MARKER
from makenaide_assets.backtest.walk_forward import Plan, run_walk_forward
from makenaide_assets.resources.io_manager import ParquetIOManager
from makenaide_assets.strategy.walk_forward import choose
from makenaide_assets_tests.conftest import SHARED_DATA

GRID = {"stop_loss_pct": [0.08, 0.12]}


@pytest.fixture(scope="module")
def walked(tmp_path_factory: pytest.TempPathFactory) -> tuple[Plan, dict]:
    plan = Plan(
        replay_dir=str(SHARED_DATA / "upbit-long"), start="2024-01-28", end="2024-04-30", train_days=30, test_days=30,
        workdir=tmp_path_factory.mktemp("wf"), grid=GRID,
    )  # fmt: skip
    lines: list[str] = []
    return plan, run_walk_forward(plan, workers=2, progress=lines.append) | {"lines": lines}


def test_the_test_windows_chain_and_each_choice_sees_its_train_window_only(walked: tuple[Plan, dict]) -> None:
    plan, summary = walked
    windows = pd.read_csv(plan.workdir / "windows.csv")
    assert windows["test_start"].tolist() == ["2024-02-27", "2024-03-28", "2024-04-27"]
    assert windows["start_equity_krw"].iloc[0] == plan.initial_cash_krw
    assert windows["start_equity_krw"].iloc[1:].tolist() == windows["end_equity_krw"].iloc[:-1].tolist()
    for row in windows.itertuples():
        train = pd.read_csv(plan.workdir / "train" / f"{row.window}.csv")
        chosen = train.loc[train["chosen"], "cell"].iloc[0]
        assert len(train) == 2 and row.cell == choose(train, plan.min_train_trades) == chosen
        assert row.train_end < row.test_start
    curve = pd.read_csv(plan.workdir / "oos_curve.csv")
    assert curve["date"].iloc[0] == "2024-02-27" and curve["date"].iloc[-1] == "2024-04-30"
    assert curve["equity_krw"].iloc[-1] == pytest.approx(summary["strategy"]["final_equity_krw"])
    assert summary["benchmark"]["total_return_pct"] == pytest.approx(
        curve["benchmark_krw"].iloc[-1] / plan.initial_cash_krw * 100 - 100
    )
    assert (plan.workdir / "walk_forward.png").stat().st_size > 1000
    assert sum(line.startswith("train ") for line in summary["lines"]) == 3
    assert sum(line.startswith("test ") for line in summary["lines"]) == 3


def test_out_of_sample_trades_closed_inside_their_test_window(walked: tuple[Plan, dict]) -> None:
    plan, summary = walked
    trades = pd.read_csv(plan.workdir / "oos_trades.csv")
    windows = pd.read_csv(plan.workdir / "windows.csv").set_index("window")
    assert len(trades) == summary["trades"]["trades"] == windows["trades"].sum() >= 1
    for trade in trades.itertuples():
        window = windows.loc[trade.window]
        assert window["test_start"] <= trade.entry_partition <= trade.exit_partition <= window["test_end"]
        assert pd.Timestamp(trade.executed_at) > pd.Timestamp(trade.exit_partition)


def test_the_dagster_assets_train_one_window_per_partition_and_chain_them(long_dir: Path, tmp_path: Path) -> None:
    # The CLI's grid names, min_score (breadth_and_candidates' config) among them.
    config = {"replay_dir": str(long_dir), "end": "2024-04-30", "train_days": 30, "grid": {"min_score": [4.0, 5.0]}}
    config["workdir"] = str(tmp_path)
    # Partitions: test-window starts every 30 days from 2022-06-30.
    keys = [k for k in walk_forward_asset.windows_partitions.get_partition_keys() if "2024-02-01" <= k <= "2024-03-31"]
    assert keys == ["2024-02-20", "2024-03-21"]
    resources = {"io_manager": ParquetIOManager(base_path=str(tmp_path / "storage"))}
    run_config = {"ops": {"walk_forward_window": {"config": config}}}
    for key in keys:
        result = dg.materialize([walk_forward_asset.walk_forward_window], partition_key=key, resources=resources,
                                run_config=run_config)  # fmt: skip
        table = result.asset_value("walk_forward_window")
        assert table["min_score"].tolist() == [4, 5]
        recipe = json.loads((tmp_path / "runs" / key / "train_01" / MARKER).read_text())
        assert recipe["ops"] == {"breadth_and_candidates": {"config": {"min_score": 5}}}
    report = dg.materialize(
        [walk_forward_asset.walk_forward_window, walk_forward_asset.walk_forward_report],
        selection=[walk_forward_asset.walk_forward_report.key],
        resources=resources,
        run_config={"ops": {"walk_forward_report": {"config": config}}},
    )
    windows = report.asset_value("walk_forward_report")
    assert windows["test_start"].tolist() == keys and windows["test_end"].tolist() == ["2024-03-20", "2024-04-19"]
    assert (tmp_path / "oos_trades.csv").is_file() and (tmp_path / "walk_forward.png").is_file()
