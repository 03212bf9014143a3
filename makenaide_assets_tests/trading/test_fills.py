"""`fills` materialised with its checks, a stand-in `signals` and the paper broker on the sample."""

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from makenaide_assets.partitions import daily
from makenaide_assets.resources.broker import PaperBroker
from makenaide_assets.resources.io_manager import ParquetIOManager
from makenaide_assets.resources.ledger import TradingLedger
from makenaide_assets.resources.market_data import ReplayMarketData
from makenaide_assets.resources.notifier import Notifier
from makenaide_assets.trading.fills import FILL_COLUMNS, fills

DAY = "2023-07-03"
PREPARED = pd.DataFrame(
    [
        {"market": "KRW-BTC", "side": "buy", "price": 41_000_000.0, "krw_amount": 1_000_000.0, "reason": "vcp"},
        {"market": "KRW-ETH", "side": "buy", "price": 2_500_000.0, "krw_amount": 500_000.0, "reason": "ma200"},
        {"market": "KRW-SC", "side": "sell", "price": 5.0, "volume": 1000.0, "reason": "stop"},
    ]
)


def _run(tmp_path: Path, sample_dir: Path, prepared: pd.DataFrame, **kwargs: object) -> dg.ExecuteInProcessResult:
    @dg.asset(name="signals", partitions_def=daily)
    def stand_in_signals() -> pd.DataFrame:
        return prepared

    ledger = TradingLedger(url=f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    market_data = ReplayMarketData(replay_dir=str(sample_dir))
    return dg.materialize(
        [stand_in_signals, fills],
        partition_key=DAY,
        resources={
            "broker": PaperBroker(ledger=ledger, market_data=market_data),
            "ledger": ledger,
            "market_data": market_data,
            "io_manager": ParquetIOManager(base_path=str(tmp_path / "storage")),
            "notifier": Notifier(),
        },
        **kwargs,  # type: ignore[arg-type]
    )


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def test_fills_materialise_with_passing_checks_and_contract_columns(tmp_path: Path, sample_dir: Path) -> None:
    result = _run(tmp_path, sample_dir, PREPARED)
    assert result.success
    frame = pd.read_parquet(tmp_path / "storage" / "fills" / f"{DAY}.parquet")
    assert set(FILL_COLUMNS) <= set(frame.columns)
    assert frame.set_index("market")["status"].to_dict() == {"KRW-SC": "skipped", "KRW-BTC": "done", "KRW-ETH": "done"}
    assert _checks(result) == {
        "fills_match_the_plan": True,
        "fills_match_signals": True,
        "fills_unique_identifiers": True,
        "fills_fee_rate": True,
        "fills_cash_never_negative": True,
        "fills_none_rejected": True,
        "fills_nothing_unresolved": True,
    }
    [materialization] = [m for m in result.asset_materializations_for_node("fills")]
    meta = materialization.metadata
    assert meta["done_count"].value == 2 and meta["skipped_count"].value == 1
    assert meta["krw_bought"].value == pytest.approx(frame.loc[frame["status"] == "done", "krw_value"].sum())
    assert any("no_position" in str(r.data["status_reason"]) for r in meta["not_executed"].records)


def test_rematerialising_orders_nothing_new_and_still_shows_the_day(tmp_path: Path, sample_dir: Path) -> None:
    _run(tmp_path, sample_dir, PREPARED)
    ledger = TradingLedger(url=f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    cash = ledger.cash_krw(None)
    first = pd.read_parquet(tmp_path / "storage" / "fills" / f"{DAY}.parquet")
    assert _run(tmp_path, sample_dir, PREPARED).success
    second = pd.read_parquet(tmp_path / "storage" / "fills" / f"{DAY}.parquet")
    pd.testing.assert_frame_equal(first[FILL_COLUMNS], second[FILL_COLUMNS])
    assert ledger.cash_krw(None) == cash


def test_changed_signals_of_a_traded_day_order_nothing_and_fail_the_plan_check(
    tmp_path: Path, sample_dir: Path
) -> None:
    _run(tmp_path, sample_dir, PREPARED)
    ledger = TradingLedger(url=f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    orders, cash = ledger.fills_for_partition(DAY), ledger.cash_krw(None)
    # `signals` re-materialised differently after the day was traded (new parameters, say): a new
    # buy and a dropped one. Nothing is ordered; the day's record stays as it was traded.
    changed = pd.concat([PREPARED.iloc[[1]], PREPARED.iloc[[0]].assign(market="KRW-XRP", price=700.0)])
    result = _run(tmp_path, sample_dir, changed, raise_on_error=False)
    assert not result.success  # the blocking check stops the run
    [plan] = [e for e in result.get_asset_check_evaluations() if e.check_name == "fills_match_the_plan"]
    assert not plan.passed and "KRW-XRP" in str(plan.metadata["new_orders_not_placed"].value)
    assert "KRW-BTC" in str(plan.metadata["planned_orders_no_longer_signalled"].value)
    pd.testing.assert_frame_equal(ledger.fills_for_partition(DAY), orders)
    assert ledger.cash_krw(None) == cash
    assert _checks(result)["fills_match_signals"] is False


def test_the_brokers_nested_ledger_and_the_top_level_one_agree_within_a_run(tmp_path: Path, sample_dir: Path) -> None:
    # Dagster initialises the broker's nested ledger apart from the top-level `ledger`: two objects,
    # two engines on one SQLite file in one run. The ledger holds no state but its engine, so a
    # later step reading through the top-level one sees exactly what the broker booked.
    ledger = TradingLedger(url=f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    market_data = ReplayMarketData(replay_dir=str(sample_dir))
    seen: dict[str, object] = {}

    @dg.asset(name="signals", partitions_def=daily)
    def stand_in_signals() -> pd.DataFrame:
        return PREPARED

    @dg.asset(partitions_def=daily, deps=[fills])
    def after_fills(ledger: TradingLedger, broker: PaperBroker) -> None:
        seen.update(
            same_object=ledger is broker.ledger, cash=ledger.cash_krw(None), booked=broker.ledger.cash_krw(None)
        )
        seen["positions"] = sorted(ledger.open_positions(None)["market"])

    result = dg.materialize(
        [stand_in_signals, fills, after_fills],
        partition_key=DAY,
        resources={
            "broker": PaperBroker(ledger=ledger, market_data=market_data),
            "ledger": ledger,
            "market_data": market_data,
            "io_manager": ParquetIOManager(base_path=str(tmp_path / "storage")),
            "notifier": Notifier(),
        },
    )
    assert result.success
    assert seen["same_object"] is False  # the copy this test is about
    frame = pd.read_parquet(tmp_path / "storage" / "fills" / f"{DAY}.parquet")
    done = frame[frame["status"] == "done"]
    assert seen["cash"] == seen["booked"] == pytest.approx(10_000_000 - done["krw_value"].sum() - done["fee"].sum())
    assert seen["positions"] == ["KRW-BTC", "KRW-ETH"]
    [cash_check] = [e for e in result.get_asset_check_evaluations() if e.check_name == "fills_cash_never_negative"]
    assert cash_check.metadata["cash_krw"].value == pytest.approx(seen["cash"])
