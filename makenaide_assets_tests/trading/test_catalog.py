"""The trading side's catalog: row count, column schema, tables, numbers rounded for a person, owners
and code versions; the equity and buy-and-hold KRW-BTC plotted per partition; returns net of deposits."""

import math
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest

from makenaide_assets.partitions import daily
from makenaide_assets.resources.broker import PaperBroker
from makenaide_assets.resources.check_catalog import CheckCatalog
from makenaide_assets.resources.io_manager import ParquetIOManager
from makenaide_assets.resources.ledger import TradingLedger
from makenaide_assets.resources.market_data import ReplayMarketData, daily_closes
from makenaide_assets.resources.notifier import Notifier
from makenaide_assets.strategy.reconcile import Adjustment
from makenaide_assets.strategy.ticks import FEE_RATE
from makenaide_assets.trading.fills import FILL_COLUMNS, fills
from makenaide_assets.trading.portfolio import PORTFOLIO_COLUMNS, portfolio
from makenaide_assets.trading.report import daily_report, growth_index

D1, D2, D3 = "2023-12-04", "2023-12-05", "2023-12-06"
SIGNALS = pd.DataFrame(
    [{"market": "KRW-BTC", "side": "buy", "price": 55_000_000.0, "krw_amount": 1_000_000.0, "reason": "vcp"}]
)
CHECKS = ["fills:fills_match_signals", "portfolio:portfolio_sellable", "portfolio:portfolio_equity_as_recorded"]


@dg.asset(name="signals", partitions_def=daily)
def stand_in_signals() -> pd.DataFrame:
    return SIGNALS


def resources(tmp_path: Path, sample_dir: Path, ledger: TradingLedger) -> dict[str, Any]:
    market_data = ReplayMarketData(replay_dir=str(sample_dir))
    return {
        "broker": PaperBroker(ledger=ledger, market_data=market_data),
        "ledger": ledger,
        "market_data": market_data,
        "io_manager": ParquetIOManager(base_path=str(tmp_path / "storage")),
        "check_catalog": CheckCatalog(checks=CHECKS),
        "notifier": Notifier(),
    }


def metadata_of(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, Any]:
    return dict(result.asset_materializations_for_node(asset)[0].metadata)


def readable(value: float) -> bool:
    """Rounded for a person: at most 2 decimals, or at most 4 significant digits."""
    return not math.isfinite(value) or value == round(value, 2) or value == float(f"{value:.4g}")


def unreadable_floats(metadata: dict[str, Any]) -> list[str]:
    """Every float of the metadata, table cells included, a person would not want to read."""
    bad = []
    for key, entry in metadata.items():
        if isinstance(entry, dg.FloatMetadataValue) and not readable(entry.value):
            bad.append(f"{key}={entry.value}")
        if isinstance(entry, dg.TableMetadataValue):
            for record in entry.records:
                # Coin volumes keep Upbit's 8 decimals: they are what the exchange shows.
                cells = {c: v for c, v in record.data.items() if "volume" not in c and isinstance(v, float)}
                bad += [f"{key}.{c}={v}" for c, v in cells.items() if not readable(v)]
    return bad


def closes(sample_dir: Path, start: str, end: str) -> pd.Series:
    return daily_closes(ReplayMarketData(replay_dir=str(sample_dir)), ["KRW-BTC"], start, end)["KRW-BTC"]


def test_trading_assets_carry_the_catalog_tables_and_rounded_numbers(tmp_path: Path, sample_dir: Path) -> None:
    ledger = TradingLedger(url=f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    given = resources(tmp_path, sample_dir, ledger)
    first = dg.materialize([stand_in_signals, fills, portfolio, daily_report], partition_key=D1, resources=given)
    second = dg.materialize([portfolio, daily_report], partition_key=D2, resources=given)  # a quiet day
    assert first.success and second.success

    for asset, contract in [("fills", FILL_COLUMNS), ("portfolio", PORTFOLIO_COLUMNS)]:
        meta, value = metadata_of(first, asset), first.asset_value(asset)
        assert meta["dagster/row_count"] == dg.MetadataValue.int(len(value))
        schema = meta["dagster/column_schema"].schema
        assert [c.name for c in schema.columns][: len(contract)] == contract
        assert all(c.description for c in schema.columns)
    report = metadata_of(second, "daily_report")
    assert report["dagster/row_count"].value == 1
    schema_columns = {c.name for c in report["dagster/column_schema"].schema.columns}
    assert set(second.asset_value("daily_report").columns) == schema_columns

    # Tables a person reads are tables, their cells rounded: KRW to the won, prices to 4 digits.
    fill_meta = metadata_of(first, "fills")
    [row] = [r.data for r in fill_meta["preview"].records]
    booked = first.asset_value("fills").iloc[0]
    assert row["market"] == "KRW-BTC" and row["status"] == "done"
    assert row["krw_value"] == round(booked["krw_value"]) and isinstance(row["krw_value"], int)
    assert row["price"] == float(f"{booked['price']:.4g}")
    assert fill_meta["not_executed"].records == [] and fill_meta["krw_bought"] == dg.MetadataValue.int(
        round(booked["krw_value"])
    )
    positions = {r.data["market"]: r.data for r in metadata_of(first, "portfolio")["preview"].records}
    assert set(positions) == {"KRW-BTC", "KRW"} and isinstance(positions["KRW"]["value_krw"], int)
    check_rows = {r.data["check"]: r.data for r in report["check_report"].records}
    assert check_rows["portfolio_sellable"]["outcome"] == "passed"
    for result, assets in [(first, ("fills", "portfolio", "daily_report")), (second, ("portfolio", "daily_report"))]:
        for asset in assets:
            assert unreadable_floats(metadata_of(result, asset)) == [], asset
        for evaluation in result.get_asset_check_evaluations():
            assert unreadable_floats(dict(evaluation.metadata)) == [], evaluation.check_name

    # Equity and buy-and-hold KRW-BTC as numbers on every partition (the UI's metadata plots), and
    # buy-and-hold = the start capital into KRW-BTC at D1's close, fee paid, valued at D2's close.
    btc = closes(sample_dir, D1, D2)
    expected = 10_000_000.0 / (btc[D1] * (1 + FEE_RATE)) * btc[D2]
    assert report["equity_buy_and_hold_btc_krw"] == dg.MetadataValue.int(round(expected))
    assert report["equity_krw"] == dg.MetadataValue.int(round(ledger.equity_history(None)["equity_krw"].iloc[-1]))
    assert report["buy_and_hold_return_pct"] == dg.MetadataValue.float(round((expected / 10_000_000.0 - 1) * 100, 2))
    assert report["equity_curve"].value.startswith("![Makenaide equity to 2023-12-05](data:image/png;base64,")

    for asset in (fills, portfolio, daily_report):
        [key] = asset.keys
        assert asset.owners_by_key[key] == ["team:makenaide"] and asset.code_versions_by_key[key]


def test_a_deposit_is_never_shown_as_profit(tmp_path: Path, sample_dir: Path) -> None:
    """Live: the ledger starts empty, the first reconciliation books the opening balance, a later
    one a deposit; the return and drawdown are on what was put in, and buy-and-hold buys the deposit too."""
    ledger = TradingLedger(url=f"sqlite:///{tmp_path / 'ledger.sqlite'}", mode="live")
    opening = Adjustment("open:KRW", "KRW", 10_000_000.0, "opening balance: /v1/accounts holds 10,000,000 KRW", True)
    deposit = Adjustment("deposit:u1:KRW", "KRW", 5_000_000.0, "deposit u1 of 5,000,000 KRW", True)
    ledger.record_reconciliation(D1, pd.Timestamp(f"{D2} 00:01"), [opening])
    btc = closes(sample_dir, D1, D3)
    volume = 0.02
    ledger.record_intent(f"mkn-{D1}-KRW-BTC-buy", partition_key=D1, market="KRW-BTC", side="buy", broker="upbit",
                         ref_price=btc[D1], krw_amount=btc[D1] * volume, volume=None, reason="test")  # fmt: skip
    fee = btc[D1] * volume * FEE_RATE
    ledger.record_fill(f"mkn-{D1}-KRW-BTC-buy", price=btc[D1], volume=volume, fee=fee,
                       executed_at=pd.Timestamp(f"{D2} 00:02"))  # fmt: skip
    given = resources(tmp_path, sample_dir, ledger)
    reports = {}
    for day in (D1, D2, D3):
        if day == D3:  # deposited during D3, found by D3's reconciliation
            ledger.record_reconciliation(D3, pd.Timestamp(f"{D3} 23:59"), [deposit])
        result = dg.materialize([portfolio, daily_report], partition_key=day, resources=given)
        assert result.success
        reports[day] = (result.asset_value("daily_report").iloc[0], metadata_of(result, "daily_report"))

    row, meta = reports[D3]
    pnl = volume * (btc[D3] - btc[D1]) - fee  # the only profit: the BTC bought on D1
    assert row["contributions_krw"] == 15_000_000.0 and meta["contributions_krw"].value == 15_000_000
    assert row["pnl_total_krw"] == pytest.approx(pnl)
    assert row["return_total_pct"] == pytest.approx(pnl / 15_000_000.0 * 100)
    assert meta["return_total_pct"].value == round(pnl / 15_000_000.0 * 100, 2)
    assert row["pnl_since_last_report_krw"] == pytest.approx(volume * (btc[D3] - btc[D2]))  # not +5,000,000
    first = reports[D1][0]
    assert first["contributions_krw"] == 10_000_000.0 and first["pnl_total_krw"] == pytest.approx(
        volume * (btc[D1] - btc[D1]) - fee
    )
    # Buy-and-hold: 10 M into KRW-BTC at D1's close, the 5 M deposit at D3's close.
    units = 10_000_000.0 / (btc[D1] * (1 + FEE_RATE)) + 5_000_000.0 / (btc[D3] * (1 + FEE_RATE))
    assert row["buy_and_hold_krw"] == pytest.approx(units * btc[D3])
    # Drawdown from the flow-free index: the deposit neither hides nor makes a fall.
    equity = pd.Series([reports[day][0]["equity_krw"] for day in (D1, D2, D3)])
    index = growth_index(equity, pd.Series([10e6, 10e6, 15e6]))
    peak = max(1.0, index.max())
    assert row["drawdown_pct"] == pytest.approx((index.iloc[-1] / peak - 1) * 100)
    assert reports[D3][0]["equity_krw"] > reports[D2][0]["equity_krw"] + 4_000_000  # the deposit is in equity


@pytest.mark.parametrize(
    ("equity", "contributions", "expected"),
    [
        ([100.0, 110.0, 99.0], [100.0, 100.0, 100.0], [1.0, 1.1, 0.99]),  # no flow: equity / seed
        ([100.0, 160.0, 150.0], [100.0, 150.0, 150.0], [1.0, 160 / 150, 150 / 150]),  # +50 deposited on day 2
        ([100.0, 60.0], [100.0, 50.0], [1.0, 60 / 50]),  # 50 withdrawn on day 2
    ],
)
def test_growth_index_removes_deposits_and_withdrawals(
    equity: list[float], contributions: list[float], expected: list[float]
) -> None:
    assert growth_index(pd.Series(equity), pd.Series(contributions)).tolist() == pytest.approx(expected)
