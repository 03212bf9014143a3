"""`python -m makenaide_assets.rehearsal`: see the package docstring."""

import argparse
import os
import sys
from pathlib import Path

# Live mode before anything imports the partitions, which are fixed when their module loads (in
# demo mode they would be the default replay's days, not live mode's 2022-01-01 → today).
os.environ["MAKENAIDE_MODE"] = "live"

from makenaide_assets.rehearsal.run import RehearsalSpec, rehearse, write_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m makenaide_assets.rehearsal", description=__doc__)
    parser.add_argument("--replay-dir", required=True, help="a recording (DESIGN §5), e.g. ../shared/data/upbit-long")
    parser.add_argument("--start", required=True, help="first partition, e.g. 2023-10-01")
    parser.add_argument("--end", required=True, help="last partition")
    parser.add_argument("--seed", type=int, default=0, help="seeds the faults and the manual events")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="share of order POSTs answered by a fault")
    parser.add_argument("--manual-events", type=int, default=0, help="deposits, withdrawals and trades by hand")
    parser.add_argument("--krw", type=float, default=10_000_000.0, help="the account's KRW at the start")
    parser.add_argument("--workdir", default="var/rehearsal", help="ledger, storage and instance unless set by env")
    parser.add_argument("--out", required=True, help="the JSON report")
    args = parser.parse_args(argv)
    spec = RehearsalSpec(
        replay_dir=args.replay_dir, start=args.start, end=args.end, workdir=Path(args.workdir).resolve(),
        seed=args.seed, fault_rate=args.fault_rate, manual_events=args.manual_events, krw=args.krw,
    )  # fmt: skip
    report = rehearse(spec)
    out = Path(args.out).resolve()
    write_report(report, out)
    print(f"\n{len(report.days)} days in {report.seconds:.0f}s; faults injected: {report.faults_injected}")
    ours = sum(1 for o in report.exchange_orders if o["identifier"])
    print(f"{ours} of our orders on the exchange, {len(report.ledger_orders)} in the ledger", end="")
    print(f", {len(report.manual_events)} manual events")
    if report.passed:
        print("every invariant held: no order twice, nothing lost, ledger = account every day")
    else:
        print(f"{len(report.invariant_failures)} INVARIANT FAILURES:")
        for failure in report.invariant_failures[:20]:
            print(f"  {failure}")
    print(f"report: {out}\nledger, storage and Dagster instance: {spec.workdir} (unless set by environment)")
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
