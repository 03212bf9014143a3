import math

import pandas as pd
import pytest

from makenaide_assets.strategy import performance as p

DAYS = ["2023-10-01", "2023-10-02", "2023-10-03", "2023-10-04"]


def fill(day: str, market: str, side: str, price: float, volume: float) -> dict:
    return {"partition_key": day, "market": market, "side": side, "price": price, "volume": volume,
            "fee": price * volume * 0.0005, "krw_value": price * volume}  # fmt: skip


def test_equity_curve_books_fills_on_their_partition_and_marks_at_its_close() -> None:
    closes = pd.DataFrame({"KRW-A": [102.0, 105.0, 103.0, 90.0], "KRW-B": [10.0, 11.0, 12.0, 13.0]}, index=DAYS)
    fills = pd.DataFrame([fill(DAYS[0], "KRW-A", "buy", 100.0, 2.0), fill(DAYS[2], "KRW-A", "sell", 104.0, 2.0)])
    curve = p.equity_curve(fills, closes, 1_000.0)
    cash_after_buy = 1_000.0 - 200.0 - 0.1
    assert curve["cash_krw"].tolist() == pytest.approx([cash_after_buy] * 2 + [cash_after_buy + 208.0 - 0.104] * 2)
    assert curve["positions_value_krw"].tolist() == pytest.approx([204.0, 210.0, 0.0, 0.0])
    assert curve["equity_krw"].iloc[1] == pytest.approx(cash_after_buy + 210.0)
    assert curve["open_positions"].tolist() == [1, 1, 0, 0]
    assert curve["exposure"].iloc[0] == pytest.approx(204.0 / (cash_after_buy + 204.0))


def test_a_missing_close_carries_the_last_one_but_a_never_priced_holding_raises() -> None:
    closes = pd.DataFrame({"KRW-A": [100.0, math.nan, 110.0, 120.0]}, index=DAYS)
    curve = p.equity_curve(pd.DataFrame([fill(DAYS[0], "KRW-A", "buy", 100.0, 1.0)]), closes, 1_000.0)
    assert curve["positions_value_krw"].tolist() == [100.0, 100.0, 110.0, 120.0]
    unpriced = pd.DataFrame({"KRW-A": [math.nan] * 4}, index=DAYS)
    with pytest.raises(ValueError, match="no close"):
        p.equity_curve(pd.DataFrame([fill(DAYS[0], "KRW-A", "buy", 100.0, 1.0)]), unpriced, 1_000.0)
    with pytest.raises(ValueError, match="outside"):
        p.equity_curve(pd.DataFrame([fill("2023-09-30", "KRW-A", "buy", 100.0, 1.0)]), closes, 1_000.0)


def test_without_fills_equity_is_the_cash() -> None:
    curve = p.equity_curve(pd.DataFrame(), pd.DataFrame({"KRW-BTC": [1.0] * 4}, index=DAYS), 500.0)
    assert curve["equity_krw"].tolist() == [500.0] * 4 and (curve["exposure"] == 0).all()


def test_buy_and_hold_pays_the_fee_once_at_the_first_close() -> None:
    bench = p.buy_and_hold(pd.Series([100.0, 110.0, 90.0]), 1_000.0, 0.0005)
    assert bench.tolist() == pytest.approx([1_000.0 / 1.0005, 1_100.0 / 1.0005, 900.0 / 1.0005])


def test_drawdown_counts_the_starting_cash_as_the_first_peak() -> None:
    equity = pd.Series([95.0, 120.0, 90.0, 130.0])
    assert p.drawdown(equity, 100.0).tolist() == pytest.approx([-0.05, 0.0, -0.25, 0.0])
    assert p.max_drawdown(equity, 100.0) == pytest.approx(-0.25)
    assert p.total_return(equity, 100.0) == pytest.approx(0.30)


def test_sharpe_is_daily_mean_over_std_times_root_365() -> None:
    equity = pd.Series([101.0, 100.0, 102.0, 103.0])
    returns = pd.Series([0.01, 100.0 / 101.0 - 1, 0.02, 103.0 / 102.0 - 1])
    expected = returns.mean() / returns.std(ddof=1) * math.sqrt(365)
    assert p.sharpe(equity, 100.0) == pytest.approx(expected)
    assert math.isnan(p.sharpe(pd.Series([100.0, 100.0, 100.0]), 100.0))  # no variation, no ratio
    assert math.isnan(p.sharpe(pd.Series([101.0]), 100.0))


def test_cagr_annualises_over_the_days_held() -> None:
    assert p.cagr(pd.Series([110.0] * 365), 100.0) == pytest.approx(0.10)
    assert p.cagr(pd.Series([121.0] * 730), 100.0) == pytest.approx(0.10)


def test_summary_of_a_curve() -> None:
    curve = pd.DataFrame({"equity_krw": [100.0, 90.0, 120.0], "exposure": [0.0, 0.5, 0.5]})
    summary = p.summarise(curve, 100.0)
    assert summary["total_return_pct"] == pytest.approx(20.0)
    assert summary["max_drawdown_pct"] == pytest.approx(-10.0)
    assert summary["exposure_pct"] == pytest.approx(100 / 3)
    assert summary["time_in_market_pct"] == pytest.approx(200 / 3)
