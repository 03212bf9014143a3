"""Run a backtest from the shell with one progress line per day (the asset runs the same code).

python -m makenaide_assets.backtest --start 2023-07-12 --end 2023-12-31 [--replay-dir DIR] [--workdir DIR]
"""

import argparse
import sys
from pathlib import Path

from makenaide_assets import settings
from makenaide_assets.backtest.asset import summary_table
from makenaide_assets.backtest.evaluate import evaluate
from makenaide_assets.backtest.runner import BacktestSpec, run_backtest
from makenaide_assets.resources.market_data import ReplayMarketData


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m makenaide_assets.backtest", description=__doc__)
    parser.add_argument("--start", required=True)
    parser.add_argument("--end", required=True)
    parser.add_argument("--replay-dir", default=None, help="default: MAKENAIDE_REPLAY_DIR or the packaged sample")
    parser.add_argument("--workdir", default=None, help="default: <var>/backtests/<recording>_<start>_<end>")
    args = parser.parse_args(argv)
    replay = args.replay_dir or settings.replay_dir()
    default = settings.var_dir() / "backtests" / f"{Path(replay).name}_{args.start}_{args.end}"
    spec = BacktestSpec(start=args.start, end=args.end, replay_dir=replay, workdir=Path(args.workdir or default))
    run = run_backtest(spec, progress=lambda line: print(line, flush=True))
    result = evaluate(run, ReplayMarketData(replay_dir=replay))
    result.curve.to_csv(spec.workdir / "curve.csv", index=False)
    result.trips.to_csv(spec.workdir / "trades.csv", index=False)
    print(f"\n{len(run.days)} partitions in {run.seconds:.0f}s ({run.seconds / len(run.days):.2f}s each)")
    print(summary_table(result))
    print(f"\nentries by sizing:\n{result.sizing.groupby(['kelly_source', 'kelly_action']).size().to_string()}")
    print(
        f"equity reconciled on {result.reconciled_days} trading days, max diff {result.max_reconcile_diff_krw:.6f} KRW"
    )
    print(f"results in {spec.workdir}")
    return 0 if run.days["analysis_ok"].all() else 1


if __name__ == "__main__":
    sys.exit(main())
