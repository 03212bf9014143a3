"""The demo as a person runs it: days in order, trading where the sensor asks, where results are."""

from pathlib import Path

import pytest

from makenaide_assets import demo


def test_the_demo_trades_the_days_with_signals_and_says_where_the_results_are(
    isolated_state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    assert demo.run(["--start", "2023-12-05", "--end", "2023-12-07"]) == 0
    out = capsys.readouterr().out
    assert "[2/3] 2023-12-06 analysis ok: 1 signals (1 buys); trading ok" in out
    assert "trading ran for 2 day(s); failures: none" in out
    assert f"asset values (Parquet, one file per partition): {isolated_state / 'storage'}" in out
    assert (isolated_state / "storage" / "fills" / "2023-12-07.parquet").is_file()


def test_days_outside_the_partitions_are_refused_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    assert demo.run(["--start", "2031-01-01", "--end", "2031-01-02"]) == 2
    assert "is not inside the partitions" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
