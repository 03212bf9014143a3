"""The bare-Python floor of one analysis_job partition: the same pure functions, no Dagster.

    .venv/bin/python -m benchmarks.analysis_floor --replay-dir DIR --partition 2023-12-06 --out DIR

Reads the replay's CSV files, screens the universe (demo's 6 months, 300 M KRW), and calls what
the assets call: strategy.indicators, .rules, .breadth, .timing, strategy.payload and
.rules_verdict, strategy.orders (empty ledger: 10 M KRW, configured Kelly). It writes candidates,
gpt_verdicts, timing_4h and signals as Parquet so benchmarks/analysis_job.py can check they equal
the job's. Only `makenaide_assets.strategy` is imported: it is Dagster-free by construction
(makenaide_assets_tests/test_architecture.py), and the floor asserts Dagster was never imported.
"""

import argparse
import json
import sys
import time
from pathlib import Path

STARTED = time.perf_counter()
PACKAGE = Path(__file__).resolve().parents[1] / "makenaide_assets"

import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from makenaide_assets.strategy.breadth import market_breadth  # noqa: E402
from makenaide_assets.strategy.candles import (  # noqa: E402
    CANDLE_COLUMNS,
    closed_candles,
    normalise_candles,
    parse_market_list,
)
from makenaide_assets.strategy.indicators import indicator_snapshot  # noqa: E402
from makenaide_assets.strategy.orders import plan_signals  # noqa: E402
from makenaide_assets.strategy.payload import verdict_request  # noqa: E402
from makenaide_assets.strategy.rules import evaluate_candidates  # noqa: E402
from makenaide_assets.strategy.rules_verdict import RULES_MODEL, rules_verdict  # noqa: E402
from makenaide_assets.strategy.sizing import KellyInputs  # noqa: E402
from makenaide_assets.strategy.timing import evaluate_4h  # noqa: E402
from makenaide_assets.strategy.verdict_schema import AnalystAnswer, answer_row, verdicts_frame  # noqa: E402

MIN_MONTHS, MIN_VALUE, HISTORY_DAYS, CANDLES_4H, CASH = 6, 300_000_000.0, 400, 200, 10_000_000.0


def read(root: Path, interval: str, market: str) -> pd.DataFrame:
    path = root / "candles" / interval / f"{market}.csv.gz"
    return normalise_candles(pd.read_csv(path) if path.is_file() else pd.DataFrame(), source=str(path))


def analyse(root: Path, partition: str) -> dict[str, pd.DataFrame]:
    as_of = pd.Timestamp(partition) + pd.Timedelta(days=1)
    markets = parse_market_list(json.loads((root / "markets.json").read_text(encoding="utf-8")), source="markets")
    blacklist = yaml.safe_load((PACKAGE / "config" / "blacklist.yaml").read_text(encoding="utf-8")) or {}
    excluded = set(blacklist.get("blacklist") or {}) | set(markets.loc[markets["market_warning"] != "NONE", "market"])
    days, universe = {}, []
    for market in sorted(set(markets["market"]) - excluded):
        day = closed_candles(read(root, "day", market), "day", as_of)
        periods = day["candle_date_time_utc"].dt.to_period("M").unique()
        months = int(((periods + 1).to_timestamp() <= as_of).sum())  # monthly candles closed by as_of
        fresh = len(day) and day["candle_date_time_utc"].iloc[-1] == pd.Timestamp(partition)
        value = day["candle_acc_trade_price"].iloc[-1] if fresh else 0.0
        days[market] = day.tail(HISTORY_DAYS)
        if months >= MIN_MONTHS and value >= MIN_VALUE:
            universe.append(market)
    candles = pd.concat([days[m].assign(market=m) for m in universe], ignore_index=True)[["market", *CANDLE_COLUMNS]]
    btc = days["KRW-BTC"].reset_index(drop=True)
    indicators = indicator_snapshot(candles, btc)
    btc_rows = indicators[indicators["market"] == "KRW-BTC"]
    btc_row = btc_rows.iloc[0] if len(btc_rows) else indicator_snapshot(btc.assign(market="KRW-BTC"), btc).iloc[0]
    breadth = pd.DataFrame([{"date": partition, **market_breadth(indicators, btc_row)}])
    candidates = evaluate_candidates(candles, indicators)
    rows = []
    for candidate in candidates[candidates["passed"]].to_dict("records"):
        market = candidate["market"]
        snapshot = indicators[indicators["market"] == market].iloc[-1].to_dict()
        request = verdict_request(market, partition, candles[candles["market"] == market], snapshot, candidate)
        answer = AnalystAnswer(rules_verdict(request.payload), source="rules", model=RULES_MODEL, prompt_hash="")
        rows.append(answer_row(request, answer))
    verdicts = verdicts_frame(rows)
    buys = verdicts[(verdicts["verdict"] == "BUY") & (verdicts["source"] != "error")]["market"]
    timing = pd.DataFrame(
        [{"market": m, **evaluate_4h(read(root, "minute240", m).pipe(_closed_4h, as_of), as_of=as_of)} for m in buys]
    )
    plan = plan_signals(
        partition_key=partition, candidates=candidates, gpt_verdicts=verdicts, timing_4h=timing,
        daily_indicators=indicators, market_breadth=breadth, positions=pd.DataFrame(), cash_krw=CASH,
        kelly_inputs=KellyInputs(0.45, 2.0, source="configured"),
    )  # fmt: skip
    return {"candidates": candidates, "gpt_verdicts": verdicts, "timing_4h": timing, "signals": plan.orders}


def _closed_4h(frame: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    return closed_candles(frame, "minute240", as_of).tail(CANDLES_4H).reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replay-dir", required=True, type=Path)
    parser.add_argument("--partition", required=True)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    imported = time.perf_counter()
    outputs = analyse(args.replay_dir, args.partition)
    computed = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, frame in outputs.items():
        frame.to_pickle(args.out / f"{name}.pkl")
    if "dagster" in sys.modules:
        raise SystemExit("the floor imported Dagster")
    print(f"imports {imported - STARTED:.2f} s, analysis {computed - imported:.2f} s (after interpreter start)")


if __name__ == "__main__":
    main()
