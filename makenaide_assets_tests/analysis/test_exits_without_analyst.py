"""Exits never wait for GPT: whatever the analyst's failure, `analysis_job` still sells what must be sold.

The whole analysis of 2023-12-06 runs on the recorded Upbit sample with demo resources, except the
analyst, which fails as it would in paper or live mode (OpenAI's answers replayed through the real
SDK). The ledger holds KRW-CVC bought at its 2023-11-20 close; on 2023-12-06 it closed 8.4 % lower,
through its 8 % stop-loss. With a working analyst the day also buys KRW-DOGE (rules BUY), so "no
buy" below means the failure blocked it, not that nothing was worth buying.
"""

from collections.abc import Iterator

import dagster as dg
import pandas as pd
import pytest

from makenaide_assets.pipeline import pipeline_definitions
from makenaide_assets.resources.analyst import Analyst, OpenAIAnalyst
from makenaide_assets.resources.ledger import TradingLedger
from makenaide_assets.resources.modes import resources_for
from makenaide_assets.settings import SAMPLE_REPLAY_DIR
from makenaide_assets_tests.fixtures.openai.replay import OpenAIReplay, recorded

DAY, ENTRY_DAY, HELD = "2023-12-06", "2023-11-20", "KRW-CVC"
SECRET = "sk-test-exits-00112233445566778899aabb"
FAILURES = {
    "missing key": "no OpenAI API key: OPENAI_API_KEY is not set",
    "revoked key": "OpenAI refused the API key (HTTP 401, invalid_api_key): check OPENAI_API_KEY",
    "outage": "HTTP 503 after 1 retries: The server is overloaded or not ready yet.",
    "budget spent": "daily budget spent",
}


def close_on(market: str, day: str) -> float:
    candles = pd.read_csv(SAMPLE_REPLAY_DIR / "candles" / "day" / f"{market}.csv.gz")
    return float(candles.loc[candles["candle_date_time_utc"].str[:10] == day, "trade_price"].iloc[0])


@pytest.fixture
def replay(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIReplay]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with OpenAIReplay() as server:
        yield server


@pytest.fixture
def held_volume() -> float:
    """KRW-CVC bought for 200,000 KRW at its ENTRY_DAY close, in the ledger the resources use."""
    price = close_on(HELD, ENTRY_DAY)
    volume = 200_000.0 / price
    ledger = TradingLedger()  # MAKENAIDE_LEDGER_URL unset: the test's own SQLite under MAKENAIDE_VAR
    identifier = f"test-{ENTRY_DAY}-{HELD}"
    ledger.record_intent(
        identifier,
        partition_key=ENTRY_DAY,
        market=HELD,
        side="buy",
        broker="paper",
        ref_price=price,
        krw_amount=price * volume,
        volume=None,
        reason="test entry",
    )
    ledger.record_fill(identifier, price=price, volume=volume, fee=0.0, executed_at=pd.Timestamp(f"{ENTRY_DAY} 00:10"))
    ledger.engine().dispose()
    return volume


def failing_analyst(case: str, replay: OpenAIReplay, monkeypatch: pytest.MonkeyPatch) -> Analyst:
    if case == "missing key":  # as modes builds paper and live, with OPENAI_API_KEY unset (conftest)
        return resources_for("paper", has_openai_key=False)["analyst"]
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    settings: dict = {"api_key": dg.EnvVar("OPENAI_API_KEY"), "base_url": replay.base_url, "max_retries": 1}
    if case == "revoked key":
        replay.queue(recorded("invalid_api_key_401.json"))
    elif case == "outage":
        replay.queue(*[recorded("server_error_503.json")] * 4)
    else:
        settings["daily_budget_usd"] = 0.0
    return OpenAIAnalyst(**settings)


@pytest.mark.parametrize("case", list(FAILURES))
def test_the_stop_loss_is_sold_and_nothing_bought_when_the_analyst_fails(
    case: str, held_volume: float, replay: OpenAIReplay, monkeypatch: pytest.MonkeyPatch
) -> None:
    resources = {**resources_for("demo", has_openai_key=False), "analyst": failing_analyst(case, replay, monkeypatch)}
    job = pipeline_definitions(resources).resolve_job_def("analysis_job")
    result = job.execute_in_process(partition_key=DAY, raise_on_error=False)
    assert result.success
    reason = FAILURES[case]

    verdicts = result.asset_value("gpt_verdicts")
    assert "KRW-DOGE" in set(verdicts["market"]) and len(verdicts) >= 2
    assert set(verdicts["source"]) == {"error"} and verdicts["verdict"].isna().all()
    if case == "outage":  # two candidates waited through the retries; the others were not asked
        stopped = f"not asked: 2 calls in a row failed in this run (last: {reason})"
        assert verdicts["error"].tolist() == [reason, reason] + [stopped] * (len(verdicts) - 2)
    else:
        assert set(verdicts["error"]) == {reason}
    [materialized] = [
        m for m in result.asset_materializations_for_node("verdicts_and_timing") if m.asset_key.path == ["gpt_verdicts"]
    ]
    assert materialized.metadata["errors"].value == len(verdicts)
    assert reason in [record.data["reason"] for record in materialized.metadata["error_reasons"].records]
    errors_check = {e.check_name: e for e in result.get_asset_check_evaluations()}["gpt_verdicts_errors"]
    assert not errors_check.passed and errors_check.severity == dg.AssetCheckSeverity.WARN

    orders = result.asset_value("signals")
    assert orders[["market", "side"]].values.tolist() == [[HELD, "sell"]]
    sell = orders.iloc[0]
    assert sell["volume"] == pytest.approx(held_volume) and sell["reason"].startswith("stop-loss")
    metadata = result.asset_materializations_for_node("signals")[0].metadata
    assert (metadata["sells"].value, metadata["buys"].value, metadata["adds"].value) == (1, 0, 0)
    doge = verdicts.set_index("market").at["KRW-DOGE", "error"]
    rejected = [(r.data["market"], r.data["side"], r.data["reason"]) for r in metadata["rejected"].records]
    assert any(row[:2] == ("KRW-DOGE", "buy") and row[2].startswith(f"GPT errored: {doge}") for row in rejected)
    assert all(e.passed for e in result.get_asset_check_evaluations() if e.asset_key.path == ["signals"])
