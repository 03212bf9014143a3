import inspect
import math
from typing import Any

import pandas as pd
import pytest

from makenaide_assets.strategy.accounting import POSITION_COLUMNS
from makenaide_assets.strategy.orders import ORDER_DTYPES, PlanParams, SignalPlan, plan_signals
from makenaide_assets.strategy.sizing import KellyInputs, position_fraction
from makenaide_assets.strategy.ticks import FEE_RATE

DAY = "2023-09-01"
KELLY = KellyInputs(0.45, 2.0)  # half-Kelly 0.0875 of equity for a full position


def candidates(*rows: tuple[str, float]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["market", "score"])
    return frame.assign(passed=True, failed_rules="", reason="all rules passed")


def verdicts(*rows: tuple[str, str, float, str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["market", "verdict", "confidence", "source"]).assign(error=None)


def timing(*rows: tuple[str, bool, float]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["market", "entry_ok", "suggested_entry"])
    return frame.assign(suggested_stop=math.nan, reason="4h uptrend")


def indicators(*rows: tuple[str, float, float, float]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["market", "close", "ma50", "atr14"]).assign(date=DAY, ma20=math.nan)


def breadth(regime: str = "bull", allow: bool = True) -> pd.DataFrame:
    return pd.DataFrame([{"regime": regime, "allow_new_buys": allow, "reason": f"{regime} test regime"}])


def position(
    market: str,
    volume: float,
    avg: float,
    *,
    entries: int = 1,
    highest: float | None = None,
    opened: str = "2023-08-01",
    last_add: str = "2023-08-01",
) -> dict[str, Any]:
    return {
        "market": market,
        "volume": volume,
        "avg_price": avg,
        "cost_krw": volume * avg * 1.0005,  # fees are part of the cost, as the ledger books it
        "entries": entries,
        "highest_price": highest or avg,
        "opened_partition": opened,
        "last_add_partition": last_add,
    }


def plan(**overrides: Any) -> SignalPlan:
    """One passing candidate KRW-AAA at 10,000 KRW in a bull market, 10M KRW cash, nothing held."""
    inputs: dict[str, Any] = dict(
        partition_key=DAY,
        candidates=candidates(("KRW-AAA", 5.0)),
        gpt_verdicts=verdicts(("KRW-AAA", "BUY", 80.0, "openai")),
        timing_4h=timing(("KRW-AAA", True, 10_007.0)),
        daily_indicators=indicators(("KRW-AAA", 10_000.0, 9_000.0, 300.0)),
        market_breadth=breadth(),
        positions=pd.DataFrame(columns=POSITION_COLUMNS),
        cash_krw=10_000_000.0,
        kelly_inputs=KELLY,
    )
    inputs.update(overrides)
    if isinstance(inputs["positions"], list):
        inputs["positions"] = pd.DataFrame(inputs["positions"], columns=POSITION_COLUMNS)
    return plan_signals(**inputs)


def test_a_qualified_candidate_is_bought_with_half_kelly_first_entry() -> None:
    result = plan()
    assert list(result.orders.columns) == list(ORDER_DTYPES)
    (order,) = result.orders.to_dict("records")
    # Full position 10M × 0.0875 = 875,000; the first of three entries takes half of it.
    assert order["side"] == "buy" and order["krw_amount"] == 437_500
    assert order["price"] == 10_000  # 10,007 rounded down onto the 10-KRW tick
    assert order["stop_price"] == 9_200 and order["take_profit_price"] == 12_500
    assert order["kelly_fraction"] == pytest.approx(0.0875)
    assert (order["win_rate"], order["payoff_ratio"], order["kelly_source"]) == (0.45, 2.0, "configured")
    assert (order["score"], order["confidence"]) == (5.0, 80.0)
    assert math.isnan(order["volume"])


@pytest.mark.parametrize(
    ("breadth_frame", "reason"),
    [
        (breadth("bear", False), "no new buys: regime bear"),
        (breadth("neutral", False), "no new buys: regime neutral"),
        (breadth().iloc[0:0], "no new buys: market_breadth is empty"),
    ],
)
def test_no_buys_when_the_regime_forbids_them(breadth_frame: pd.DataFrame, reason: str) -> None:
    result = plan(market_breadth=breadth_frame)
    assert result.orders.empty
    assert result.rejected["reason"].str.startswith(reason).tolist() == [True]
    assert result.allow_new_buys is False


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ({"gpt_verdicts": verdicts(("KRW-AAA", "HOLD", 90.0, "openai"))}, "GPT verdict HOLD"),
        ({"gpt_verdicts": verdicts(("KRW-AAA", "AVOID", 90.0, "rules"))}, "GPT verdict AVOID"),
        ({"gpt_verdicts": verdicts(("KRW-AAA", "BUY", 69.0, "cache"))}, "GPT confidence 69 < 70"),
        ({"gpt_verdicts": verdicts(("KRW-AAA", "BUY", 95.0, "error")).assign(error="timeout")}, "GPT errored: timeout"),
        ({"gpt_verdicts": verdicts(("KRW-AAA", "BUY", 95.0, "error"))}, "GPT errored: no detail"),
        ({"gpt_verdicts": verdicts()}, "no GPT verdict"),
        ({"timing_4h": timing(("KRW-AAA", False, 10_000.0))}, "4h timing: 4h uptrend"),
        ({"timing_4h": timing()}, "4h timing: no row"),
        ({"daily_indicators": indicators()}, "no daily close"),
    ],
)
def test_buys_need_gpt_and_4h_timing(override: dict[str, Any], reason: str) -> None:
    result = plan(**override)
    assert result.orders.empty
    assert result.rejected.to_dict("records") == [{"market": "KRW-AAA", "side": "buy", "reason": reason}]


def test_candidates_that_failed_the_rules_are_not_considered() -> None:
    result = plan(candidates=candidates(("KRW-AAA", 5.0)).assign(passed=False))
    assert result.orders.empty and result.rejected.empty


def test_orders_below_the_upbit_minimum_are_dropped_with_a_reason() -> None:
    # 9,000 KRW of equity: 9,000 × 0.0875 / 2 = 393 KRW, far below 5,000.
    result = plan(cash_krw=9_000.0)
    assert result.orders.empty
    assert "below the 5,000 KRW minimum order" in result.rejected.at[0, "reason"]


def test_buys_never_exceed_cash_the_last_is_scaled_down_the_rest_dropped() -> None:
    names = [f"KRW-C{i}" for i in range(6)]
    result = plan(
        candidates=candidates(*[(m, 10.0 - i) for i, m in enumerate(names)]),
        gpt_verdicts=verdicts(*[(m, "BUY", 80.0, "openai") for m in names]),
        timing_4h=timing(*[(m, True, 10_000.0) for m in names]),
        daily_indicators=indicators(*[(m, 10_000.0, 9_000.0, 300.0) for m in ["KRW-HELD", *names]]),
        positions=[position("KRW-HELD", 400.0, 10_000.0)],  # 4M KRW held, so equity 5M against 1M cash
        cash_krw=1_000_000.0,
        params=PlanParams(max_exposure_fraction=1.0),
    )
    buys = result.orders
    assert buys["krw_amount"].tolist() == [218_750.0] * 4 + [124_500.0]
    assert buys["market"].tolist() == names[:5]  # by score
    assert buys["krw_amount"].sum() * 1.0005 <= 1_000_000.0
    assert "scaled down from 218,750 KRW to fit cash" in buys["reason"].iloc[-1]
    assert result.rejected.to_dict("records") == [
        {"market": "KRW-C5", "side": "buy", "reason": "cash left: 0 KRW, below the 5,000 KRW minimum order"}
    ]


def test_exposure_cap_and_open_position_slots() -> None:
    names = ["KRW-C0", "KRW-C1"]
    common = dict(
        candidates=candidates(("KRW-C0", 2.0), ("KRW-C1", 1.0)),
        gpt_verdicts=verdicts(*[(m, "BUY", 80.0, "openai") for m in names]),
        timing_4h=timing(*[(m, True, 10_000.0) for m in names]),
        daily_indicators=indicators(*[(m, 10_000.0, 9_000.0, 300.0) for m in names]),
    )
    one_slot = plan(params=PlanParams(max_open_positions=1), **common)
    assert one_slot.orders["market"].tolist() == ["KRW-C0"]
    assert one_slot.rejected["reason"].tolist() == ["max 1 open positions reached"]
    capped = plan(params=PlanParams(max_exposure_fraction=0.05), **common)  # 500,000 KRW of room
    assert capped.orders["krw_amount"].tolist() == [437_500.0, 62_500.0]
    assert "to fit exposure cap" in capped.orders["reason"].iloc[1]


def test_a_stop_loss_sell_wins_over_a_buy_of_the_same_market() -> None:
    result = plan(
        daily_indicators=indicators(("KRW-AAA", 9_003.0, 9_500.0, 300.0)),
        positions=[position("KRW-AAA", 50.0, 10_000.0, highest=10_400.0)],
    )
    (sell,) = result.orders.to_dict("records")
    assert (sell["side"], sell["volume"], sell["price"]) == ("sell", 50.0, 9_005.0)  # tick 5, rounded up
    assert sell["reason"].startswith("stop-loss") and math.isnan(sell["krw_amount"])
    assert result.rejected.to_dict("records") == [
        {"market": "KRW-AAA", "side": "buy", "reason": "sold today: never buy and sell one market on one day"}
    ]


def test_a_position_too_small_to_sell_is_reported_not_ordered() -> None:
    result = plan(
        candidates=candidates(),
        daily_indicators=indicators(("KRW-AAA", 9_000.0, 9_500.0, 300.0)),
        positions=[position("KRW-AAA", 0.5, 10_000.0)],
    )
    assert result.orders.empty
    assert "not sold: worth 4,500 KRW" in result.rejected.at[0, "reason"]


def test_a_held_market_without_a_close_is_reported() -> None:
    result = plan(candidates=candidates(), positions=[position("KRW-GONE", 10.0, 10_000.0)])
    assert result.orders.empty
    assert result.rejected.to_dict("records") == [
        {"market": "KRW-GONE", "side": "sell", "reason": "no daily close for this held market: exits not evaluated"}
    ]
    assert result.equity_krw == pytest.approx(10_000_000.0 + 100_000.0)  # marked at its average


def _pyramid(close: float, ma50: float = 9_500.0, volume: float = 40.0, **position_args: Any) -> SignalPlan:
    return plan(
        candidates=candidates(),
        daily_indicators=indicators(("KRW-WIN", close, ma50, 200.0)),
        positions=[position("KRW-WIN", volume, 10_000.0, highest=close, **position_args)],
        cash_krw=9_000_000.0,
    )


def test_pyramiding_adds_to_a_winner_a_quarter_of_the_full_position() -> None:
    result = _pyramid(10_600.0)
    (add,) = result.orders.to_dict("records")
    # Equity 9M + 40 × 10,600 = 9.424M; full position 824,600; an add is half the first entry.
    assert add["side"] == "add" and add["krw_amount"] == 206_150.0 and add["price"] == 10_600.0
    assert add["reason"].startswith("pyramid entry 2")
    new_avg = (10_000.0 * 40 + 206_150.0) / (40 + 206_150.0 / 10_600.0)
    assert add["stop_price"] == pytest.approx(new_avg * 0.92, abs=5)
    assert add["take_profit_price"] == pytest.approx(new_avg * 1.25, abs=10)


@pytest.mark.parametrize(
    ("close", "ma50", "position_args", "reason"),
    [
        (11_600.0, 9_500.0, {"entries": 3}, "up 16.0% but already 3 entries (max 3)"),
        (10_600.0, 9_500.0, {"last_add": DAY}, f"already entered on {DAY}"),
        (10_600.0, 9_500.0, {"opened": DAY, "last_add": DAY}, f"already entered on {DAY}"),
        (10_600.0, math.nan, {}, "up 6.0% but close is not above ma50"),  # an unknown MA confirms nothing
        (10_900.0, 9_500.0, {"entries": 2}, None),  # the second add needs +10% over the average
        (10_400.0, 9_500.0, {}, None),  # under +5%: simply held
    ],
)
def test_pyramiding_rules(close: float, ma50: float, position_args: dict[str, Any], reason: str | None) -> None:
    result = _pyramid(close, ma50, **position_args)
    assert result.orders.empty
    assert result.rejected["reason"].tolist() == ([reason] if reason else [])


def test_an_add_is_capped_by_the_full_kelly_position() -> None:
    # Cost 80 × 10,000 × 1.0005 = 800,400 of a full position of 9,888,000 × 0.0875 = 865,200.
    result = _pyramid(11_100.0, volume=80.0, entries=2)
    (add,) = result.orders.to_dict("records")
    assert add["krw_amount"] == 64_800.0
    assert "to fit per-position Kelly cap" in add["reason"]


def test_no_edge_no_bet() -> None:
    result = plan(kelly_inputs=KellyInputs(0.3, 2.0))
    assert result.orders.empty
    assert "Kelly fraction is 0" in result.rejected.at[0, "reason"]


def test_empty_inputs_give_an_empty_typed_plan() -> None:
    result = plan(
        candidates=candidates(),
        gpt_verdicts=verdicts(),
        timing_4h=timing(),
        daily_indicators=indicators(),
        market_breadth=breadth().iloc[0:0],
    )
    assert result.orders.empty and result.rejected.empty
    assert result.orders.dtypes.astype(str).to_dict() == ORDER_DTYPES
    assert result.equity_krw == 10_000_000.0 and result.regime == "unknown"


def test_plan_params_share_the_sizing_defaults_and_upbits_fee() -> None:
    defaults = inspect.signature(position_fraction).parameters
    params = PlanParams()
    assert params.kelly_multiplier == defaults["kelly_multiplier"].default
    assert params.max_position_fraction == defaults["max_position_fraction"].default
    assert params.fee_rate == FEE_RATE
