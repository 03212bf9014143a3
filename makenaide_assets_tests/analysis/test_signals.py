"""`signals` and its blocking checks through Dagster, on prices from the recorded Upbit sample.

Partition 2023-10-24: KRW-BTC rallied +22% in two weeks while KRW-STORJ fell 12%. The ledger holds
STORJ and ETH bought at their real 2023-10-10 closes, so the day must sell STORJ (stop-loss), add
to ETH (+12%, pyramiding) and buy BTC (candidate, GPT BUY, 4h entry ok).
"""

from dataclasses import replace
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest

from makenaide_assets.analysis import signals as signals_module
from makenaide_assets.analysis.signals import (
    SIGNAL_CHECKS,
    SignalsConfig,
    below_minimum,
    cash_overspend_krw,
    kelly_outside_cap,
    markets_ordered_twice,
    signal_checks,
    signals,
)
from makenaide_assets.analysis.strategy_stats import stats_frame
from makenaide_assets.partitions import daily
from makenaide_assets.resources.broker import PaperBroker
from makenaide_assets.resources.io_manager import ParquetIOManager
from makenaide_assets.resources.ledger import TradingLedger
from makenaide_assets.resources.market_data import ReplayMarketData
from makenaide_assets.resources.notifier import Notifier
from makenaide_assets.settings import SAMPLE_REPLAY_DIR

DAY, ENTRY_DAY = "2023-10-24", "2023-10-10"
HELD = {"KRW-ETH": 0.2, "KRW-STORJ": 700.0}  # volumes bought on ENTRY_DAY
CLOSED_TRADE_COLUMNS = ["partition_key", "executed_at", "realized_pnl_krw", "krw_value", "fee"]


def candles(market: str, interval: str = "day") -> pd.DataFrame:
    frame = pd.read_csv(SAMPLE_REPLAY_DIR / "candles" / interval / f"{market}.csv.gz")
    frame["day"] = frame["candle_date_time_utc"].str[:10]
    return frame.sort_values("candle_date_time_utc").reset_index(drop=True)


def indicator_row(market: str) -> dict[str, object]:
    """A daily_indicators row as of DAY's close, computed from the recorded candles."""
    c = candles(market)
    c = c[c["day"] <= DAY]
    close = c["trade_price"]
    prev = close.shift()
    true_range = pd.concat(
        [c["high_price"] - c["low_price"], (c["high_price"] - prev).abs(), (c["low_price"] - prev).abs()], axis=1
    ).max(axis=1)
    row: dict[str, object] = {"market": market, "date": DAY, "close": float(close.iloc[-1])}
    for n in (20, 50, 150, 200):
        row[f"ma{n}"] = float(close.tail(n).mean()) if len(close) >= n else float("nan")
    row["atr14"] = float(true_range.ewm(alpha=1 / 14, adjust=False).mean().iloc[-1])  # Wilder smoothing
    row |= {"rsi14": float("nan"), "high_52w": float("nan"), "low_52w": float("nan"), "volume_ratio": float("nan")}
    return row | {"rs_vs_btc": float("nan"), "insufficient_history": len(close) < 365}


def close_on(market: str, day: str) -> float:
    c = candles(market)
    return float(c.loc[c["day"] == day, "trade_price"].iloc[0])


def upstream() -> dict[str, pd.DataFrame]:
    markets = ["KRW-BTC", "KRW-DOGE", "KRW-ETH", "KRW-STORJ"]
    last_4h = candles("KRW-BTC", "minute240")
    last_4h = last_4h[last_4h["day"] == DAY].iloc[-1]  # the 20:00 UTC candle closes with the day
    return {
        "candidates": pd.DataFrame(
            {
                "market": ["KRW-BTC", "KRW-DOGE", "KRW-STORJ"],
                "score": [6.0, 4.0, 5.0],
                "passed": True,
                "failed_rules": "",
                "reason": "rules passed",
            }
        ),
        "gpt_verdicts": pd.DataFrame(
            {
                "market": ["KRW-BTC", "KRW-DOGE", "KRW-STORJ"],
                "verdict": ["BUY", "HOLD", "BUY"],
                "confidence": [85.0, 60.0, 75.0],
                "source": ["openai", "rules", "cache"],
                "error": None,
            }
        ),
        "timing_4h": pd.DataFrame(
            {
                "market": ["KRW-BTC"],
                "entry_ok": [True],
                "suggested_entry": [float(last_4h["trade_price"])],
                "suggested_stop": [float(last_4h["low_price"])],
                "reason": ["4h close above MA"],
            }
        ),
        "daily_indicators": pd.DataFrame([indicator_row(m) for m in markets]),
        "market_breadth": pd.DataFrame([{"regime": "bull", "allow_new_buys": True, "reason": "breadth test"}]),
        # No closed trade yet: Kelly falls back to the configured inputs.
        "strategy_stats": stats_frame(pd.DataFrame(columns=CLOSED_TRADE_COLUMNS), DAY, 365),
    }


def stand_in(key: str, frame: pd.DataFrame) -> dg.AssetsDefinition:
    @dg.asset(name=key, partitions_def=daily)
    def _stand_in() -> pd.DataFrame:
        return frame

    return _stand_in


@pytest.fixture
def ledger(tmp_path: Path) -> TradingLedger:
    ledger = TradingLedger(url=f"sqlite:///{tmp_path / 'ledger.sqlite'}", initial_cash_krw=10_000_000.0)
    for market, volume in HELD.items():
        price = close_on(market, ENTRY_DAY)
        identifier = f"test-{ENTRY_DAY}-{market}"
        ledger.record_intent(
            identifier,
            partition_key=ENTRY_DAY,
            market=market,
            side="buy",
            broker="paper",
            ref_price=price,
            krw_amount=price * volume,
            volume=None,
            reason="test entry",
        )
        ledger.record_fill(
            identifier,
            price=price,
            volume=volume,
            fee=price * volume * 0.0005,
            executed_at=pd.Timestamp(f"{ENTRY_DAY} 00:10"),
        )
    return ledger


def run(assets: list, ledger: TradingLedger, tmp_path: Path, **kwargs: object) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        assets,
        resources={
            "io_manager": ParquetIOManager(base_path=str(tmp_path / "storage")),
            "ledger": ledger,
            "market_data": ReplayMarketData(replay_dir=str(SAMPLE_REPLAY_DIR)),
            "broker": PaperBroker(ledger=ledger, market_data=ReplayMarketData(replay_dir=str(SAMPLE_REPLAY_DIR))),
            "notifier": Notifier(),
        },
        partition_key=DAY,
        **kwargs,
    )


def test_signals_sells_the_loser_adds_to_the_winner_buys_the_candidate(ledger: TradingLedger, tmp_path: Path) -> None:
    cash = ledger.cash_krw(None)
    stand_ins = [stand_in(key, frame) for key, frame in upstream().items()]
    result = run([*stand_ins, signals], ledger, tmp_path)
    assert result.success
    evaluations = {e.check_name: (e.passed, e.blocking) for e in result.get_asset_check_evaluations()}
    assert evaluations == {spec.name: (True, spec.blocking) for spec in SIGNAL_CHECKS}
    # Money checks block; the account check does not: its failure stops buys, never sells.
    assert [spec.name for spec in SIGNAL_CHECKS if not spec.blocking] == ["signals_account_reconciled"]

    orders = result.asset_value("signals").set_index("market")
    assert orders["side"].to_dict() == {"KRW-STORJ": "sell", "KRW-ETH": "add", "KRW-BTC": "buy"}
    assert orders.at["KRW-STORJ", "volume"] == HELD["KRW-STORJ"]
    assert orders.at["KRW-STORJ", "reason"].startswith("stop-loss")
    assert orders.at["KRW-BTC", "price"] == 45_599_000.0  # the last 4h close of the day, on the 1,000-KRW tick
    assert orders["krw_amount"].sum() * 1.0005 <= cash
    metadata = result.asset_materializations_for_node("signals")[0].metadata
    assert metadata["signal_count"].value == 3
    assert (metadata["buys"].value, metadata["adds"].value, metadata["sells"].value) == (1, 1, 1)
    assert metadata["regime"].value == "bull"
    rows = {tuple(record.data.values()) for record in metadata["rejected"].records}
    assert rows == {
        ("KRW-DOGE", "buy", "GPT verdict HOLD"),
        ("KRW-STORJ", "buy", "sold today: never buy and sell one market on one day"),
    }


def test_bear_regime_keeps_the_sells_and_blocks_every_buy(ledger: TradingLedger, tmp_path: Path) -> None:
    frames = upstream()
    frames["market_breadth"] = pd.DataFrame([{"regime": "bear", "allow_new_buys": False, "reason": "breadth 20%"}])
    result = run([*(stand_in(k, f) for k, f in frames.items()), signals], ledger, tmp_path)
    assert result.asset_value("signals")["side"].tolist() == ["sell"]
    assert result.asset_materializations_for_node("signals")[0].metadata["signal_count"].value == 1


def test_empty_upstream_frames_give_zero_signals(tmp_path: Path) -> None:
    empty = {key: frame.iloc[0:0] for key, frame in upstream().items()}
    fresh = TradingLedger(url=f"sqlite:///{tmp_path / 'empty.sqlite'}")
    result = run([*(stand_in(k, f) for k, f in empty.items()), signals], fresh, tmp_path)
    assert result.success
    assert result.asset_materializations_for_node("signals")[0].metadata["signal_count"].value == 0


def test_a_plan_beyond_cash_fails_the_blocking_check_and_stops_downstream(
    ledger: TradingLedger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    planner = signals_module.plan_signals

    def overspending_planner(**kwargs: Any) -> Any:  # as a planner bug would size the buys
        plan = planner(**kwargs)
        return replace(plan, orders=plan.orders.assign(krw_amount=plan.orders["krw_amount"] * 100))

    monkeypatch.setattr(signals_module, "plan_signals", overspending_planner)

    @dg.asset(deps=["signals"], partitions_def=daily)
    def downstream_fills() -> None:
        raise AssertionError("a blocking check failed; this must never run")

    stand_ins = [stand_in(k, f) for k, f in upstream().items()]
    result = run([*stand_ins, signals, downstream_fills], ledger, tmp_path, raise_on_error=False)
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    cash = evaluations["signals_within_cash"]
    assert (cash.passed, cash.severity, cash.blocking) == (False, dg.AssetCheckSeverity.ERROR, True)
    assert cash.metadata["markets"].value == "KRW-BTC, KRW-ETH" and cash.metadata["count"].value == 2
    assert all(e.passed for name, e in evaluations.items() if name != "signals_within_cash")
    assert not result.success
    # Dagster stores the materialisation (and the value) before a failed blocking check fails the
    # step; what it guarantees is that nothing downstream of the step runs.
    assert result.get_failed_step_keys() == {"signals"}
    assert result.asset_materializations_for_node("signals")
    assert (tmp_path / "storage" / "signals" / f"{DAY}.parquet").is_file()
    assert not result.is_node_success("downstream_fills")
    assert result.asset_materializations_for_node("downstream_fills") == []


def test_each_check_catches_its_own_corruption(ledger: TradingLedger, tmp_path: Path) -> None:
    good = run([*(stand_in(k, f) for k, f in upstream().items()), signals], ledger, tmp_path).asset_value("signals")
    cash = ledger.cash_krw(None)
    assert cash_overspend_krw(good, cash) < 0
    assert cash_overspend_krw(good.assign(krw_amount=cash), cash) > 0
    assert below_minimum(good).empty
    assert below_minimum(good.assign(krw_amount=4_999.0))["market"].tolist() == ["KRW-ETH", "KRW-BTC"]
    assert below_minimum(good.assign(volume=1e-9))["market"].tolist() == ["KRW-STORJ"]  # a dust sell
    assert markets_ordered_twice(good) == []
    buy_and_sell = pd.concat([good, good[good["side"] == "sell"].assign(side="buy", krw_amount=10_000.0)])
    assert markets_ordered_twice(buy_and_sell) == ["KRW-STORJ"]
    config = SignalsConfig()
    assert kelly_outside_cap(good, config.kelly_multiplier, config.max_position_fraction).empty
    assert len(kelly_outside_cap(good.assign(kelly_fraction=0.2), 0.5, 0.10)) == 3
    assert len(kelly_outside_cap(good.assign(kelly_fraction=-0.01), 0.5, 0.10)) == 3
    # As the asset reports them: each failing check names the markets it found.
    decision = config.decide(upstream()["strategy_stats"])
    results = {r.check_name: r for r in signal_checks(buy_and_sell.assign(krw_amount=cash), cash, config, decision)}
    assert {name for name, r in results.items() if not r.passed} == {
        "signals_within_cash", "signals_one_order_per_market"}  # fmt: skip
    assert results["signals_one_order_per_market"].metadata["markets"].value == "KRW-STORJ"
    assert results["signals_within_cash"].metadata["count"].value == 3


def test_the_kelly_check_holds_the_plan_to_the_config_the_run_used(ledger: TradingLedger, tmp_path: Path) -> None:
    config = {"kelly_multiplier": 1.0, "max_position_fraction": 0.2}  # full Kelly 0.175, under a 0.2 cap
    result = run(
        [*(stand_in(k, f) for k, f in upstream().items()), signals],
        ledger,
        tmp_path,
        run_config={"ops": {"signals": {"config": config}}},
    )
    assert all(e.passed for e in result.get_asset_check_evaluations())
    orders = result.asset_value("signals")
    assert orders["kelly_fraction"].tolist() == pytest.approx([0.175] * 3)
    # The same rows break the default half-Kelly, 10% cap: the check reads the asset's own config object.
    assert len(kelly_outside_cap(orders, 0.5, 0.10)) == 3
    defaults = SignalsConfig()
    checks = signal_checks(orders, ledger.cash_krw(None), defaults, defaults.decide(upstream()["strategy_stats"]))
    kelly = next(r for r in checks if r.check_name == "signals_kelly_within_cap")
    assert not kelly.passed and kelly.metadata["markets"].value == "KRW-BTC, KRW-ETH, KRW-STORJ"


def test_highest_price_is_derived_from_closes_since_entry_up_to_d() -> None:
    """Quiet days without trading still raise the trailing high; later days never leak in."""
    from makenaide_assets.analysis.signals import with_highest_close_since_entry

    market_data = ReplayMarketData(replay_dir=str(SAMPLE_REPLAY_DIR))
    positions = pd.DataFrame(
        [{"market": "KRW-ETH", "avg_price": 1.0, "highest_price": 1.0, "opened_partition": "2023-10-10"}]
    )
    out = with_highest_close_since_entry(positions, market_data, "2023-10-24")
    eth = candles("KRW-ETH")
    expected = eth[(eth["day"] >= "2023-10-10") & (eth["day"] <= "2023-10-24")]["trade_price"].max()
    assert out.at[0, "highest_price"] == expected
    assert eth[eth["day"] > "2023-10-24"]["trade_price"].max() > expected  # the later rally is not seen
