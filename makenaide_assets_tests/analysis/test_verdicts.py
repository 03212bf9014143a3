"""`gpt_verdicts` and its checks, materialised on real recorded candles (its step, `verdicts_and_timing`,
without `timing_4h`); the payload it sends."""

import json
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from makenaide_assets.analysis import verdicts
from makenaide_assets.analysis.verdicts_and_timing import verdicts_and_timing
from makenaide_assets.partitions import daily
from makenaide_assets.resources.analyst import Analyst, OpenAIAnalyst, RulesAnalyst
from makenaide_assets.resources.io_manager import ParquetIOManager
from makenaide_assets.resources.market_data import ReplayMarketData
from makenaide_assets.resources.modes import resources_for
from makenaide_assets.settings import SAMPLE_REPLAY_DIR
from makenaide_assets.strategy.calendar import partition_close
from makenaide_assets.strategy.indicators import indicator_snapshot
from makenaide_assets.strategy.payload import PAYLOAD_CANDLES, build_payload, canonical_json, verdict_request
from makenaide_assets.strategy.verdict_schema import (
    VERDICT_COLUMNS,
    AnalystAnswer,
    Verdict,
    VerdictRequest,
    answer_row,
    verdicts_frame,
)
from makenaide_assets_tests.fixtures.openai.replay import OpenAIReplay, recorded

DAY = "2023-12-20"
SECRET = "sk-test-verdicts-9876543210fedcba5678"
CHECKS = ["gpt_verdicts_one_per_candidate", "gpt_verdicts_schema_valid", "gpt_verdicts_errors"]


@pytest.fixture(scope="module")
def upstream() -> dict[str, pd.DataFrame]:
    """The three inputs as their assets would hold them for DAY, from the recorded sample."""
    market_data = ReplayMarketData(replay_dir=str(SAMPLE_REPLAY_DIR))
    candles = market_data.candles_many(["KRW-BTC", "KRW-ETH", "KRW-DOGE"], "day", partition_close(DAY), 400)
    btc = candles[candles["market"] == "KRW-BTC"].drop(columns="market").reset_index(drop=True)
    candidates = pd.DataFrame(
        {
            "market": ["KRW-ETH", "KRW-DOGE", "KRW-BTC"],
            "score": [5.0, 2.0, 4.0],
            "passed": [True, False, True],
            "stage2": [True, True, True],
            "volume_surge": [True, False, False],
            "failed_rules": ["", "volume_surge", "volume_surge"],
            "reason": ["", "score 2 < 3", ""],
        }
    )
    return {"candidates": candidates, "daily_indicators": indicator_snapshot(candles, btc), "daily_candles": candles}


@pytest.fixture(scope="module")
def rules_frame(upstream: dict) -> pd.DataFrame:
    """What the asset makes of `upstream` with the rules analyst, built without Dagster."""
    args = (DAY, upstream["candidates"], upstream["daily_indicators"], upstream["daily_candles"])
    requests = list(verdicts.requests_for(*args))
    return verdicts_frame([answer_row(r, RulesAnalyst().analyse(r)) for r in requests])


def stand_in(name: str, frame: pd.DataFrame) -> dg.AssetsDefinition:
    @dg.asset(name=name, partitions_def=daily)
    def _asset() -> pd.DataFrame:
        return frame

    return _asset


class StopAboveTheClose(Analyst):
    """Answers BUY with a stop 10 % above the close: a valid answer by the schema's own rules."""

    def describe(self) -> str:
        return "test analyst"

    def analyse(self, request: VerdictRequest) -> AnalystAnswer:
        stop = request.payload["indicators"]["close"] * 1.1
        verdict = Verdict(verdict="BUY", confidence=80, pattern="VCP", stage=2, reasoning="test",
                          support=None, resistance=None, suggested_stop=stop)  # fmt: skip
        return AnalystAnswer(verdict, source="rules", model="test", prompt_hash="")


def materialize(
    tmp_path: Path, inputs: dict[str, pd.DataFrame], analyst: object, io_manager: ParquetIOManager | None = None
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [*(stand_in(name, frame) for name, frame in inputs.items()), verdicts_and_timing],
        selection=[*inputs, "gpt_verdicts"],  # with its checks; timing_4h is test_timing_4h's
        partition_key=DAY,
        resources={
            "analyst": analyst,
            "market_data": ReplayMarketData(replay_dir=str(SAMPLE_REPLAY_DIR)),
            "io_manager": io_manager or ParquetIOManager(base_path=str(tmp_path / "storage")),
        },
        raise_on_error=False,
    )


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def rows(table: dg.TableMetadataValue) -> list[dict]:
    """A metadata table's rows, as the UI shows them."""
    return [record.data for record in table.records]


def output(result: dg.ExecuteInProcessResult) -> tuple[pd.DataFrame, dict]:
    event = result.get_asset_materialization_events()[-1].materialization
    return result.asset_value("gpt_verdicts"), {k: v.value for k, v in event.metadata.items()}


def test_rules_verdict_per_passed_candidate_and_checks_pass(
    tmp_path: Path, upstream: dict, rules_frame: pd.DataFrame
) -> None:
    result = materialize(tmp_path, upstream, RulesAnalyst())
    assert result.success
    frame, metadata = output(result)
    pd.testing.assert_frame_equal(frame, rules_frame)
    stored = pd.read_parquet(tmp_path / "storage" / "gpt_verdicts" / f"{DAY}.parquet")
    pd.testing.assert_frame_equal(stored, frame, check_dtype=False)  # Parquet keeps every column and null
    assert list(frame.columns) == VERDICT_COLUMNS
    assert frame["market"].tolist() == ["KRW-ETH", "KRW-BTC"]  # DOGE did not pass
    assert set(frame["source"]) == {"rules"}
    assert frame["verdict"].tolist() == ["BUY", "BUY"]
    assert metadata["dagster/row_count"] == 2
    assert metadata["sources"] == {"openai": 0, "cache": 0, "rules": 2, "error": 0}
    assert metadata["budget_left_usd"] == "n/a (free analyst)"
    assert (metadata["errors"], rows(metadata["error_reasons"])) == (0, [])
    assert "KRW-ETH" in [row["market"] for row in rows(metadata["preview"])]
    assert {name: e.passed for name, e in check_results(result).items()} == dict.fromkeys(CHECKS, True)


def test_openai_run_then_rerun_makes_no_call_and_leaks_no_key(
    tmp_path: Path, upstream: dict, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with OpenAIReplay() as replay:
        analyst = OpenAIAnalyst(api_key=SECRET, base_url=replay.base_url)  # cache: the default ledger URL
        replay.queue(recorded("chat_completion_buy.json"), recorded("chat_completion_hold.json"))
        first = materialize(tmp_path, upstream, analyst)
        assert first.success and replay.calls == 2
        assert replay.received[0].headers["authorization"] == f"Bearer {SECRET}"
        frame, metadata = output(first)
        assert frame["verdict"].tolist() == ["BUY", "HOLD"]
        assert frame["source"].tolist() == ["openai", "openai"]
        assert metadata["input_tokens"] == 1893 + 1902
        assert metadata["cost_usd"] == pytest.approx(frame["cost_usd"].sum())
        assert metadata["budget_left_usd"] == pytest.approx(1.0 - frame["cost_usd"].sum())

        again = materialize(tmp_path, upstream, analyst)
        assert again.success and replay.calls == 2  # zero API calls on re-materialisation
        cached, cached_meta = output(again)
        assert cached["source"].tolist() == ["cache", "cache"]
        assert cached[["market", "verdict", "confidence", "suggested_stop"]].equals(
            frame[["market", "verdict", "confidence", "suggested_stop"]]
        )
        assert cached_meta["cost_usd"] == 0.0

    events = " ".join(str(e) for r in (first, again) for e in r.all_events)
    stored = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    captured = capfd.readouterr()
    assert SECRET not in events + captured.out + captured.err
    assert SECRET.encode() not in stored


class Broken(Analyst):
    """An analyst with a bug: whatever it raises must not cost the day its exits."""

    def describe(self) -> str:
        return "broken test analyst"

    def analyse(self, request: VerdictRequest) -> AnalystAnswer:
        raise ZeroDivisionError("division by zero")


def failing_analyst(case: str, replay: OpenAIReplay, monkeypatch: pytest.MonkeyPatch) -> Analyst:
    """The analyst of each failure, configured as a user would; OpenAI's answers are recorded ones."""
    if case == "missing key":  # paper/live as modes builds them, OPENAI_API_KEY unset (conftest)
        analyst = resources_for("paper", has_openai_key=False)["analyst"]
        assert isinstance(analyst, OpenAIAnalyst)
        return analyst
    if case == "analyst bug":
        return Broken()
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    settings: dict = {"api_key": dg.EnvVar("OPENAI_API_KEY"), "base_url": replay.base_url, "max_retries": 1}
    if case == "revoked key":
        replay.queue(recorded("invalid_api_key_401.json"))
    elif case == "outage":
        replay.queue(*[recorded("server_error_503.json")] * 4)
    elif case == "budget spent":
        settings["daily_budget_usd"] = 0.0
    return OpenAIAnalyst(**settings)


FAILURES = {
    "missing key": "no OpenAI API key: OPENAI_API_KEY is not set",
    "revoked key": "OpenAI refused the API key (HTTP 401, invalid_api_key): check OPENAI_API_KEY",
    "outage": "HTTP 503 after 1 retries: The server is overloaded or not ready yet.",
    "budget spent": "daily budget spent",
    "analyst bug": "analyst failed: ZeroDivisionError: division by zero",
}


@pytest.mark.parametrize("case", list(FAILURES))
def test_any_analyst_failure_is_error_rows_and_the_asset_still_materialises(
    case: str, tmp_path: Path, upstream: dict, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with OpenAIReplay() as replay:
        result = materialize(tmp_path, upstream, failing_analyst(case, replay, monkeypatch))
    assert result.success
    reason = FAILURES[case]
    frame, metadata = output(result)
    assert frame["market"].tolist() == ["KRW-ETH", "KRW-BTC"]
    assert set(frame["source"]) == {"error"} and frame["verdict"].isna().all()
    if case == "outage":  # the second candidate failed too; nobody waits for a third
        assert frame["error"].tolist() == [reason, reason] and replay.calls == 4
    else:
        assert frame["error"].tolist() == [reason, reason]
        assert replay.calls == (1 if case == "revoked key" else 0)
    assert metadata["errors"] == 2
    assert metadata["verdicts"]["none (error)"] == 2
    assert rows(metadata["error_reasons"]) == [{"reason": reason, "rows": 2, "markets": "KRW-ETH, KRW-BTC"}]
    checks = check_results(result)
    assert checks["gpt_verdicts_schema_valid"].passed and checks["gpt_verdicts_one_per_candidate"].passed
    errors = checks["gpt_verdicts_errors"]
    assert not errors.passed and errors.severity == dg.AssetCheckSeverity.WARN
    assert errors.metadata["markets"].value == "KRW-BTC, KRW-ETH"
    assert {row["error"] for row in rows(errors.metadata["errors"])} == {reason}
    stored = pd.read_parquet(tmp_path / "storage" / "gpt_verdicts" / f"{DAY}.parquet")
    assert stored["error"].tolist() == frame["error"].tolist()
    captured = capfd.readouterr()
    assert SECRET not in " ".join(str(e) for e in result.all_events) + captured.out + captured.err


def test_missing_inputs_are_error_rows_with_a_warning(tmp_path: Path, upstream: dict) -> None:
    inputs = {**upstream, "daily_indicators": upstream["daily_indicators"].query("market != 'KRW-BTC'")}
    result = materialize(tmp_path, inputs, RulesAnalyst())
    frame, metadata = output(result)
    btc = frame.set_index("market").loc["KRW-BTC"]
    assert (btc["source"], btc["error"]) == ("error", "no daily_indicators row for KRW-BTC")
    assert pd.isna(btc["verdict"]) and pd.isna(btc["confidence"])
    assert metadata["verdicts"]["none (error)"] == 1
    assert metadata["errors"] == 1
    assert rows(metadata["error_reasons"]) == [
        {"reason": "no daily_indicators row for KRW-BTC", "rows": 1, "markets": "KRW-BTC"}
    ]
    checks = check_results(result)
    assert checks["gpt_verdicts_one_per_candidate"].passed and checks["gpt_verdicts_schema_valid"].passed
    errors = checks["gpt_verdicts_errors"]
    assert not errors.passed and errors.severity == dg.AssetCheckSeverity.WARN
    assert errors.metadata["markets"].value == "KRW-BTC"
    assert rows(errors.metadata["errors"]) == [{"market": "KRW-BTC", "error": "no daily_indicators row for KRW-BTC"}]
    assert result.success  # warnings only: the day goes on


def test_zero_candidates_give_an_empty_frame_with_a_visible_note(tmp_path: Path, upstream: dict) -> None:
    nobody = upstream["candidates"].assign(passed=False)
    result = materialize(tmp_path, {**upstream, "candidates": nobody}, RulesAnalyst())
    frame, metadata = output(result)
    assert frame.empty and list(frame.columns) == VERDICT_COLUMNS
    assert metadata["note"] == f"no candidates for {DAY}"
    assert all(e.passed for e in check_results(result).values())


class DoublingStorage(ParquetIOManager):
    """Stores gpt_verdicts with its first row twice: what the coverage check must see, being read
    from storage, although the step computed the right rows."""

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        if context.asset_key == dg.AssetKey("gpt_verdicts"):
            obj = pd.concat([obj, obj.iloc[[0]]], ignore_index=True)
        super().handle_output(context, obj)


def test_coverage_reads_the_verdicts_as_stored(tmp_path: Path, upstream: dict) -> None:
    result = materialize(tmp_path, upstream, RulesAnalyst(), DoublingStorage(base_path=str(tmp_path / "doubled")))
    assert result.success  # a warning
    assert result.asset_value("gpt_verdicts")["market"].tolist() == ["KRW-ETH", "KRW-BTC"]  # as computed
    coverage = check_results(result)["gpt_verdicts_one_per_candidate"]
    assert not coverage.passed and coverage.severity == dg.AssetCheckSeverity.WARN
    assert coverage.metadata["markets"].value == "KRW-ETH"
    assert {"market": "KRW-ETH", "problem": "2 rows"} in rows(coverage.metadata["problems"])


def test_checks_fail_on_corrupted_rows(tmp_path: Path, upstream: dict, rules_frame: pd.DataFrame) -> None:
    corrupt = pd.concat([rules_frame, rules_frame.iloc[[0]]], ignore_index=True)  # KRW-ETH twice
    corrupt.loc[1, "confidence"] = 150
    corrupt = corrupt.astype({"confidence": "Int64"})

    coverage = verdicts.one_per_candidate(corrupt, upstream["candidates"])
    assert not coverage.passed and coverage.severity == dg.AssetCheckSeverity.WARN
    assert coverage.metadata["markets"].value == "KRW-ETH"
    assert {"market": "KRW-ETH", "problem": "2 rows"} in rows(coverage.metadata["problems"])
    # The in-asset checks on the same rows, as the asset computes them.
    schema, _ = verdicts.verdict_checks(corrupt, upstream["daily_indicators"])
    assert not schema.passed and schema.metadata["markets"].value == "KRW-BTC"
    assert {"market": "KRW-BTC", "problem": "confidence 150 is not in [0, 100]"} in rows(schema.metadata["problems"])


def test_a_buy_whose_stop_is_above_the_close_is_named(tmp_path: Path, upstream: dict) -> None:
    result = materialize(tmp_path, upstream, StopAboveTheClose())
    assert result.success  # a warning: signals set stops from their own exit rules
    schema = check_results(result)["gpt_verdicts_schema_valid"]
    assert not schema.passed and schema.severity == dg.AssetCheckSeverity.WARN
    assert (schema.metadata["markets"].value, schema.metadata["count"].value) == ("KRW-BTC, KRW-ETH", 2)
    assert all("is not below D's close" in row["problem"] for row in rows(schema.metadata["problems"]))


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"verdict": "MAYBE"}, "verdict 'MAYBE' is not one of BUY, HOLD, AVOID"),
        ({"confidence": -1}, "confidence -1 is not in [0, 100]"),
        ({"suggested_stop": float("nan")}, "BUY without a positive suggested_stop"),
        ({"source": "error", "error": "refused: no"}, "an error row must have no verdict and a reason"),
        ({"source": "gpt"}, "unknown source 'gpt'"),
    ],
)
def test_schema_violations(rules_frame: pd.DataFrame, change: dict, problem: str) -> None:
    frame = rules_frame.astype({"confidence": object})
    assert verdicts.schema_violations(frame) == []
    for column, value in change.items():
        frame.loc[0, column] = value
    assert verdicts.schema_violations(frame) == [("KRW-ETH", problem)]


def _payload_inputs(upstream: dict, market: str = "KRW-ETH") -> tuple[pd.DataFrame, dict, dict]:
    candles = upstream["daily_candles"].query("market == @market")
    row = upstream["daily_indicators"].query("market == @market").iloc[0].to_dict()
    candidate = upstream["candidates"].query("market == @market").iloc[0].to_dict()
    return candles, row, candidate


def test_payload_is_compact_canonical_and_has_no_lookahead(upstream: dict) -> None:
    candles, row, candidate = _payload_inputs(upstream)
    payload = build_payload("KRW-ETH", DAY, candles, row, candidate)
    rows = payload["daily_candles"]["rows"]
    assert len(rows) == PAYLOAD_CANDLES and rows[-1][0] == DAY
    assert list(payload["indicators"])[:11] == ["close", "ma20", "ma50", "ma150", "ma200", "rsi14", "atr14",
                                                "high_52w", "low_52w", "volume_ratio", "rs_vs_btc"]  # fmt: skip
    assert payload["candidate"] == {"score": 5, "rules_passed": ["stage2", "volume_surge"], "rules_failed": []}
    # A later candle handed in by mistake is not used; shuffled rows and columns change nothing.
    later = candles.iloc[[-1]].assign(candle_date_time_utc=pd.Timestamp("2023-12-21"))
    shuffled = pd.concat([candles, later]).sample(frac=1, random_state=7)[candles.columns[::-1]]
    reordered_row = dict(reversed(list(row.items())))
    again = verdict_request("KRW-ETH", DAY, shuffled, reordered_row, candidate)
    assert again.payload_json == canonical_json(payload)
    assert len(again.payload_json) < 5000  # about 2k tokens: 60 candles, not the whole history
    # Too little history: NaN goes out as null, never as a number.
    short = verdict_request("KRW-ETH", DAY, candles, {**row, "high_52w": float("nan")}, candidate)
    assert json.loads(short.payload_json)["indicators"]["high_52w"] is None
    assert short.payload_hash != again.payload_hash
