"""run_failure_notifier: a failed run reaches the configured webhook, and the URL never reaches a log."""

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest

from makenaide_assets.resources.notifier import Notifier
from makenaide_assets.trading.sensors import run_failure_notifier


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict]]]:
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hooks/secret-token", received
    server.shutdown()


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
