"""Cross-check: the pipeline's recorded backtests replayed through vectorbt give the same trades and returns.

The fixtures are real pipeline output (make_fixtures.py regenerates them): the sample's
2023-07-12 → 2023-12-31 and the long recording's 2022-01-01 → 2025-09-29. vectorbt is an
independent accountant here: same fills, same 0.05 % fee, same cash; its equity, positions and
P&L must agree with ours to within TOLERANCE_KRW.
"""

import math

import pytest

from makenaide_assets.backtest.evaluate import round_trips
from makenaide_assets_tests.backtest.vectorbt_replay import Recorded, load, portfolio

# Both sides add the same float numbers in a different order: a millionth of a won on 10 M KRW.
TOLERANCE_KRW = 1e-6
TOLERANCE_RETURN = 1e-12
# vectorbt's own pandas 3 deprecation (DataFrame.rename(inplace=True)), not ours.
pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword in DataFrame.rename is deprecated")


@pytest.fixture(scope="module", params=["sample", "long"])
def replayed(request: pytest.FixtureRequest) -> tuple[Recorded, object]:
    recorded = load(request.param)
    return recorded, portfolio(recorded)


def test_same_equity_every_day_and_same_total_return(replayed) -> None:
    recorded, pf = replayed
    ours = recorded.curve.set_index("date")["equity_krw"]
    theirs = pf.value().set_axis(pf.wrapper.index.strftime("%Y-%m-%d"))
    assert list(theirs.index) == list(ours.index)
    # The curve CSV keeps 6 decimals: compare within that rounding plus the tolerance.
    assert (theirs - ours).abs().max() <= TOLERANCE_KRW + 5e-7
    total = float(ours.iloc[-1]) / recorded.meta["initial_cash_krw"] - 1
    assert float(pf.total_return()) == pytest.approx(total, abs=1e-10)


def test_same_orders_same_closed_trades_same_pnl(replayed) -> None:
    recorded, pf = replayed
    assert int(pf.orders.count()) == len(recorded.fills)
    # One trade per sell, as `strategy_stats` counts them: vectorbt's exit trades.
    trades = pf.exit_trades.records_readable
    closed = trades[trades["Status"] == "Closed"].sort_values(["Exit Timestamp", "Column"], ignore_index=True)
    trips = round_trips(recorded.fills)
    assert len(closed) == len(trips) == recorded.meta["closed_trades"] >= 1
    assert closed["Column"].tolist() == trips["market"].tolist()
    assert closed["Entry Timestamp"].dt.strftime("%Y-%m-%d").tolist() == trips["entry_partition"].tolist()
    assert closed["Exit Timestamp"].dt.strftime("%Y-%m-%d").tolist() == trips["exit_partition"].tolist()
    diff = (closed["PnL"] - trips["pnl_krw"]).abs()
    assert diff.max() <= TOLERANCE_KRW, diff.max()
    # vectorbt's Return divides by the entry value without its fees; ours by what left the cash,
    # buy fees included. From vectorbt's own parts, ours:
    cost = closed["Size"] * closed["Avg Entry Price"] + closed["Entry Fees"]
    assert ((closed["PnL"] / cost * 100 - trips["return_pct"]).abs() <= TOLERANCE_RETURN * 100).all()


def test_positions_left_open_at_the_end_agree(replayed) -> None:
    recorded, pf = replayed
    positions = pf.positions.records_readable
    still_open = sorted(positions.loc[positions["Status"] == "Open", "Column"])
    fills = recorded.fills
    held = fills["volume"].where(fills["side"] != "sell", -fills["volume"]).groupby(fills["market"]).sum()
    assert still_open == sorted(held[held > 1e-9].index)
    last = recorded.curve.iloc[-1]
    assert math.isclose(float(pf.cash().iloc[-1]), float(last["cash_krw"]), abs_tol=TOLERANCE_KRW + 5e-7)
