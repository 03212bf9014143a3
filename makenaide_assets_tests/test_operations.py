"""The operator's day: network steps retry, hung runs end and are told."""

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import yaml

from makenaide_assets.definitions import build_defs
from makenaide_assets.market.retry import NETWORK_RETRY, permanent, retried_unless_permanent
from makenaide_assets.market.step import market
from makenaide_assets.resources.blacklist import Blacklist
from makenaide_assets.resources.io_manager import ParquetIOManager
from makenaide_assets.resources.market_data import ReplayMarketData, ReplayOutOfRange
from makenaide_assets.resources.thresholds import UniverseThresholds
from makenaide_assets.resources.upbit_http import UpbitBanned, UpbitRequestError
from makenaide_assets.strategy.candles import MalformedMarketData

REPO = Path(__file__).resolve().parents[1]
DAY = "2023-12-06"


# ---- retries --------------------------------------------------------------------------------


def test_network_steps_retry_twice_with_exponential_backoff_and_money_steps_never() -> None:
    defs = build_defs()
    assert (NETWORK_RETRY.max_retries, NETWORK_RETRY.backoff) == (2, dg.Backoff.EXPONENTIAL)
    policies = {}
    for name in ("analysis_job", "trading_job", "report_job"):
        job = defs.resolve_job_def(name)
        assert job.op_retry_policy is None
        policies |= {node.name: node.definition.retry_policy for node in job.nodes}
    assert {step for step, policy in policies.items() if policy is not None} == {"market", "timing_4h", "gpt_verdicts"}
    assert {policies[step] for step in ("market", "timing_4h", "gpt_verdicts")} == {NETWORK_RETRY}
    assert policies["signals"] is None and policies["fills"] is None


@pytest.mark.parametrize(
    ("error", "is_permanent"),
    [
        (ConnectionError("reset by peer"), False),
        (TimeoutError("read timed out"), False),
        (UpbitRequestError("5xx", path="/v1/candles/days", subject="KRW-BTC", status=503, attempts=5), False),
        (UpbitRequestError("429", path="/v1/ticker", subject="KRW-BTC", status=429, attempts=5), False),
        (UpbitRequestError("no answer", path="/v1/ticker", subject="KRW-BTC", status=None, attempts=5), False),
        (UpbitRequestError("400", path="/v1/ticker", subject="KRW-XYZ", status=400, attempts=1), True),
        (UpbitBanned("418", path="/v1/ticker", subject="KRW-BTC", status=418, attempts=1), True),
        (MalformedMarketData("trade_price is missing"), True),
        (ReplayOutOfRange("2031-01-01 is after the recording"), True),
    ],
)
def test_what_a_retry_cannot_heal_fails_at_once(error: Exception, is_permanent: bool) -> None:
    assert permanent(error) is is_permanent
    with pytest.raises(dg.Failure if is_permanent else type(error)) as raised, retried_unless_permanent():
        raise error
    if is_permanent:
        assert raised.value.allow_retries is False and str(error) in (raised.value.description or "")


class FlakyMarkets(ReplayMarketData):
    """The market list fails `failures` times with `error`, then answers (counted across attempts)."""

    error: str = "connection"
    failures: int = 1

    def markets(self, as_of: pd.Timestamp) -> pd.DataFrame:
        calls = _CALLS.setdefault(self.error, [])
        calls.append(1)
        if len(calls) <= self.failures:
            raise ConnectionError("connection reset") if self.error == "connection" else MalformedMarketData("no JSON")
        return super().markets(as_of)


_CALLS: dict[str, list[int]] = {}


def run_market_step(sample_dir: Path, tmp_path: Path, market_data: ReplayMarketData) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [market],
        selection=["tickers"],
        partition_key=DAY,
        resources={
            "market_data": market_data,
            "universe_thresholds": UniverseThresholds(min_months=6),
            "io_manager": ParquetIOManager(base_path=str(tmp_path)),
            "blacklist": Blacklist(),
        },
        raise_on_error=False,
    )


def test_a_dropped_connection_is_retried_and_a_malformed_answer_is_not(
    sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The waits are Dagster's (30 s, 90 s): skipped here, the attempts are what is tested.
    monkeypatch.setattr(dg.RetryPolicy, "calculate_delay", lambda self, attempt: 0)
    _CALLS.clear()
    flaky = run_market_step(sample_dir, tmp_path / "a", FlakyMarkets(replay_dir=str(sample_dir)))
    assert flaky.success
    assert [e.event_type_value for e in flaky.all_events].count("STEP_RESTARTED") == 1

    broken = run_market_step(sample_dir, tmp_path / "b", FlakyMarkets(replay_dir=str(sample_dir), error="malformed"))
    assert not broken.success
    types = [e.event_type_value for e in broken.all_events]
    assert "STEP_UP_FOR_RETRY" not in types and types.count("STEP_FAILURE") == 1
    assert len(_CALLS["malformed"]) == 1


# ---- hung runs ------------------------------------------------------------------------------


def test_analysis_and_trading_runs_end_after_30_minutes() -> None:
    defs = build_defs()
    for name in ("analysis_job", "trading_job"):
        assert defs.resolve_job_def(name).tags["dagster/max_runtime"] == "1800"


@pytest.mark.parametrize("path", ["dagster.yaml", "deploy/production/dagster.yaml"])
def test_both_instances_monitor_runs(path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each file, loaded by Dagster itself (its storage swapped for a local one), runs the monitoring
    daemon that enforces `dagster/max_runtime`."""
    config = yaml.safe_load((REPO / path).read_text())
    assert config["run_monitoring"]["enabled"] is True
    config["storage"] = {"sqlite": {"base_dir": str(tmp_path / "storage")}}
    config["compute_logs"] = {
        "module": "dagster._core.storage.local_compute_log_manager",
        "class": "LocalComputeLogManager",
        "config": {"base_dir": str(tmp_path / "logs")},
    }
    config.pop("local_artifact_storage", None)
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.chdir(tmp_path)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.run_monitoring_enabled
        assert "MONITORING" in instance.get_required_daemon_types()
