"""Run a backtest from the shell: the fast engine (default) or the real jobs day by day (dagster).

python -m makenaide_assets.backtest --start 2023-07-12 --end 2023-12-31 [--engine fast|dagster]
    [--replay-dir DIR] [--workdir DIR] [--analyst rules|openai]

Both engines write the same files in --workdir (trades.csv, curve.csv, orders.csv, days.csv) and
print the same summary; the fast one prints a line per month, the dagster one a line per day.
"""

import argparse
import sys
from pathlib import Path

from makenaide_assets import settings
from makenaide_assets.backtest.asset import summary_table
from makenaide_assets.backtest.evaluate import evaluate
from makenaide_assets.backtest.fast import FastEngineRefusal, run_fast
from makenaide_assets.backtest.runner import BacktestSpec, run_backtest
from makenaide_assets.resources.market_data import ReplayMarketData

ENGINES = {"fast": run_fast, "dagster": run_backtest}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m makenaide_assets.backtest", description=__doc__)
    parser.add_argument("--start", required=True)
    parser.add_argument("--end", required=True)
    parser.add_argument("--engine", choices=sorted(ENGINES), default="fast", help="default: fast")
    parser.add_argument("--replay-dir", default=None, help="default: MAKENAIDE_REPLAY_DIR or the packaged sample")
    parser.add_argument("--workdir", default=None, help="default: <var>/backtests/<recording>_<start>_<end>")
    parser.add_argument(
        "--analyst", choices=["rules", "openai"], default="rules", help="openai: GPT, dagster engine only"
    )
    args = parser.parse_args(argv)
    replay = args.replay_dir or settings.replay_dir()
    default = settings.var_dir() / "backtests" / f"{Path(replay).name}_{args.start}_{args.end}"
    spec = BacktestSpec(
        start=args.start, end=args.end, replay_dir=replay, workdir=Path(args.workdir or default), analyst=args.analyst
    )
    print(f"{args.engine} engine: {spec.start} → {spec.end} on {replay}", flush=True)
    try:
        run = ENGINES[args.engine](spec, progress=lambda line: print(line, flush=True))
    except FastEngineRefusal as exc:
        print(f"the fast engine refuses: {exc}", file=sys.stderr)
        return 2
    result = evaluate(run, ReplayMarketData(replay_dir=replay))
    result.curve.to_csv(spec.workdir / "curve.csv", index=False)
    result.trips.to_csv(spec.workdir / "trades.csv", index=False)
    print(f"\n{len(run.days)} partitions in {run.seconds:.1f}s ({run.seconds / len(run.days):.3f}s each)")
    print(summary_table(result))
    print(f"\nentries by sizing:\n{result.sizing.groupby(['kelly_source', 'kelly_action']).size().to_string()}")
    print(f"equity reconciled on {result.reconciled_days} days, max diff {result.max_reconcile_diff_krw:.6f} KRW")
    print(f"results in {spec.workdir}: trades.csv, curve.csv, orders.csv, days.csv")
    return 0 if run.days["analysis_ok"].all() else 1


if __name__ == "__main__":
    sys.exit(main())
