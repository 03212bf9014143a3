"""What reaches the operator: a failed run, each executed order, the daily summary of every day —
through a loopback Slack webhook and Telegram Bot API; the URL never reaches a log."""

import re
from pathlib import Path

import dagster as dg
import pytest

from makenaide_assets import demo
from makenaide_assets.resources.notifier import Notifier
from makenaide_assets.trading.sensors import run_failure_notifier


def test_failed_run_is_sent_to_slack_webhook(
    webhook: tuple[str, list[dict]], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    url, received = webhook
    monkeypatch.setenv("MAKENAIDE_SLACK_WEBHOOK_URL", url)

    @dg.op
    def explode() -> None:
        raise RuntimeError("upbit answered 500 five times")

    @dg.job
    def analysis_job() -> None:
        explode()

    instance = dg.DagsterInstance.ephemeral()
    result = analysis_job.execute_in_process(
        instance=instance, raise_on_error=False, tags={"dagster/partition": "2023-12-06"}
    )
    assert not result.success
    failure = next(
        e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE" or e.event_type_value == "RUN_FAILURE"
    )
    context = dg.build_run_status_sensor_context(
        sensor_name="run_failure_notifier",
        dagster_event=failure,
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        resources={"notifier": Notifier()},
    ).for_run_failure()
    run_failure_notifier(context)
    [message] = received
    assert "analysis_job for partition 2023-12-06 failed" in message["text"]
    assert "secret-token" not in caplog.text


def test_unreachable_webhook_is_logged_without_its_url(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("MAKENAIDE_SLACK_WEBHOOK_URL", "http://127.0.0.1:9/hooks/secret-token")
    delivered = Notifier(timeout_s=2).send("test alert")
    assert delivered == ["log"]
    assert "slack delivery failed" in caplog.text and "secret-token" not in caplog.text


def test_the_operator_hears_each_day_and_each_order_with_only_a_slack_webhook_in_demo_mode(
    webhook: tuple[str, list[dict]], isolated_state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, received = webhook
    monkeypatch.setenv("MAKENAIDE_SLACK_WEBHOOK_URL", url)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    assert demo.run(["--start", "2023-12-05", "--end", "2023-12-07"]) == 0
    texts = [m["text"] for m in received]
    # A daily summary for every day, traded or not, naming the day.
    summaries = [t for t in texts if t.startswith("Makenaide daily report ")]
    assert [s.split()[3].rstrip(":") for s in summaries] == ["2023-12-05", "2023-12-06", "2023-12-07"]
    assert "orders: none" in summaries[0] and "not traded: no signals" in summaries[0]
    assert "equity 10,000,000 KRW" in summaries[0] and "open positions: none" in summaries[0]
    assert "open positions: KRW-" in summaries[2]
    # Each executed order, once, with its numbers rounded for a person.
    executed = [t for t in texts if " executed, " in t]
    assert [t.split(":")[0] for t in executed] == ["Makenaide 2023-12-06", "Makenaide 2023-12-07"]
    assert all(re.search(r"= [\d,]+ KRW \(fee [\d,]+\)$", t) for t in executed), executed


def test_telegram_gets_the_same_message(webhook: tuple[str, list[dict]], monkeypatch: pytest.MonkeyPatch) -> None:
    url, received = webhook
    monkeypatch.setenv("MAKENAIDE_TELEGRAM_BOT_TOKEN", "123:secret-token")
    monkeypatch.setenv("MAKENAIDE_TELEGRAM_CHAT_ID", "42")
    base = url.rsplit("/hooks/", 1)[0]
    assert Notifier(telegram_api_url=base).send("Makenaide test", routine=True) == ["log", "telegram"]
    assert received == [{"chat_id": "42", "text": "Makenaide test"}]
