"""`portfolio`'s checks and `daily_report`'s check report on a ledger holding what a person must see."""

from pathlib import Path

import dagster as dg
import pandas as pd

from makenaide_assets.resources.check_catalog import CheckCatalog
from makenaide_assets.resources.io_manager import ParquetIOManager
from makenaide_assets.resources.ledger import TradingLedger
from makenaide_assets.resources.market_data import ReplayMarketData
from makenaide_assets.resources.notifier import Notifier
from makenaide_assets.trading.portfolio import portfolio
from makenaide_assets.trading.report import daily_report

DAY, ENTRY_DAY = "2023-12-20", "2023-12-01"
# KRW-LUNA has no candles in the sample (delisted, as far as the replay knows); the ETH position is
# a 0.000001 ETH remnant, worth about 3 KRW: no sell order can ever close it.
HOLDINGS = {"KRW-ETH": (2_800_000.0, 0.000001), "KRW-LUNA": (100.0, 300.0), "KRW-BTC": (50_000_000.0, 0.01)}


def buy(ledger: TradingLedger, market: str, price: float, volume: float) -> None:
    identifier = f"test-{ENTRY_DAY}-{market}"
    ledger.record_intent(identifier, partition_key=ENTRY_DAY, market=market, side="buy", broker="paper",
                         ref_price=price, krw_amount=price * volume, volume=None, reason="test")  # fmt: skip
    ledger.record_fill(identifier, price=price, volume=volume, fee=price * volume * 0.0005,
                       executed_at=pd.Timestamp(f"{ENTRY_DAY} 00:10"))  # fmt: skip


def test_holdings_without_a_close_or_too_small_to_sell_are_named(sample_dir: Path, tmp_path: Path) -> None:
    ledger = TradingLedger(url=f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    for market, (price, volume) in HOLDINGS.items():
        buy(ledger, market, price, volume)
    catalog = CheckCatalog(checks=["portfolio:portfolio_priced_at_close", "portfolio:portfolio_sellable",
                                   "signals:signals_within_cash"])  # fmt: skip
    result = dg.materialize(
        [portfolio, daily_report],
        partition_key=DAY,
        resources={
            "ledger": ledger,
            "market_data": ReplayMarketData(replay_dir=str(sample_dir)),
            "io_manager": ParquetIOManager(base_path=str(tmp_path / "storage")),
            "check_catalog": catalog,
            "notifier": Notifier(),
        },
    )
    assert result.success  # warnings: the report is still written
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    priced, sellable = checks["portfolio_priced_at_close"], checks["portfolio_sellable"]
    assert (priced.passed, priced.severity, priced.metadata["markets"].value) == (
        False, dg.AssetCheckSeverity.WARN, "KRW-LUNA")  # fmt: skip
    assert (sellable.passed, sellable.metadata["markets"].value) == (False, "KRW-ETH")
    assert sellable.metadata["below_minimum"].value.startswith("KRW-ETH: ")

    metadata = result.asset_materializations_for_node("daily_report")[0].metadata
    # signals never ran for the day in this instance: the report says so rather than trusting it.
    assert metadata["can_i_trust_today"].value == (
        "CAUTION: 1 check(s) did not run for this day: signals_within_cash")  # fmt: skip
    rows = {r.data["check"]: list(r.data.values()) for r in metadata["check_report"].records}
    assert rows["portfolio_priced_at_close"][2:4] == ["failed (warning)", "no"]
    assert rows["portfolio_priced_at_close"][4].startswith("markets=KRW-LUNA; count=1; ")
    assert rows["portfolio_sellable"][2:5] == [
        "failed (warning)",
        "no",
        "markets=KRW-ETH; count=1; below_minimum=KRW-ETH: 3 KRW",
    ]
    assert rows["signals_within_cash"][2:] == ["did not run", "", "no run of this day included it", ""]
    assert result.asset_value("daily_report").iloc[0]["checks_failed"] == 0
