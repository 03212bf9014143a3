"""`python -m makenaide_assets.rehearsal` through the real CLI on both recordings: live mode against
the local Upbit with a quarter of the order POSTs faulted and manual events, every invariant
asserted each day. Short windows that trade (a buy and its sell, or buys and a pyramid add);
the 60-day runs are in the README's live section."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


# CI runs short windows that trade; MAKENAIDE_REHEARSAL_FULL=1 runs the same test over the 60-day
# windows the README reports (about 10 and 25 minutes on this machine).
FULL = os.environ.get("MAKENAIDE_REHEARSAL_FULL") == "1"
MANUAL_EVENTS = 6 if FULL else 3
WINDOWS = {
    "long_dir": ("2023-11-01", "2023-12-30", 21) if FULL else ("2023-11-15", "2023-11-21", 11),
    "sample_dir": ("2023-11-01", "2023-12-31", 3) if FULL else ("2023-12-05", "2023-12-10", 5),
}


@pytest.mark.parametrize(
    ("recording", "start", "end", "seed"),
    [pytest.param(name, *window, id=name.removesuffix("_dir")) for name, window in WINDOWS.items()],
)
def test_rehearsal_holds_every_invariant_under_faults_and_manual_events(
    request: pytest.FixtureRequest, tmp_path: Path, recording: str, start: str, end: str, seed: int
) -> None:
    replay: Path = request.getfixturevalue(recording)
    out = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKENAIDE_", "DAGSTER_HOME", "UPBIT_", "OPENAI_"))}
    done = subprocess.run(
        [
            sys.executable, "-m", "makenaide_assets.rehearsal", "--replay-dir", str(replay),
            "--start", start, "--end", end, "--seed", str(seed), "--fault-rate", "0.25",
            "--manual-events", str(MANUAL_EVENTS), "--workdir", str(tmp_path / "work"), "--out", str(out),
        ],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600 if FULL else 600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["passed"] and report["invariant_failures"] == []
    # One progress line per day, and the report says where it is.
    assert [line.split()[1] for line in done.stdout.splitlines() if line.startswith("[")] == [
        d["day"] for d in report["days"]
    ]
    assert f"report: {out}" in done.stdout
    assert all(d["analysis_ok"] for d in report["days"])
    assert any(d["traded"] for d in report["days"]), "the window must trade, or it rehearses nothing"
    assert sum(report["faults_injected"].values()) > 0
    assert len(report["manual_events"]) == MANUAL_EVENTS
    ours = [o for o in report["exchange_orders"] if o["identifier"]]
    executed = [o for o in ours if float(o["executed_volume"]) > 0]
    assert executed, "an order of ours must have executed on the exchange"
    booked = {o["identifier"]: o for o in report["ledger_orders"] if o["status"] == "done"}
    for order in executed:
        assert booked[order["identifier"]]["volume"] == pytest.approx(float(order["executed_volume"]), abs=1e-8)
    # Ledger = account at the end of every day (the invariant, re-read from the report), allowing
    # for what an order still unresolved in the ledger executed since; none is left after the last day.
    assert report["balances"][-1]["final"] and not report["balances"][-1]["in_flight"]
    for day in report["balances"]:
        for currency in set(day["exchange"]) | set(day["ledger"]):
            have = day["exchange"].get(currency, 0.0)
            held = day["ledger"].get(currency, 0.0) + day["in_flight"].get(currency, 0.0)
            assert abs(have - held) <= (1.0 if currency == "KRW" else 5e-9), (day["day"], currency)
