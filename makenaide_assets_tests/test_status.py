"""`python -m makenaide_assets.status` on the real demo's state, and on ledgers with nothing to show.

The demo runs 2023-12-05 → 2023-12-07 on the sample (buys on 12-06 and 12-07), then 12-08; after
each, the status runs as the operator runs it, in its own process. What it says is compared with
the ledger, the replay's closes, the `daily_indicators` value and `strategy/exits.py`.
"""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pytest
import sqlalchemy as sa

from makenaide_assets import status
from makenaide_assets.resources.ledger import TradingLedger
from makenaide_assets.resources.ledger import schema as t
from makenaide_assets.settings import SAMPLE_REPLAY_DIR
from makenaide_assets.strategy import exits

if TYPE_CHECKING:  # imported for real by pytest_plugins, so that pytest rewrites its asserts
    from makenaide_assets_tests.e2e.servers import PostgresServer  # noqa: F401

pytest_plugins = ["makenaide_assets_tests.e2e.servers"]

REPO = Path(__file__).resolve().parents[1]
OURS = ("MAKENAIDE_", "OPENAI_API_KEY", "UPBIT_ACCESS_KEY", "UPBIT_SECRET_KEY", "DAGSTER_HOME")


def _env(var: Path, home: Path | None) -> dict[str, str]:
    """The caller's environment without any Makenaide setting, on this state folder and instance."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(OURS)}
    env["MAKENAIDE_VAR"] = str(var)
    if home is not None:
        env["DAGSTER_HOME"] = str(home)
    return env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=900, check=False
    )


def _status(env: dict[str, str]) -> tuple[str, dict[str, Any]]:
    text, doc = _run(["makenaide_assets.status"], env), _run(["makenaide_assets.status", "--json"], env)
    for result in (text, doc):
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Traceback" not in result.stderr, result.stderr
    return text.stdout, json.loads(doc.stdout)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The demo's state after 12-07 and after 12-08, with what the status said at each."""
    root = tmp_path_factory.mktemp("status_demo")
    home, var = root / "home", root / "var"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = _env(var, home)
    stages: dict[str, Any] = {"var": var, "home": home, "env": env}
    for start, end in (("2023-12-05", "2023-12-07"), ("2023-12-08", "2023-12-08")):
        ran = _run(["makenaide_assets.demo", "--start", start, "--end", end], env)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        text, doc = _status(env)
        ledger = TradingLedger(url=f"sqlite:///{var / 'ledger.sqlite'}", mode=None)
        stages[end] = {
            "text": text,
            "json": doc,
            "cash": ledger.cash_krw(None),
            "positions": ledger.open_positions(None),
            "equity": ledger.equity_history(None),
        }
    return stages


def _closes(market: str) -> pd.Series:
    frame = pd.read_csv(SAMPLE_REPLAY_DIR / "candles" / "day" / f"{market}.csv.gz")
    dates = pd.to_datetime(frame["candle_date_time_utc"]).dt.strftime("%Y-%m-%d")
    return pd.Series(frame["trade_price"].to_numpy(dtype=float), index=dates).sort_index()


def _expected_positions(stage: dict[str, Any], var: Path, day: str) -> dict[str, dict[str, float]]:
    """What each position is worth at `day`'s close and where its stops are, by exits.py's functions
    on the ATR the day's daily_indicators hold and the highest close since entry."""
    indicators = pd.read_parquet(var / "storage" / "daily_indicators" / f"{day}.parquet").set_index("market")
    out = {}
    for pos in stage["positions"].itertuples(index=False):
        closes = _closes(pos.market)
        close = float(closes[day])
        highest = max(float(pos.highest_price), float(closes[pos.opened_partition : day].max()))
        atr = float(indicators.at[pos.market, "atr14"])
        out[pos.market] = {
            "volume": float(pos.volume),
            "close": close,
            "value_krw": float(pos.volume) * close,
            "unrealized_pnl_krw": float(pos.volume) * close - float(pos.cost_krw),
            "stop_loss_price": exits.stop_loss_price(float(pos.avg_price)),
            "trailing_stop_price": exits.trailing_stop_price(highest, atr),
            "take_profit_price": exits.take_profit_price(float(pos.avg_price)),
            "highest_close": highest,
        }
    return out


@pytest.mark.parametrize("end", ["2023-12-07", "2023-12-08"])
def test_status_shows_the_demos_positions_stops_cash_signals_and_last_report(demo: dict[str, Any], end: str) -> None:
    stage = demo[end]
    doc, text = stage["json"], stage["text"]
    # The closes are those of the newest partition with a portfolio (whose equity the ledger holds).
    day = str(stage["equity"]["partition_key"].iloc[-1])
    assert doc["prices"]["partition"] == day
    assert doc["prices"]["as_of"] == f"{(pd.Timestamp(day) + pd.Timedelta(days=1)).date()}T00:00:00Z"

    # The positions: the two demo buys, as the ledger holds them, valued at the day's close.
    assert sorted(stage["positions"]["market"]) == ["KRW-DOGE", "KRW-ETH"]
    expected = _expected_positions(stage, demo["var"], day)
    shown = {p["market"]: p for p in doc["positions"]}
    assert sorted(shown) == sorted(expected)
    for market, want in expected.items():
        for key, value in want.items():
            assert shown[market][key] == pytest.approx(value, rel=1e-12), (market, key)
        assert shown[market]["close_date"] == day
        assert shown[market]["trailing_basis"] == "3×ATR"
        # Printed for a person: KRW without decimals (both coins trade above 100 KRW, whole-won ticks).
        row = next(line for line in text.splitlines() if line.strip().startswith(market) and "×ATR" in line)
        for key in ("stop_loss_price", "trailing_stop_price", "take_profit_price"):
            assert f"{want[key]:,.0f} (" in row, (key, row)
        assert f"{round(want['unrealized_pnl_krw']):+,}" in text

    # The balance: the ledger's cash, and equity = cash + the positions at those closes.
    assert doc["balance"]["cash_krw"] == pytest.approx(stage["cash"], rel=1e-12)
    value = sum(p["value_krw"] for p in expected.values())
    assert doc["balance"]["equity_krw"] == pytest.approx(stage["cash"] + value, rel=1e-12)
    assert doc["balance"]["equity_krw"] == pytest.approx(float(stage["equity"]["equity_krw"].iloc[-1]), rel=1e-9)
    assert f"cash       {round(stage['cash']):>14,} KRW" in text

    # Today's signals and the last report, from the instance.
    assert doc["signals"]["partition"] == end
    if end == "2023-12-07":
        assert doc["signals"]["signal_count"] == 1
        assert [(r["side"], r["market"]) for r in doc["signals"]["rows"]] == [("buy", "KRW-ETH")]
        assert doc["signals"]["traded"] == 1
        assert "Today's signals: 2023-12-07, 1 signal(s)" in text
        assert "  buy  KRW-ETH" in text
    else:
        assert doc["signals"]["signal_count"] == 0 and doc["signals"]["rows"] == []
        assert "Today's signals: 2023-12-08, 0 signal(s)" in text
    assert doc["daily_report"]["partition"] == day
    assert doc["daily_report"]["can_i_trust_today"]
    assert f"Last daily report: {day} " in text
    assert f"can I trust today? {doc['daily_report']['can_i_trust_today']}" in text


def test_the_highest_close_since_entry_lifts_the_trailing_stop(demo: dict[str, Any]) -> None:
    """DOGE, bought on 12-06 at 132.132, closed at 138 on 12-08: its trailing stop hangs from 138."""
    doge = next(p for p in demo["2023-12-08"]["json"]["positions"] if p["market"] == "KRW-DOGE")
    assert doge["highest_close"] == 138.0 > doge["avg_price"]
    assert doge["exits_triggered"] == []


def test_without_dagster_home_it_says_so_and_still_shows_the_ledger(demo: dict[str, Any]) -> None:
    result = _run(["makenaide_assets.status"], _env(demo["var"], None))
    assert result.returncode == 0, result.stderr
    assert "DAGSTER_HOME is not set" in result.stdout
    assert "KRW-DOGE" in result.stdout and "KRW-ETH" in result.stdout
    assert f"cash       {round(demo['2023-12-08']['cash']):>14,} KRW" in result.stdout


def test_no_ledger_yet_says_so_and_creates_nothing(
    isolated_state: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert status.run([]) == 0
    out = capsys.readouterr().out
    assert "no trades yet; run ./scripts/demo" in out
    assert "DAGSTER_HOME is not set" in out
    assert not isolated_state.exists()
    assert status.run(["--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ledger"]["exists"] is False and "no trades yet" in doc["ledger"]["message"]
    assert doc["positions"] == [] and doc["balance"] is None


def test_a_ledger_holding_only_its_opening_cash_says_no_trades_yet(
    isolated_state: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    TradingLedger(url=f"sqlite:///{isolated_state / 'ledger.sqlite'}", mode="demo").engine()
    assert status.run([]) == 0
    out = capsys.readouterr().out
    assert "no trades yet; run ./scripts/demo" in out
    assert f"cash       {'10,000,000':>14} KRW" in out
    assert "Open positions" not in out


def _cash_events(url: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(t.cash_events)).scalar_one())
    finally:
        engine.dispose()


def test_a_live_ledger_is_read_without_writing_paper_cash_into_it(
    isolated_state: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A ledger opened without a mode seeds 10,000,000 KRW of paper cash when it has none; a
    live ledger has none (its cash comes from the account), so the status opens it as live."""
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.setenv("MAKENAIDE_MODE", "live")
    url = f"sqlite:///{isolated_state / 'ledger-live.sqlite'}"
    TradingLedger(url=url, mode="live").engine()
    assert status.run([]) == 0
    out = capsys.readouterr().out
    assert "(live ledger)" in out and "no trades yet in this live ledger" in out
    assert f"cash       {'0':>14} KRW" in out
    assert _cash_events(url) == 0


def test_a_postgresql_ledger_is_shown_without_its_password(
    pg_database: sa.URL, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert pg_database.password
    url = pg_database.render_as_string(hide_password=False)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.setenv("MAKENAIDE_MODE", "live")
    monkeypatch.setenv("MAKENAIDE_LEDGER_URL", url)
    # An empty database: nothing to show, and nothing created in it.
    assert status.run([]) == 0
    out = capsys.readouterr().out
    assert "holds no ledger yet: no trades yet in this live ledger" in out
    secret = f":{pg_database.password}@"
    assert secret not in out and f"{pg_database.username}:***@" in out
    engine = sa.create_engine(pg_database)
    try:
        assert not sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()
    # A live ledger in it: read, unchanged, and its URL masked again.
    TradingLedger(url=url, mode="live").engine()
    assert status.run(["--json"]) == 0
    captured = capsys.readouterr()
    assert secret not in captured.out + captured.err
    assert json.loads(captured.out)["ledger"]["mode"] == "live"
    assert _cash_events(url) == 0


def test_an_unreachable_ledger_is_a_message_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.setenv("MAKENAIDE_LEDGER_URL", "postgresql://makenaide:s3cret-pw@127.0.0.1:1/ledger")
    assert status.run([]) == 1
    captured = capsys.readouterr()
    assert "cannot read the ledger at postgresql://makenaide:***@127.0.0.1:1/ledger" in captured.err
    assert "s3cret-pw" not in captured.out + captured.err
