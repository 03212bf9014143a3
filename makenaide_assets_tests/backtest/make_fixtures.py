"""Regenerate the recorded-backtest fixtures the vectorbt cross-check reads.

Each fixture is the output of the real pipeline: `run_backtest` (analysis_job, signals_sensor,
trading_job, day by day, paper broker) over a range of a recording, then its fills and equity
curve written here. Only fills and the curve are stored; the daily closes are read back from the
recording itself when the test runs.

    .venv/bin/python -m makenaide_assets_tests.backtest.make_fixtures [sample|long ...]

`sample` took 6 minutes on this 2-core machine, `long` 33 minutes (see docs/backtest.md).
The sandbox of each run stays in <var>/backtests/fixture-<name> for a look at its ledger and Parquet.
"""

import json
import sys
from pathlib import Path

from makenaide_assets import settings
from makenaide_assets.backtest.evaluate import evaluate
from makenaide_assets.backtest.runner import BacktestSpec, run_backtest
from makenaide_assets.resources.broker import PAPER_SLIPPAGE_BPS
from makenaide_assets.resources.market_data import ReplayMarketData
from makenaide_assets.strategy.ticks import FEE_RATE
from makenaide_assets_tests.backtest.vectorbt_replay import FIXTURES, replay_dir

RANGES = {
    "sample": ("upbit_sample", "2023-07-12", "2023-12-31"),
    "long": ("upbit-long", "2022-01-01", "2025-09-29"),
}
FILL_COLUMNS = ["partition_key", "market", "side", "price", "volume", "fee", "krw_value", "realized_pnl_krw"]
CURVE_COLUMNS = ["date", "cash_krw", "positions_value_krw", "equity_krw", "benchmark_krw"]


def write(name: str, workdir: Path) -> Path:
    recording, start, end = RANGES[name]
    spec = BacktestSpec(start=start, end=end, replay_dir=str(replay_dir(recording)), workdir=workdir)
    run = run_backtest(spec, progress=lambda line: print(line, flush=True))
    if not run.days["analysis_ok"].all():
        raise SystemExit(f"some partitions failed; not writing a fixture:\n{run.days[~run.days['analysis_ok']]}")
    result = evaluate(run, ReplayMarketData(replay_dir=spec.replay_dir))
    out = FIXTURES / name
    out.mkdir(parents=True, exist_ok=True)
    run.fills()[FILL_COLUMNS].to_csv(out / "fills.csv", index=False)
    result.curve[CURVE_COLUMNS].to_csv(out / "curve.csv", index=False, float_format="%.6f")
    meta = {
        "recording": recording,
        "start": start,
        "end": end,
        "initial_cash_krw": spec.initial_cash_krw,
        "fee_rate": FEE_RATE,
        "slippage_bps": PAPER_SLIPPAGE_BPS,
        "partitions": len(run.days),
        "seconds": round(run.seconds),
        "closed_trades": result.trade_stats.trades,
        "made_by": "python -m makenaide_assets_tests.backtest.make_fixtures " + name,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out


def main(names: list[str]) -> None:
    for name in names or list(RANGES):
        print(f"wrote {write(name, settings.var_dir() / 'backtests' / f'fixture-{name}')}")


if __name__ == "__main__":
    main(sys.argv[1:])
