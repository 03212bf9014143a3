"""Stops watched between daily runs (issue 14): a replayed day whose price crossed the stop-loss
inside a 4-hour candle, through the real jobs, the real `stop_watch_sensor` and the paper broker;
the live watch's one /v1/ticker call; the sensor's timing."""

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from makenaide_assets.backtest.runner import BacktestSpec, run_backtest
from makenaide_assets.days import DayRunner, at_instant
from makenaide_assets.definitions import build_defs
from makenaide_assets.resources.broker import PAPER_SLIPPAGE_BPS
from makenaide_assets.resources.ledger import CutOff, TradingLedger
from makenaide_assets.resources.upbit_quotation import UpbitMarketData
from makenaide_assets.strategy.exits import STOP_LOSS_PCT
from makenaide_assets.strategy.ticks import round_price_to_tick
from makenaide_assets.testing.upbit_server import UpbitServer
from makenaide_assets.trading.stop_watch import StopWatchConfig, stop_levels_config

DAY, NEXT = "2023-11-17", "2023-11-18"  # KRW-DOGE is bought after 11-17 and falls 8 % on 11-18


def _h4(replay: Path, market: str, day: str) -> pd.DataFrame:
    frame = pd.read_csv(replay / "candles" / "minute240" / f"{market}.csv.gz")
    frame["at"] = pd.to_datetime(frame["candle_date_time_utc"])
    return frame[frame["at"].dt.strftime("%Y-%m-%d") == day].sort_values("at").reset_index(drop=True)


def test_a_stop_crossed_inside_a_4h_candle_is_sold_at_the_stop_before_the_next_daily_run(
    long_dir: Path, isolated_state: Path, monkeypatch: pytest.MonkeyPatch, webhook: tuple[str, list[dict]]
) -> None:
    url, received = webhook
    monkeypatch.setenv("MAKENAIDE_REPLAY_DIR", str(long_dir))
    monkeypatch.setenv("MAKENAIDE_SLACK_WEBHOOK_URL", url)
    defs, instance = build_defs(), dg.DagsterInstance.ephemeral()
    runner = DayRunner(defs, instance)

    day = runner.run(DAY)
    assert day.traded == [DAY] and day.trading_ok and day.stopped == ["KRW-DOGE"], day

    ledger = TradingLedger(url=f"sqlite:///{isolated_state / 'ledger.sqlite'}")
    bought = ledger.fills_for_partition(DAY).set_index("market").loc["KRW-DOGE"]
    exits = ledger.stop_exits(DAY)
    assert len(exits) == 1
    sold = exits.iloc[0]
    # Independently of the code under test: the -8 % stop-loss below the entry, on the tick, and
    # the first 4-hour candle of 11-18 whose low reached it (it opened above it: no gap).
    stop = round_price_to_tick(float(bought["price"]) * (1 - STOP_LOSS_PCT), "buy")
    candles = _h4(long_dir, "KRW-DOGE", NEXT)
    crossed = candles[candles["low_price"] <= stop].iloc[0]
    assert (candles.loc[: crossed.name - 1, "low_price"] > stop).all() and crossed["opening_price"] > stop
    assert (sold["side"], sold["kind"], sold["status"]) == ("sell", "stop", "done")
    assert sold["price"] == pytest.approx(stop * (1 - PAPER_SLIPPAGE_BPS / 10_000))
    assert sold["executed_at"] == sold["triggered_at"] == crossed["at"]
    assert "intraday stop-loss" in sold["reason"]

    # D's own values never see it (they were valued before it); D+1's daily run does.
    held_at_d = ledger.open_positions(CutOff(DAY, own_orders=True))
    assert "KRW-DOGE" in set(held_at_d["market"])
    assert "KRW-DOGE" not in set(ledger.open_positions(CutOff(NEXT))["market"])
    next_day = runner.run(NEXT)
    assert next_day.analysis_ok, next_day.error
    signals = defs.load_asset_value("signals", partition_key=NEXT, instance=instance)
    assert "KRW-DOGE" not in set(signals["market"])

    messages = [m["text"] for m in received]
    assert any("sold" in m and "KRW-DOGE" in m and "intraday stop-loss" in m for m in messages), messages

    # Re-run after the watch ended (the real clock is years later): nothing new is sold.
    again = defs.resolve_job_def("stop_exit_job").execute_in_process(partition_key=DAY, instance=instance)
    assert again.success
    pd.testing.assert_frame_equal(ledger.stop_exits(DAY), exits)
    ledger.engine().dispose()


def test_the_backtest_includes_the_intraday_exit(long_dir: Path, tmp_path: Path) -> None:
    spec = BacktestSpec(start=DAY, end=NEXT, replay_dir=str(long_dir), workdir=tmp_path / "bt")
    orders = run_backtest(spec).orders
    sells = orders[(orders["side"] == "sell") & (orders["status"] == "done")]
    assert list(sells["market"]) == ["KRW-DOGE"] and list(sells["kind"]) == ["stop"]
    assert sells["executed_at"].iloc[0] == _h4(long_dir, "KRW-DOGE", NEXT).query("low_price <= 106")["at"].iloc[0]


def test_the_sensor_waits_for_a_crossing_and_for_the_watch(
    long_dir: Path, isolated_state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAKENAIDE_REPLAY_DIR", str(long_dir))
    defs, instance = build_defs(), dg.DagsterInstance.ephemeral()
    # The daily run only; its watch is ticked by hand below, at three instants.
    for job in ("analysis_job", "trading_job"):
        assert defs.resolve_job_def(job).execute_in_process(partition_key=DAY, instance=instance).success
    sensor = defs.resolve_sensor_def("stop_watch_sensor")
    resources = {key: defs.resources[key] for key in sensor.required_resource_keys}

    def tick(at: str) -> dg.SensorResult | dg.SkipReason:
        with (
            at_instant(pd.Timestamp(at)),
            dg.build_sensor_context(instance, definitions=defs, resources=resources) as context,
        ):
            return sensor.evaluate_tick(context)

    before = tick(f"{NEXT} 08:00")  # the 00:00 and 04:00 candles have closed, both above the stop
    assert not before.run_requests and "no level crossed" in str(before.skip_message)
    after = tick(f"{NEXT} 16:00")  # the 12:00 candle crossed it
    assert [r.partition_key for r in after.run_requests or []] == [DAY]
    assert after.run_requests[0].tags["makenaide/stop_exits"] == "KRW-DOGE"  # type: ignore[index]
    over = tick("2023-11-19 00:05")  # the watch after 11-17 is over; 11-18 has not been traded yet
    assert not over.run_requests and "no stop_levels for 2023-11-18 yet" in str(over.skip_message)


def test_the_live_watch_is_one_ticker_call_for_every_held_market(long_dir: Path) -> None:
    # The local Upbit server answers /v1/ticker from the recording at its clock: mid-candle on
    # 11-18, the last trade is the open of the 4-hour candle under way.
    markets = ["KRW-BTC", "KRW-DOGE", "KRW-ETH"]
    with UpbitServer(long_dir, pd.Timestamp(f"{NEXT} 13:00")) as server:
        market_data = UpbitMarketData(base_url=server.url)
        prices = market_data.intraday_prices(markets, pd.Timestamp(NEXT), pd.Timestamp(f"{NEXT} 13:00"))
        assert server.stats()["by_group"] == {"ticker": 1}
    assert list(prices["market"]) == markets
    for row in prices.itertuples(index=False):
        candle = _h4(long_dir, row.market, NEXT).set_index("at").loc[pd.Timestamp(f"{NEXT} 12:00")]
        assert row.at == pd.Timestamp(f"{NEXT} 12:00")
        assert row.open == row.high == row.low == row.close == candle["opening_price"]


def test_the_watch_takes_the_exits_signals_is_given() -> None:
    # A backtest (or walk-forward cell) gives `signals` other exits: `stop_levels` gets the same.
    signals_config = {"stop_loss_pct": 0.05, "take_profit_pct": 0.4, "min_confidence": 70.0}
    config = stop_levels_config(signals_config)
    assert config == {"ops": {"stop_levels": {"config": {"stop_loss_pct": 0.05, "take_profit_pct": 0.4}}}}
    exits = StopWatchConfig(**config["ops"]["stop_levels"]["config"]).exits()
    assert (exits.stop_loss_pct, exits.take_profit_pct, exits.atr_multiple) == (0.05, 0.4, 3.0)
    assert stop_levels_config({"min_confidence": 70.0}) == {}
