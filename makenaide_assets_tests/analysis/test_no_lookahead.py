"""The whole analysis for D is unchanged when every candle after D is deleted from the recording.

Ten dates across both recordings, mostly where the pipeline has something to decide: candidates
that pass, BUY verdicts going through 4h timing, days it buys on. Each date runs `analysis_job`
twice, on the full recording and on the one truncated at D (about 5 s a date here).
"""

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from makenaide_assets.definitions import build_defs
from makenaide_assets_tests.replay_tools import truncate_after

COMPARED = [
    "daily_indicators", "market_breadth", "candidates", "gpt_verdicts", "timing_4h", "strategy_stats", "signals",
]  # fmt: skip
# (recording, partition, what the day holds), from the backtests in docs/backtest.md: "quiet" (nothing
# passes), "timing" (BUY verdicts reach 4h timing, no buy), "buy" (the pipeline buys, empty ledger).
DATES = [
    ("sample", "2023-07-13", "timing"),
    ("sample", "2023-09-17", "timing"),  # bear regime: BUY verdicts, buying blocked
    ("sample", "2023-11-02", "timing"),
    ("sample", "2023-12-06", "buy"),  # KRW-DOGE
    ("sample", "2023-12-07", "buy"),  # KRW-ETH
    ("long", "2022-06-15", "quiet"),  # the 2022 bear market: no candidate passes
    ("long", "2023-12-01", "buy"),  # KRW-LINK
    ("long", "2024-03-28", "buy"),  # KRW-DOGE
    ("long", "2024-06-10", "timing"),
    ("long", "2025-09-13", "buy"),  # KRW-DOGE
]


def analyse(replay: Path, var: Path, partition: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, pd.DataFrame]:
    monkeypatch.setenv("MAKENAIDE_REPLAY_DIR", str(replay))
    monkeypatch.setenv("MAKENAIDE_VAR", str(var))
    defs = build_defs()
    result = defs.resolve_job_def("analysis_job").execute_in_process(
        partition_key=partition, instance=dg.DagsterInstance.ephemeral()
    )
    assert result.success
    return {key: pd.read_parquet(var / "storage" / key / f"{partition}.parquet") for key in COMPARED}


@pytest.mark.parametrize(("recording", "partition", "day"), DATES)
def test_analysis_for_d_ignores_everything_after_d(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    recording: str,
    partition: str,
    day: str,
) -> None:
    replay = request.getfixturevalue(f"{recording}_dir")
    full = analyse(replay, tmp_path / "full", partition, monkeypatch)
    cut = analyse(truncate_after(replay, tmp_path / "cut", partition), tmp_path / "cutvar", partition, monkeypatch)
    for key in COMPARED:
        pd.testing.assert_frame_equal(full[key], cut[key], check_exact=True, obj=key)
    # The comparison is not vacuous: the day decides what the table says it does.
    assert bool(full["candidates"]["passed"].any()) is (day != "quiet")
    assert (len(full["timing_4h"]) >= 1) is (day != "quiet")
    assert bool((full["signals"]["side"] == "buy").any()) is (day == "buy")


# Real out-of-sample trades of a walk-forward run over the long recording (strategy/test_kelly_evidence.py), a buy day
# whose 365 days before hold `min_trades` of them (15: the default 20 is never reached in that record).
EVIDENCE = Path(__file__).parents[1] / "backtest" / "fixtures" / "walk_forward_long_oos_trades.csv"
EVIDENCE_DAY, EVIDENCE_MIN_TRADES = "2024-03-28", 10


def analyse_with_evidence(
    replay: Path, var: Path, partition: str, evidence: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[dict[str, pd.DataFrame], dg.ExecuteInProcessResult]:
    monkeypatch.setenv("MAKENAIDE_KELLY_EVIDENCE", str(evidence))
    monkeypatch.setenv("MAKENAIDE_REPLAY_DIR", str(replay))
    monkeypatch.setenv("MAKENAIDE_VAR", str(var))
    job = build_defs().resolve_job_def("analysis_job")
    run_config = {"ops": {"signals": {"config": {"min_trades": EVIDENCE_MIN_TRADES}}}}
    result = job.execute_in_process(
        partition_key=partition, instance=dg.DagsterInstance.ephemeral(), run_config=run_config
    )
    assert result.success
    return {key: pd.read_parquet(var / "storage" / key / f"{partition}.parquet") for key in COMPARED}, result


def test_walk_forward_evidence_sizes_d_only_with_trades_closed_before_d(
    long_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """signals(D) with the whole evidence file equals signals(D) with every trade that closed on or after
    D's first instant deleted from it; and it is sized from that evidence (kelly_source walk_forward)."""
    trades = pd.read_csv(EVIDENCE, dtype={"exit_partition": str})
    before = trades[pd.to_datetime(trades["executed_at"]) < pd.Timestamp(EVIDENCE_DAY)]
    assert 0 < len(before) < len(trades)  # the file holds trades on and after D: the comparison is not vacuous
    before.to_csv(tmp_path / "before.csv", index=False)
    full, result = analyse_with_evidence(long_dir, tmp_path / "full", EVIDENCE_DAY, EVIDENCE, monkeypatch)
    cut, _ = analyse_with_evidence(long_dir, tmp_path / "cut", EVIDENCE_DAY, tmp_path / "before.csv", monkeypatch)
    for key in COMPARED:
        pd.testing.assert_frame_equal(full[key], cut[key], check_exact=True, obj=key)

    stats = full["strategy_stats"].iloc[0]
    window = before[before["exit_partition"] >= (pd.Timestamp(EVIDENCE_DAY) - pd.Timedelta(days=365)).strftime("%F")]
    assert (stats["trades"], stats["evidence_trades"]) == (0, len(window)) and len(window) >= EVIDENCE_MIN_TRADES
    buys = full["signals"][full["signals"]["side"] == "buy"]
    assert len(buys) >= 1 and (buys["kelly_source"] == "walk_forward").all()
    metadata = result.asset_materializations_for_node("signals")[0].metadata
    assert metadata["kelly_source"].value == "walk_forward"
    assert "walk-forward out of sample" in metadata["kelly"].value["reason"]
