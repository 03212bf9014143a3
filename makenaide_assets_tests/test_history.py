"""History you can re-run (DESIGN §8): after days traded in order through the real jobs and sensor,
re-materialising the earliest traded days gives every asset value it gave the first time and adds
nothing to the ledger; and a daemon starting with no cursor offers no traded day again.

The same 20-odd days are the operator's days (issue 14): with only a Slack webhook set, one daily
summary per day and one message per executed order and per stop exit reach it."""

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from makenaide_assets.days import DayRunner
from makenaide_assets.definitions import build_defs
from makenaide_assets.resources.ledger import TradingLedger
from makenaide_assets.resources.ledger import schema as t

# Columns stamped with the wall clock of the run that wrote them: everything else must be equal.
CLOCK_COLUMNS = {"created_at", "updated_at", "recorded_at"}


def _values(storage: Path) -> dict[str, pd.DataFrame]:
    return {str(p.relative_to(storage)): pd.read_parquet(p) for p in sorted(storage.rglob("*.parquet"))}


def _ledger(url: str) -> dict[str, pd.DataFrame]:
    engine = TradingLedger(url=url).engine()
    with engine.connect() as conn:
        tables = {
            name: pd.read_sql(sa.select(table), conn).drop(columns=list(CLOCK_COLUMNS & set(table.c.keys())))
            for name, table in t.metadata.tables.items()
        }
    engine.dispose()
    return tables


def _run_days(replay: Path, start: str, end: str, monkeypatch: pytest.MonkeyPatch) -> tuple[DayRunner, list[str]]:
    monkeypatch.setenv("MAKENAIDE_REPLAY_DIR", str(replay))
    runner = DayRunner(build_defs(), dg.DagsterInstance.ephemeral())
    traded = []
    for day in pd.date_range(start, end).strftime("%Y-%m-%d"):
        result = runner.run(day)
        assert result.analysis_ok and result.trading_ok is not False, (day, result.error)
        traded += result.traded
    return runner, traded


@pytest.mark.parametrize(
    ("recording", "start", "end"),
    [
        pytest.param("sample", "2023-12-05", "2023-12-26", id="sample"),
        pytest.param("long", "2023-11-05", "2023-11-25", id="long"),
    ],
)
def test_rematerialising_traded_days_changes_nothing(
    recording: str,
    start: str,
    end: str,
    request: pytest.FixtureRequest,
    isolated_state: Path,
    monkeypatch: pytest.MonkeyPatch,
    webhook: tuple[str, list[dict]],
) -> None:
    replay = request.getfixturevalue(f"{recording}_dir")
    monkeypatch.setenv("MAKENAIDE_SLACK_WEBHOOK_URL", webhook[0])
    runner, traded = _run_days(replay, start, end, monkeypatch)
    days = list(pd.date_range(start, end).strftime("%Y-%m-%d"))
    assert len(days) >= 20 and len(traded) >= 2, traded
    storage, url = isolated_state / "storage", f"sqlite:///{isolated_state / 'ledger.sqlite'}"
    values, ledger = _values(storage), _ledger(url)
    assert ledger["fills"].shape[0] >= 2
    _assert_the_operator_heard(days, ledger, [m["text"] for m in webhook[1]])

    for day in traded[:2]:  # the earliest traded days, after every later day traded
        again = runner.run(day)  # analysis_job, a sensor tick, and the trading run it asks for
        assert again.analysis_ok and again.traded == [day] and again.trading_ok, again.error

    after = _values(storage)
    assert after.keys() == values.keys()
    for path, frame in values.items():
        pd.testing.assert_frame_equal(after[path], frame, obj=path)
    for name, table in _ledger(url).items():
        pd.testing.assert_frame_equal(table, ledger[name], obj=f"ledger table {name}")


def _assert_the_operator_heard(days: list[str], ledger: dict[str, pd.DataFrame], texts: list[str]) -> None:
    summaries = [text.split()[3].rstrip(":") for text in texts if text.startswith("Makenaide daily report ")]
    assert summaries == days  # one per day, traded or not, in order
    fills = ledger["fills"]
    executed = sorted(text.split(":")[0] for text in texts if " executed, " in text)
    assert executed == sorted(f"Makenaide {p}" for p in fills.loc[fills["kind"] == "daily", "partition_key"])
    stopped = [text for text in texts if text.startswith("Makenaide sold ")]
    assert len(stopped) == (fills["kind"] == "stop").sum()
    for market in fills.loc[fills["kind"] == "stop", "market"]:
        assert any(market in text and "intraday" in text for text in stopped), (market, stopped)


def test_a_daemon_with_no_cursor_offers_no_traded_day_again(
    sample_dir: Path, isolated_state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner, traded = _run_days(sample_dir, "2023-12-05", "2023-12-08", monkeypatch)
    assert traded
    # What `dagster dev` / dagster-daemon do after the demo: tick the sensor from the cursor the
    # instance holds for it (none: the demo ticks in process) over the same instance.
    sensor = runner.defs.resolve_sensor_def("signals_sensor")
    tick = sensor.evaluate_tick(dg.build_sensor_context(instance=runner.instance, cursor=None, definitions=runner.defs))
    assert not tick.run_requests
    assert all(f"{day}: already handled by trading_job" in (tick.skip_message or "") for day in traded)
    assert "2023-12-05: already handled by report_job" in (tick.skip_message or "")
