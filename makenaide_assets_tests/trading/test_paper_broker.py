"""PaperBroker on the shipped replay: real prices, one order per signal, survives a crash."""

import logging
from pathlib import Path

import pandas as pd
import pytest

from makenaide_assets.resources.broker import PaperBroker
from makenaide_assets.resources.ledger import TradingLedger, identifier_for_signal
from makenaide_assets.resources.ledger import schema as t
from makenaide_assets.resources.market_data import ReplayMarketData

DAY = "2023-07-03"  # fills at the first 4-hour candle of 2023-07-04 (00:00 UTC)
LOG = logging.getLogger("test_paper_broker")


class Killed(RuntimeError):
    pass


class CountingPaperBroker(PaperBroker):
    """Counts what reaches the (paper) exchange; optionally dies right after it got there."""

    def model_post_init(self, context: object) -> None:
        super().model_post_init(context)
        self._state = {"submitted": 0, "kill": False}

    def _on_submitted(self, identifier: str) -> None:
        self._state["submitted"] += 1
        if self._state["kill"]:
            raise Killed(f"process killed after {identifier} reached the exchange")


@pytest.fixture
def ledger(tmp_path: Path) -> TradingLedger:
    return TradingLedger(url=f"sqlite:///{tmp_path / 'ledger.sqlite'}", initial_cash_krw=10_000_000.0)


@pytest.fixture
def replay(sample_dir: Path) -> ReplayMarketData:
    return ReplayMarketData(replay_dir=str(sample_dir))


def _recorded_open(sample_dir: Path, market: str, interval: str, at: str) -> float:
    candles = pd.read_csv(sample_dir / "candles" / interval / f"{market}.csv.gz")
    row = candles[candles["candle_date_time_utc"] == at]
    assert len(row) == 1, f"the sample should hold {market} {interval} at {at}"
    return float(row["opening_price"].iloc[0])


def _signals(*rows: dict) -> pd.DataFrame:
    return pd.DataFrame(list(rows))


BUY_BTC = {"market": "KRW-BTC", "side": "buy", "price": 41_000_000.0, "krw_amount": 1_000_000.0, "reason": "vcp"}


def test_fills_at_the_recorded_price_after_the_close_plus_slippage_and_fee(
    ledger: TradingLedger, replay: ReplayMarketData, sample_dir: Path
) -> None:
    broker = PaperBroker(ledger=ledger, market_data=replay, slippage_bps=10)
    frame = broker.execute(_signals(BUY_BTC), DAY, LOG)
    recorded = _recorded_open(sample_dir, "KRW-BTC", "minute240", "2023-07-04T00:00:00")
    row = frame.iloc[0]
    assert row["status"] == t.DONE
    assert row["identifier"] == identifier_for_signal(DAY, BUY_BTC)
    assert row["price"] == pytest.approx(recorded * 1.001)
    assert row["volume"] == round(row["volume"], 8) and row["volume"] <= 1_000_000 / row["price"]
    assert row["fee"] == pytest.approx(row["krw_value"] * 0.0005)
    assert row["executed_at"] == pd.Timestamp("2023-07-04")
    assert ledger.cash_krw(None) == pytest.approx(10_000_000 - row["krw_value"] - row["fee"])


def test_markets_without_4h_candles_fill_at_the_next_daily_open(
    ledger: TradingLedger, replay: ReplayMarketData, sample_dir: Path
) -> None:
    signal = {"market": "KRW-XLM", "side": "buy", "price": 130.0, "krw_amount": 200_000.0, "reason": "ma200"}
    broker = PaperBroker(ledger=ledger, market_data=replay, slippage_bps=0)
    row = broker.execute(_signals(signal), DAY, LOG).iloc[0]
    assert row["price"] == pytest.approx(_recorded_open(sample_dir, "KRW-XLM", "day", "2023-07-04T00:00:00"))


def test_rerunning_executes_no_new_order(ledger: TradingLedger, replay: ReplayMarketData) -> None:
    broker = CountingPaperBroker(ledger=ledger, market_data=replay)
    signals = _signals(BUY_BTC, {**BUY_BTC, "market": "KRW-ETH", "krw_amount": 500_000.0})
    first = broker.execute(signals, DAY, LOG)
    cash = ledger.cash_krw(None)
    second = broker.execute(signals, DAY, LOG)
    assert broker._state["submitted"] == 2
    pd.testing.assert_frame_equal(first, second)
    assert ledger.cash_krw(None) == cash


def test_a_crash_between_submission_and_booking_ends_with_exactly_one_fill(
    ledger: TradingLedger, replay: ReplayMarketData
) -> None:
    crashing = CountingPaperBroker(ledger=ledger, market_data=replay)
    crashing._state["kill"] = True
    with pytest.raises(Killed):
        crashing.execute(_signals(BUY_BTC), DAY, LOG)
    identifier = identifier_for_signal(DAY, BUY_BTC)
    assert ledger.order(identifier)["status"] == t.SUBMITTED
    assert ledger.cash_krw(None) == 10_000_000 and ledger.open_positions(None).empty

    rerun = CountingPaperBroker(ledger=ledger, market_data=replay)
    frame = rerun.execute(_signals(BUY_BTC), DAY, LOG)
    assert frame["status"].tolist() == [t.DONE]
    assert rerun._state["submitted"] == 1  # the recorded intent was finished, not a new order
    row = frame.iloc[0]
    assert ledger.cash_krw(None) == pytest.approx(10_000_000 - row["krw_value"] - row["fee"])
    assert ledger.open_positions(None)["volume"].tolist() == [pytest.approx(row["volume"])]
    assert len(ledger.cash_history(None)) == 2  # the seed and this one fill


def test_buys_are_capped_by_cash_and_then_skipped_visibly(ledger: TradingLedger, replay: ReplayMarketData) -> None:
    big = {**BUY_BTC, "krw_amount": 9_000_000.0}
    other = {**BUY_BTC, "market": "KRW-ETH", "krw_amount": 2_000_000.0}
    third = {**BUY_BTC, "market": "KRW-DOGE", "krw_amount": 1_000_000.0}
    frame = (
        PaperBroker(ledger=ledger, market_data=replay)
        .execute(_signals(big, other, third), DAY, LOG)
        .set_index("market")
    )
    assert frame.loc["KRW-ETH", "status"] == t.DONE
    assert frame.loc["KRW-ETH", "status_reason"].startswith("reduced_to_cash")
    assert frame.loc["KRW-DOGE", "status"] == t.SKIPPED
    assert frame.loc["KRW-DOGE", "status_reason"].startswith("insufficient_cash")
    assert 0 <= ledger.cash_krw(None) < 5_000


def test_no_price_means_skipped_never_a_made_up_fill(ledger: TradingLedger, replay: ReplayMarketData) -> None:
    # The sample ends on 2023-12-31: nothing trades after that partition closes.
    frame = PaperBroker(ledger=ledger, market_data=replay).execute(_signals(BUY_BTC), "2023-12-31", LOG)
    assert frame["status"].iloc[0] == t.SKIPPED
    assert pd.isna(frame["price"].iloc[0])
    assert frame["status_reason"].iloc[0].startswith("no_price")
    assert ledger.cash_krw(None) == 10_000_000


def test_sells_run_first_and_only_what_is_held(ledger: TradingLedger, replay: ReplayMarketData) -> None:
    broker = PaperBroker(ledger=ledger, market_data=replay)
    bought = broker.execute(_signals(BUY_BTC), DAY, LOG).iloc[0]
    sell_all = {"market": "KRW-BTC", "side": "sell", "price": 42_000_000.0, "volume": 5.0, "reason": "stop"}
    rebuy = {**BUY_BTC, "krw_amount": 2_000_000.0}
    frame = broker.execute(_signals(rebuy, sell_all), "2023-07-10", LOG)
    assert frame["side"].tolist() == ["sell", "buy"]
    assert frame["volume"].iloc[0] == pytest.approx(bought["volume"])  # clamped to the position
    assert frame["status"].tolist() == [t.DONE, t.DONE]
    assert ledger.open_positions(None)["entries"].tolist() == [1]


def test_one_entry_per_market_and_day(ledger: TradingLedger, replay: ReplayMarketData) -> None:
    broker = PaperBroker(ledger=ledger, market_data=replay)
    broker.execute(_signals(BUY_BTC), DAY, LOG)
    # A re-materialised `signals` now sees the position and says "add" for the same day.
    frame = broker.execute(_signals({**BUY_BTC, "side": "add"}), DAY, LOG)
    assert frame["status"].tolist() == [t.DONE, t.SKIPPED]
    assert frame["status_reason"].iloc[1].startswith("already_entered")
