"""The fast engine against the Dagster engine: the same trades and the same equity, on both recordings.

Each window is run through both engines in the test (the Dagster one is the real jobs day by day,
~2 s a day): the sample's 2023-12-05 → 12-31 (27 days: two entries, a pyramid add, two intraday
stop exits) and the long recording's 2023-11-10 → 12-19 (40 days: 14 fills, 5 closed trades, stop
exits among them). Counts, identifiers and dates must be equal; money within 1e-6 KRW. The
comparison is checked against itself too: a result changed in one place fails it.
"""

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from makenaide_assets.analysis.candidates import candidates_of
from makenaide_assets.backtest.evaluate import BacktestResult, evaluate
from makenaide_assets.backtest.fast import FastEngine, FastEngineRefusal, Prepared, run_fast
from makenaide_assets.backtest.runner import BacktestRun, BacktestSpec, run_backtest
from makenaide_assets.market.indicators import indicators_of, universe_candles
from makenaide_assets.market.universe import universe_frame
from makenaide_assets.resources.market_data import ReplayMarketData
from makenaide_assets.settings import SAMPLE_REPLAY_DIR
from makenaide_assets.strategy.calendar import partition_close

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
MONEY_KRW = 1e-6
WINDOWS = {
    "sample": (SAMPLE_REPLAY_DIR, "2023-12-05", "2023-12-31", 5),
    "long": (SHARED_DATA / "upbit-long", "2023-11-10", "2023-12-19", 5),
}
# The run's own bookkeeping, not the backtest's result.
TIMINGS = ["analysis_s", "trading_s"]
EXACT_CURVE = ["date", "open_positions", "analysis_ok", "signal_count", "traded", "trading_ok"]
MONEY_CURVE = ["cash_krw", "positions_value_krw", "equity_krw", "benchmark_krw"]
EXACT_TRADES = ["market", "entry_partition", "exit_partition", "entries", "holding_days"]
EXACT_ORDERS = ["identifier", "partition_key", "market", "side", "status", "kind", "executed_at", "triggered_at"]
MONEY_ORDERS = ["price", "volume", "fee", "krw_value", "realized_pnl_krw"]


Outcome = tuple[BacktestRun, BacktestResult]


def both_engines(name: str, root: Path) -> tuple[Outcome, Outcome]:
    replay, start, end, _ = WINDOWS[name]
    market_data = ReplayMarketData(replay_dir=str(replay))
    runs = []
    for engine, run in (("dagster", run_backtest), ("fast", run_fast)):
        spec = BacktestSpec(start=start, end=end, replay_dir=str(replay), workdir=root / engine)
        done = run(spec)
        runs.append((done, evaluate(done, market_data)))
    return runs[0], runs[1]


@pytest.fixture(scope="module", params=sorted(WINDOWS))
def engines(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp(f"engines-{request.param}")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MAKENAIDE_VAR", str(root / "var"))
        for variable in ("MAKENAIDE_STORAGE", "MAKENAIDE_LEDGER_URL", "MAKENAIDE_REPLAY_DIR", "MAKENAIDE_HALT"):
            patch.delenv(variable, raising=False)
        return request.param, *both_engines(request.param, root)


def assert_same(dagster: Outcome, fast: Outcome) -> None:
    """trades.csv, curve.csv and the orders of both engines: equal, money within 1e-6 KRW."""
    (d_run, d), (f_run, f) = dagster, fast
    assert len(f.trips) == len(d.trips), f"{len(f.trips)} trades against {len(d.trips)}"
    pd.testing.assert_frame_equal(f.trips[EXACT_TRADES], d.trips[EXACT_TRADES], check_dtype=False)
    np.testing.assert_allclose(f.trips["pnl_krw"], d.trips["pnl_krw"], rtol=0, atol=MONEY_KRW)
    np.testing.assert_allclose(f.trips["return_pct"], d.trips["return_pct"], rtol=1e-9, atol=1e-9)
    assert list(f.curve.columns) == list(d.curve.columns)
    pd.testing.assert_frame_equal(f.curve[EXACT_CURVE], d.curve[EXACT_CURVE], check_dtype=False)
    for column in MONEY_CURVE:
        np.testing.assert_allclose(f.curve[column], d.curve[column], rtol=0, atol=MONEY_KRW, err_msg=column)
    for column in ["exposure", "drawdown_pct"]:
        np.testing.assert_allclose(f.curve[column], d.curve[column], rtol=0, atol=1e-12, err_msg=column)
    d_orders, f_orders = _orders(d_run), _orders(f_run)
    pd.testing.assert_frame_equal(f_orders[EXACT_ORDERS], d_orders[EXACT_ORDERS], check_dtype=False)
    for column in MONEY_ORDERS:
        np.testing.assert_allclose(f_orders[column], d_orders[column], rtol=0, atol=MONEY_KRW, err_msg=column)
    pd.testing.assert_frame_equal(f.sizing, d.sizing, check_dtype=False)
    np.testing.assert_allclose(
        f_run.ledger_equity["equity_krw"], d_run.ledger_equity["equity_krw"].astype(float), rtol=0, atol=MONEY_KRW
    )


def _orders(run: BacktestRun) -> pd.DataFrame:
    done = run.orders[run.orders["status"] == "done"]
    # The ledger reads instants back in microseconds, the fast engine keeps nanoseconds: same instants.
    done = done.assign(**{c: pd.to_datetime(done[c]).astype("datetime64[ns]") for c in ("executed_at", "triggered_at")})
    return done.sort_values(["partition_key", "kind", "identifier"], ignore_index=True)


def test_the_fast_engine_trades_and_values_as_the_dagster_engine(engines) -> None:
    name, dagster, fast = engines
    assert_same(dagster, fast)
    fills = len(_orders(fast[0]))
    assert fills >= WINDOWS[name][3], f"the {name} window must trade: {fills} fills"
    assert (fast[0].orders["kind"] == "stop").any(), "the window must exercise the stop watch"
    assert fast[0].engine == "fast" and dagster[0].engine == "dagster"


def test_the_comparison_fails_when_one_side_changes(engines) -> None:
    """A fill one won dearer, a day's equity moved by a hundredth of a won, a trade missing: each fails."""
    _, dagster, (f_run, f) = engines
    dearer = f_run.orders.copy()
    first = dearer.index[dearer["status"] == "done"][0]
    dearer.loc[first, "price"] += 1.0
    curve = f.curve.copy()
    curve.loc[len(curve) // 2, "equity_krw"] += 0.01
    for changed in (
        (replace(f_run, orders=dearer), f),
        (f_run, replace(f, curve=curve)),
        (f_run, replace(f, trips=f.trips.iloc[1:].reset_index(drop=True))),
    ):
        with pytest.raises(AssertionError):
            assert_same(dagster, changed)


@pytest.mark.parametrize("day", ["2023-07-12", "2023-10-31", "2023-12-06", "2023-12-31"])
def test_the_days_prepared_together_are_the_assets_days(day: str) -> None:
    """universe, daily_candles, daily_indicators and candidates of a day, computed for a month of days
    at once, equal what the assets' functions give for that day alone."""
    market_data = ReplayMarketData(replay_dir=str(SAMPLE_REPLAY_DIR))
    spec = BacktestSpec(start=day, end=day, replay_dir=str(SAMPLE_REPLAY_DIR), workdir=Path("unused"))
    engine = FastEngine.for_spec(spec)
    keys = pd.date_range(pd.Timestamp(day) - pd.Timedelta(days=3), day).strftime("%Y-%m-%d").tolist()
    prepared: Prepared = engine.prepare(keys)[day]
    assert prepared.error is None
    thresholds = engine.resources["universe_thresholds"]
    as_of = partition_close(day)
    universe = universe_frame(market_data, thresholds, engine.tickers(as_of), as_of)
    pd.testing.assert_frame_equal(prepared.universe, universe)
    candles, _ = universe_candles(market_data, thresholds, universe, as_of)
    mine, _ = engine.day_data.candles(prepared.universe, thresholds, day)
    pd.testing.assert_frame_equal(mine, candles)
    indicators = indicators_of(candles)
    pd.testing.assert_frame_equal(prepared.indicators, indicators)
    pd.testing.assert_frame_equal(prepared.candidates, candidates_of(candles, indicators))


def test_what_cannot_be_reproduced_is_refused(tmp_path: Path) -> None:
    base = BacktestSpec(start="2023-12-01", end="2023-12-02", replay_dir=str(SAMPLE_REPLAY_DIR), workdir=tmp_path)
    with pytest.raises(FastEngineRefusal, match="GPT verdicts cannot be reproduced"):
        run_fast(replace(base, analyst="openai"))
    with pytest.raises(ValueError, match="min_score"):  # the step's own validation, before anything runs
        run_fast(replace(base, ops_config={"breadth_and_candidates": {"config": {"min_score": 0}}}))
    with pytest.raises(FastEngineRefusal, match="gpt_verdicts"):
        run_fast(replace(base, ops_config={"gpt_verdicts": {"config": {}}}))
    assert not os.listdir(tmp_path), "a refused backtest writes nothing"
