"""The monthly figures: where a month's return starts, its drawdown, trades and win rate, the
buy-and-hold benchmark over the same days, and the operations guide's loss lines."""

import math

import pandas as pd
import pytest

from makenaide_assets.strategy import monthly as m

NOV = list(pd.date_range("2023-11-01", "2023-11-30").strftime("%Y-%m-%d"))
DEC = list(pd.date_range("2023-12-01", "2023-12-31").strftime("%Y-%m-%d"))
FEE = 0.0005


def equity(rows: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame({"partition_key": list(rows), "equity_krw": list(rows.values())})


def fill(day: str, side: str, krw: float, pnl: float | None = None) -> dict:
    return {"partition_key": day, "side": side, "krw_value": krw, "fee": krw * FEE, "realized_pnl_krw": pnl}


def closes(rows: dict[str, float]) -> pd.Series:
    return pd.Series(rows, dtype="float64")


def test_the_first_month_starts_from_initial_cash_and_later_ones_from_the_last_equity_before_them() -> None:
    history = equity({"2023-11-29": 1_050.0, "2023-11-30": 1_100.0, "2023-12-01": 1_000.0})
    assert m.month_start(history, NOV[0], 1_000.0) == m.Start(None, 1_000.0)
    assert m.month_start(history, DEC[0], 1_000.0) == m.Start("2023-11-30", 1_100.0)
    assert m.month_start(history, DEC[0], 1_000.0).describe() == "equity of 2023-11-30"
    # A gap: the last equity recorded before the month, however old.
    assert m.month_start(history.iloc[:1], DEC[0], 1_000.0) == m.Start("2023-11-29", 1_050.0)


def test_a_month_return_drawdown_trades_win_rate_fees_and_benchmark() -> None:
    history = equity({"2023-11-30": 1_000.0, "2023-12-01": 1_050.0, "2023-12-02": 945.0, "2023-12-03": 990.0})
    fills = pd.DataFrame(
        [
            fill("2023-11-30", "buy", 500.0),  # November's: not this month's
            fill("2023-12-01", "buy", 300.0),
            fill("2023-12-01", "add", 100.0),
            fill("2023-12-02", "sell", 400.0, pnl=-20.0),
            fill("2023-12-03", "sell", 200.0, pnl=30.0),
            fill("2023-12-03", "sell", 100.0, pnl=0.0),  # breaking even is no win
        ]
    )
    btc = closes({"2023-11-30": 100.0, "2023-12-01": 101.0, "2023-12-02": 99.0, "2023-12-03": 110.0})
    row = m.summarise_month("2023-12", DEC, history, fills, btc, 2_000.0)
    assert row["start_basis"] == "equity of 2023-11-30" and row["start_equity_krw"] == 1_000.0
    assert row["last_day"] == "2023-12-03" and row["end_equity_krw"] == 990.0
    assert row["return_pct"] == pytest.approx(-1.0)
    assert row["max_drawdown_pct"] == pytest.approx((945.0 / 1_050.0 - 1) * 100)  # below the month's peak
    assert (row["trades"], row["buys"], row["sells"], row["closed_trades"], row["wins"]) == (5, 2, 3, 3, 1)
    assert row["win_rate_pct"] == pytest.approx(100 / 3)
    assert row["realized_pnl_krw"] == pytest.approx(10.0)
    assert row["fees_krw"] == pytest.approx((300 + 100 + 400 + 200 + 100) * FEE)
    # Bought at the close of the day the month starts from, buy fee paid.
    assert row["benchmark_from"] == "2023-11-30"
    assert row["benchmark_return_pct"] == pytest.approx((110.0 / 100.0 / (1 + FEE) - 1) * 100)
    assert row["excess_return_pct"] == pytest.approx(row["return_pct"] - row["benchmark_return_pct"])
    assert row["coverage"] == "partial: 3 of 31 days" and row["flags"] == "max drawdown -10.0 %: " + m.LOSS_LINES[1][1]
    assert list(m.month_frame(row).columns) == m.MONTH_COLUMNS


def test_the_ledgers_first_month_starts_at_initial_cash_and_buys_btc_on_its_first_day() -> None:
    history = equity({day: 1_000.0 for day in NOV})
    btc = closes({"2023-11-01": 50.0, "2023-11-30": 60.0})
    row = m.summarise_month("2023-11", NOV, history, pd.DataFrame(), btc, 1_000.0)
    assert row["start_basis"] == "initial cash" and row["coverage"] == "complete: 30 of 30 days"
    assert row["return_pct"] == 0.0 and row["max_drawdown_pct"] == 0.0 and row["trades"] == 0
    assert row["benchmark_from"] == "2023-11-01"
    assert row["benchmark_return_pct"] == pytest.approx((1.2 / (1 + FEE) - 1) * 100)
    assert math.isnan(row["win_rate_pct"]) and row["flags"] == ""


def test_a_month_without_equity_has_no_figures_and_says_so() -> None:
    row = m.summarise_month("2023-12", DEC, equity({"2023-11-30": 900.0}), pd.DataFrame(), pd.Series(), 1_000.0)
    assert row["coverage"] == "partial: 0 of 31 days" and row["last_day"] is None
    assert all(math.isnan(row[k]) for k in ("return_pct", "max_drawdown_pct", "benchmark_return_pct"))
    assert row["flags"] == ""


def test_without_a_benchmark_close_on_either_end_buy_and_hold_is_unknown() -> None:
    btc = closes({"2023-12-01": math.nan, "2023-12-02": 100.0})
    assert math.isnan(m.benchmark_return(btc, "2023-12-01", "2023-12-02"))
    assert math.isnan(m.benchmark_return(btc, None, "2023-12-02"))
    assert m.benchmark_return(btc, "2023-12-02", "2023-12-02") == pytest.approx(1 / (1 + FEE) - 1)


@pytest.mark.parametrize(
    ("return_pct", "drawdown_pct", "expected"),
    [
        (2.0, -4.9, []),
        (-6.1, -6.1, ["max drawdown -6.1 %: past the 5 % line", "return -6.1 %: past the 5 % line"]),
        (1.0, -9.0, ["max drawdown -9.0 %: past the 8 % warning line"]),
        (-16.0, -20.0, ["max drawdown -20.0 %: past the 15 % danger line", "return -16.0 %: past the 15 % danger"]),
    ],
)
def test_loss_lines_name_the_largest_line_crossed(return_pct: float, drawdown_pct: float, expected: list) -> None:
    flags = m.loss_flags(return_pct, drawdown_pct)
    assert len(flags) == len(expected)
    assert all(flag.startswith(prefix) for flag, prefix in zip(flags, expected, strict=True)), flags


def test_missing_days_and_their_ranges() -> None:
    history = equity({"2023-11-28": 1.0, "2023-11-29": 1.0})
    missing = m.missing_days(NOV, history)
    assert len(missing) == 28 and "2023-11-28" not in missing
    assert m.day_ranges(missing) == ["2023-11-01 → 2023-11-27", "2023-11-30"]
    assert m.day_ranges([]) == []
