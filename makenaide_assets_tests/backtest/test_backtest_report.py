"""`backtest_report` through Dagster on the recorded sample: the fast engine in a sandbox, and the report.

2023-12-05 → 2023-12-08 on the sample: the pipeline's functions buy KRW-DOGE on 12-06 and KRW-ETH
on 12-07 (rules analyst, paper fills), and 12-05 and 12-08 have no signals (test_fast_engine.py
holds the fast engine to the real jobs).
"""

import json
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from makenaide_assets.backtest.asset import BacktestConfig, backtest_report
from makenaide_assets.backtest.runner import MARKER, BacktestSpec, prepare_workdir
from makenaide_assets.resources.io_manager import ParquetIOManager
from makenaide_assets.strategy.ticks import FEE_RATE

START, END = "2023-12-05", "2023-12-08"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dg.ExecuteInProcessResult, Path, Path]:
    root, instance = tmp_path_factory.mktemp("backtest"), dg.DagsterInstance.ephemeral()
    var, workdir = root / "var", root / "sandbox"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MAKENAIDE_VAR", str(var))
        for name in ("MAKENAIDE_STORAGE", "MAKENAIDE_LEDGER_URL", "MAKENAIDE_REPLAY_DIR", "OPENAI_API_KEY"):
            patch.delenv(name, raising=False)
        result = dg.materialize(
            [backtest_report],
            partition_key=END,
            instance=instance,
            resources={"io_manager": ParquetIOManager(base_path=str(root / "outer"))},
            run_config={"ops": {"backtest_report": {"config": {"start": START, "workdir": str(workdir)}}}},
        )
    assert result.success
    # The user's instance saw one run and no `signals`: its sensor has nothing to trade for real.
    assert len(instance.get_runs()) == 1
    assert not instance.fetch_materializations(dg.AssetKey("signals"), limit=1).records
    return result, workdir, var


def metadata(result: dg.ExecuteInProcessResult) -> dict:
    return {k: v.value for k, v in result.asset_materializations_for_node("backtest_report")[0].metadata.items()}


def test_the_backtest_traded_in_the_sandbox_and_nowhere_else(report) -> None:
    _result, workdir, var = report
    days = pd.read_csv(workdir / "days.csv")
    assert days["partition"].tolist() == ["2023-12-05", "2023-12-06", "2023-12-07", "2023-12-08"]
    assert days["analysis_ok"].all() and days["traded"].tolist() == [False, True, True, False]
    orders = pd.read_csv(workdir / "orders.csv")
    bought = orders[orders["partition_key"].isin(["2023-12-06", "2023-12-07"])]
    assert bought["market"].tolist() == ["KRW-DOGE", "KRW-ETH"] and (bought["status"] == "done").all()
    # The user's own ledger and storage were never touched.
    assert not (var / "ledger.sqlite").exists() and not (var / "storage").exists()
    assert json.loads((workdir / MARKER).read_text())["start"] == START


def test_the_report_curve_agrees_with_the_ledger_and_the_benchmark_is_btc(report) -> None:
    result, _workdir, _ = report
    curve = result.asset_value("backtest_report")
    meta = metadata(result)
    assert curve["date"].tolist() == ["2023-12-05", "2023-12-06", "2023-12-07", "2023-12-08"]
    # Every day is valued (a report run on days without signals), so all four are reconciled.
    reconciled = meta["equity_reconciled"]
    assert reconciled.startswith("4 days against the equity the ledger recorded, max difference 0.000000")
    assert curve.loc[0, "equity_krw"] == 10_000_000.0 and curve["open_positions"].tolist() == [0, 1, 2, 2]
    btc = pd.read_csv(
        Path(__file__).resolve().parents[2] / "makenaide_assets/data/upbit_sample/candles/day/KRW-BTC.csv.gz"
    ).set_index("candle_date_time_utc")["trade_price"]
    first, last = btc.filter(like="2023-12-05").iloc[0], btc.filter(like="2023-12-08").iloc[0]
    assert curve["benchmark_krw"].iloc[-1] == pytest.approx(10_000_000.0 / (1 + FEE_RATE) * last / first)
    assert meta["total_return_pct"] == pytest.approx((curve["equity_krw"].iloc[-1] / 1e7 - 1) * 100)
    assert meta["trades"] == 0 and meta["win_rate"] == "nan"  # nothing closed in four days, and it says so


def test_with_too_few_closed_trades_the_configured_inputs_size_every_entry(report) -> None:
    result, _, _ = report
    rows = [record.data for record in metadata(result)["entries"].records]
    sized = ["market", "kelly_source", "kelly_action", "kelly_fraction", "stats_trades"]
    assert [tuple(row[c] for c in sized) for row in rows] == [
        ("KRW-DOGE", "configured", "fallback", 0.0875, 0),
        ("KRW-ETH", "configured", "fallback", 0.0875, 0),
    ]


def test_the_report_carries_its_plots_and_headline_figures(report) -> None:
    meta = metadata(report[0])
    for plot in ("equity_curve", "trade_returns"):
        assert meta[plot].startswith("![") and "data:image/png;base64," in meta[plot]
    assert {"max_drawdown_pct", "sharpe", "exposure_pct", "benchmark_total_return_pct", "profit_factor"} <= set(meta)
    assert meta["range"] == f"{START} → {END} (4 partitions)"


def test_a_folder_that_is_not_a_backtest_is_never_wiped(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    spec = BacktestSpec(start=START, end=END, replay_dir="unused", workdir=precious)
    with pytest.raises(FileExistsError):
        prepare_workdir(precious, spec)
    assert (precious / "notes.txt").read_text() == "keep me"


def test_default_range_is_lookback_days_ending_at_the_partition(isolated_state: Path) -> None:
    spec = BacktestConfig(lookback_days=30).spec("2023-12-31")
    assert (spec.start, spec.end) == ("2023-12-02", "2023-12-31")
    assert spec.workdir == isolated_state / "backtests" / "upbit_sample_2023-12-02_2023-12-31"
    with pytest.raises(dg.Failure):
        BacktestConfig(start="2024-01-01").spec("2023-12-31")
