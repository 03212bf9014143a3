"""The demo as a person runs it: days in order, trading where the sensor asks, where results are."""

import re
from pathlib import Path

import pytest

from makenaide_assets import demo


def test_the_demo_trades_the_days_with_signals_and_says_where_the_results_are(
    isolated_state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    # As the repo's dagster.yaml (scripts/demo's DAGSTER_HOME): no telemetry, so no notice about it.
    (tmp_path / "home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    assert demo.run(["--start", "2023-12-05", "--end", "2023-12-07"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    # Each day once, naming the markets traded.
    assert "[2/3] 2023-12-06 analysis ok: 1 signals (1 buys); trading ok: buy KRW-" in out
    assert "trading ran for 2 day(s); failures: none" in out
    assert f"asset values (Parquet, one file per partition): {isolated_state / 'storage'}" in out
    assert (isolated_state / "storage" / "fills" / "2023-12-07.parquet").is_file()

    # One line per day, the demo's own, and nothing else of Dagster's: no console line of the
    # runs' events nor of the sensor's tick ("… - dagster - INFO - 2023-12-06: 1 signals → trading_job").
    lines = (out + captured.err).splitlines()
    assert not [line for line in lines if re.search(r" - dagster - [A-Z]+ - ", line)], captured.err
    assert captured.err == ""
    assert lines[0].startswith("Makenaide demo: 3 partitions 2023-12-05 → 2023-12-07 on ")
    for i, day in enumerate(["2023-12-05", "2023-12-06", "2023-12-07"], 1):
        results = ("Start capital", "Buy-and-hold")
        mentions = [line for line in lines[1:] if day in line and not line.startswith(results)]
        assert len(mentions) == 1 and mentions[0].startswith(f"[{i}/3] {day} analysis ok: "), mentions
    # The header, three days, then the results block (its blank line, the totals, start capital and
    # equity, buy-and-hold over the same days, where).
    assert len(lines) == 1 + 3 + 9, out
    assert any(line.startswith("Start capital 10,000,000 KRW; equity on 2023-12-07: ") for line in lines), out
    assert any(line.startswith("Buy-and-hold KRW-BTC over 2023-12-05 → 2023-12-07: ") for line in lines), out


def test_days_outside_the_partitions_are_refused_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    assert demo.run(["--start", "2031-01-01", "--end", "2031-01-02"]) == 2
    assert "is not inside the partitions" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
