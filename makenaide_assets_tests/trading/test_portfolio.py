"""`portfolio(D)` values what D held, whatever was booked since; a changed past fails its check."""

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from makenaide_assets.resources.io_manager import ParquetIOManager
from makenaide_assets.resources.ledger import TradingLedger
from makenaide_assets.resources.market_data import ReplayMarketData
from makenaide_assets.trading.portfolio import portfolio

DAY, LATER = "2023-12-06", "2023-12-08"


def _book(ledger: TradingLedger, partition: str, side: str, volume: float) -> None:
    identifier = f"mkn-{partition}-KRW-BTC-{side}"
    ledger.record_intent(
        identifier, partition_key=partition, market="KRW-BTC", side=side, broker="paper", ref_price=50_000_000.0,
        krw_amount=None, volume=None, reason="test",
    )  # fmt: skip
    executed = pd.Timestamp(partition) + pd.Timedelta(days=1)
    ledger.record_fill(identifier, price=50_000_000.0, volume=volume, fee=25.0, executed_at=executed)


def _value(tmp_path: Path, ledger: TradingLedger, sample_dir: Path) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [portfolio],
        partition_key=DAY,
        resources={
            "ledger": ledger,
            "market_data": ReplayMarketData(replay_dir=str(sample_dir)),
            "io_manager": ParquetIOManager(base_path=str(tmp_path / "storage")),
        },
        raise_on_error=False,
    )


@pytest.fixture
def ledger(tmp_path: Path) -> TradingLedger:
    return TradingLedger(url=f"sqlite:///{tmp_path / 'ledger.sqlite'}")


def test_a_later_sale_does_not_change_an_earlier_days_portfolio(
    tmp_path: Path, ledger: TradingLedger, sample_dir: Path
) -> None:
    _book(ledger, DAY, "buy", 0.01)
    assert _value(tmp_path, ledger, sample_dir).success
    first = pd.read_parquet(tmp_path / "storage" / "portfolio" / f"{DAY}.parquet")
    _book(ledger, LATER, "sell", 0.01)  # two days later the position is sold
    again = _value(tmp_path, ledger, sample_dir)
    assert again.success
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "storage" / "portfolio" / f"{DAY}.parquet"), first)
    assert first.set_index("market").at["KRW-BTC", "volume"] == 0.01


def test_a_changed_past_fails_the_blocking_equity_check_and_keeps_the_recorded_equity(
    tmp_path: Path, ledger: TradingLedger, sample_dir: Path
) -> None:
    _book(ledger, DAY, "buy", 0.01)
    assert _value(tmp_path, ledger, sample_dir).success
    recorded = ledger.equity_history(None)
    _book(ledger, DAY, "add", 0.01)  # an order booked for D after D was valued: its past changed
    result = _value(tmp_path, ledger, sample_dir)
    assert not result.success
    [check] = [e for e in result.get_asset_check_evaluations() if e.check_name == "portfolio_equity_as_recorded"]
    assert not check.passed and DAY in str(check.metadata["conflict"].value)
    pd.testing.assert_frame_equal(ledger.equity_history(None), recorded)
