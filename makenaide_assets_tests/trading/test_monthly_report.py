"""`monthly_report` on a ledger the real jobs wrote: the sample's days 2023-11-30 → 2023-12-06
through `DayRunner` (analysis, the sensor, trading or report runs; a buy on 12-06), then the monthly
job for November (one recorded day, from the initial cash) and December (six days, from November's
last equity), checked against the ledger, `daily_report` and the recording's KRW-BTC closes; the
monthly message through the loopback webhook (conftest)."""

from typing import Any

import dagster as dg
import pandas as pd
import pytest

from makenaide_assets.days import DayRunner
from makenaide_assets.definitions import build_defs
from makenaide_assets.resources.ledger import TradingLedger
from makenaide_assets.settings import SAMPLE_REPLAY_DIR
from makenaide_assets.strategy.ticks import FEE_RATE

DAYS = list(pd.date_range("2023-11-30", "2023-12-06").strftime("%Y-%m-%d"))


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The days run in order on a fresh ledger and instance."""
    var = tmp_path_factory.mktemp("monthly") / "var"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MAKENAIDE_VAR", str(var))
        for name in ("MAKENAIDE_MODE", "MAKENAIDE_REPLAY_DIR", "MAKENAIDE_LEDGER_URL", "OPENAI_API_KEY"):
            patch.delenv(name, raising=False)
        defs = build_defs()
        runner = DayRunner(defs, dg.DagsterInstance.ephemeral())
        traded = []
        for day in DAYS:
            result = runner.run(day)
            assert result.analysis_ok and result.trading_ok, (day, result.error)
            traded += result.traded
    return {"defs": defs, "instance": runner.instance, "var": var, "traded": traded}


def _month(ran: dict[str, Any], month: str) -> tuple[dg.ExecuteInProcessResult, pd.Series]:
    job = ran["defs"].resolve_job_def("monthly_report_job")
    result = job.execute_in_process(partition_key=month, instance=ran["instance"])
    assert result.success
    return result, result.output_for_node("monthly_report").iloc[0]


def _btc_close(day: str) -> float:
    frame = pd.read_csv(SAMPLE_REPLAY_DIR / "candles" / "day" / "KRW-BTC.csv.gz")
    dates = pd.to_datetime(frame["candle_date_time_utc"]).dt.strftime("%Y-%m-%d")
    return float(frame.loc[dates == day, "trade_price"].iloc[0])


def test_monthly_report_from_the_ledger_the_real_jobs_wrote(
    ran: dict[str, Any],
    webhook: tuple[str, list[dict]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, received = webhook
    monkeypatch.setenv("MAKENAIDE_VAR", str(ran["var"]))
    monkeypatch.setenv("MAKENAIDE_SLACK_WEBHOOK_URL", url)
    assert ran["traded"] == ["2023-12-06"]
    ledger = TradingLedger(url=f"sqlite:///{ran['var'] / 'ledger.sqlite'}")
    equity = ledger.equity_history(None).set_index("partition_key")["equity_krw"]
    orders = ledger.all_orders()
    done = orders[orders["status"] == "done"]
    assert list(equity.index) == DAYS and len(done) >= 1

    november, nov = _month(ran, "2023-11")
    assert nov["coverage"] == "partial: 1 of 30 days" and nov["start_basis"] == "initial cash"
    assert nov["end_equity_krw"] == pytest.approx(equity["2023-11-30"]) and nov["trades"] == 0
    assert nov["return_pct"] == pytest.approx((equity["2023-11-30"] / ledger.initial_cash_krw - 1) * 100)
    [complete] = november.get_asset_check_evaluations()
    assert not complete.passed and complete.severity == dg.AssetCheckSeverity.WARN
    assert complete.metadata["missing_days"].value == "2023-11-01 → 2023-11-29"

    december, dec = _month(ran, "2023-12")
    assert dec["coverage"] == "partial: 6 of 31 days" and dec["start_basis"] == "equity of 2023-11-30"
    assert dec["start_equity_krw"] == pytest.approx(equity["2023-11-30"]) and dec["last_day"] == "2023-12-06"
    assert dec["return_pct"] == pytest.approx((equity["2023-12-06"] / equity["2023-11-30"] - 1) * 100)
    assert dec["trades"] == len(done) and dec["buys"] == len(done[done["side"].isin(["buy", "add"])])
    assert dec["fees_krw"] == pytest.approx(done["fee"].sum()) and dec["fees_krw"] > 0
    assert dec["closed_trades"] == 0 and pd.isna(dec["win_rate_pct"])
    # The ledger started on 11-30 at the initial cash: December's drawdown and return are those the
    # daily report of its last day gives over the whole history.
    report = pd.read_parquet(ran["var"] / "storage" / "daily_report" / "2023-12-06.parquet").iloc[0]
    assert dec["max_drawdown_pct"] == pytest.approx(report["max_drawdown_pct"])
    assert dec["return_pct"] == pytest.approx(report["return_total_pct"])
    # Buy-and-hold KRW-BTC over the same days: bought at 11-30's close, buy fee paid.
    bench = (_btc_close("2023-12-06") / _btc_close("2023-11-30") / (1 + FEE_RATE) - 1) * 100
    assert dec["benchmark_from"] == "2023-11-30" and dec["benchmark_return_pct"] == pytest.approx(bench)
    [complete] = december.get_asset_check_evaluations()
    assert complete.metadata["missing_days"].value == "2023-12-07 → 2023-12-31"

    # What the catalog and a person read.
    [event] = december.asset_materializations_for_node("monthly_report")
    meta = event.metadata
    assert meta["dagster/row_count"].value == 1
    assert [c.name for c in meta["dagster/column_schema"].value.columns][:4] == [
        "month", "days_in_month", "days_recorded", "coverage",
    ]  # fmt: skip
    assert meta["return_pct"].value == round(dec["return_pct"], 2)
    assert meta["coverage"].value == "partial: 6 of 31 days"
    figures = {r.data["figure"]: r.data["value"] for r in meta["month"].value.records}
    assert figures["days"] == "partial: 6 of 31 days" and figures["trades"].startswith(f"{len(done)} (")
    assert "2023-12-06" in {str(v) for r in meta["equity_by_day"].value.records for v in r.data.values()}

    # One monthly message per materialisation, naming the month, rounded.
    texts = [m["text"] for m in received if m["text"].startswith("Makenaide monthly report")]
    assert [t.splitlines()[0] for t in texts] == [
        "Makenaide monthly report 2023-11 (partial: 1 of 30 days)",
        "Makenaide monthly report 2023-12 (partial: 6 of 31 days)",
    ]
    assert f"trades {len(done)}, closed 0" in texts[1] and "KRW-BTC buy-and-hold " in texts[1]
    assert texts[1].splitlines()[-1] == f"flags: {dec['flags'] or 'none'}"
