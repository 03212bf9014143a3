"""The one Definitions object: loadable, every contract name present, mode picks resources."""

import subprocess
import sys

import dagster as dg
import pytest

from makenaide_assets.definitions import build_defs
from makenaide_assets.resources.analyst import OpenAIAnalyst, RulesAnalyst
from makenaide_assets.resources.broker import PaperBroker
from makenaide_assets.resources.market_data import ReplayMarketData
from makenaide_assets.resources.modes import DEMO_MIN_MONTHS, resources_for
from makenaide_assets.resources.upbit_broker import UpbitBroker
from makenaide_assets.resources.upbit_quotation import UpbitMarketData
from makenaide_assets.settings import SettingsError, mode

CONTRACT_ASSETS = [
    "tickers", "universe", "daily_indicators", "candidates", "gpt_verdicts", "timing_4h", "signals",
    "fills", "portfolio", "daily_report", "strategy_stats", "backtest_report",
]  # fmt: skip


def test_definitions_load_with_every_contract_name() -> None:
    defs = build_defs()
    dg.Definitions.validate_loadable(defs)
    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert set(CONTRACT_ASSETS) <= keys
    assert defs.resolve_job_def("analysis_job") and defs.resolve_job_def("trading_job")
    schedule = defs.resolve_schedule_def("analysis_schedule")
    assert schedule.cron_schedule == "5 0 * * *" and schedule.execution_timezone in (None, "UTC")
    assert {job.name for job in defs.resolve_sensor_def("signals_sensor").jobs} == {"trading_job", "report_job"}
    assert defs.resolve_sensor_def("run_failure_notifier")
    analysis = {k.to_user_string() for k in defs.resolve_job_def("analysis_job").asset_layer.executable_asset_keys}
    assert {"tickers", "strategy_stats", "signals"} <= analysis and "fills" not in analysis


# The checks that stop the day (and with it any trading): money, or market data every decision reads.
# Everything else warns. `fills` keeps its own checks (non-blocking; trading has already happened).
BLOCKING = {
    "tickers:tickers_well_formed",  # an empty or doubled market list empties or doubles the whole day
    "daily_candles:daily_candles_ohlc_sane",  # every indicator, rule, breadth reading and exit reads
    "daily_candles:daily_candles_unique",  # these candles; a stale, missing, doubled or impossible
    "daily_candles:daily_candles_fresh",  # bar turns into wrong buys and wrong (or no) stop-losses
    "daily_indicators:daily_indicators_no_unexplained_nan",  # a NaN the rules would read as "no"
    "candidates:candidates_inputs_sane",  # a candidate passed on an infinite input is one step from a buy
    "strategy_stats:strategy_stats_matches_ledger",  # Kelly sizes positions from these numbers
    "signals:signals_within_cash",
    "signals:signals_min_order",
    "signals:signals_one_order_per_market",
    "signals:signals_kelly_within_cap",
    "signals:signals_selector_honoured",
    "signals:signals_match_the_traded_plan",  # a changed past is a conflict, never an order today
    "portfolio:portfolio_equity_as_recorded",  # nor a rewritten equity
}


def test_blocking_checks_are_the_money_set_and_the_analysis_runs_six_steps() -> None:
    defs = build_defs()
    graph = defs.resolve_asset_graph()
    specs = {f"{k.asset_key.to_user_string()}:{k.name}": graph.get_check_spec(k) for k in graph.asset_check_keys}
    assert {key for key, spec in specs.items() if spec.blocking and spec.asset_key.path != ["fills"]} == BLOCKING
    # Every check is in the catalog the daily report reads, the in-asset ones included; but the
    # monthly report's, which is a month's check, not a day's.
    assert set(defs.resources["check_catalog"].checks) == set(specs) - {"monthly_report:monthly_report_complete"}
    # In-asset checks run in their asset's step (verdict coverage there too, on the values as stored).
    # `market` produces tickers → daily_indicators, `breadth_and_candidates` those two assets and
    # `verdicts_and_timing` gpt_verdicts and timing_4h: a step each, every asset and check keeping its
    # own key (market/step.py). The on-time checks of the four watched assets run last, as one step
    # (analysis/freshness.py).
    job = defs.resolve_job_def("analysis_job")
    assert {node.name for node in job.nodes} == {
        "market", "breadth_and_candidates", "verdicts_and_timing", "strategy_stats", "signals", "analysis_on_time",
    }  # fmt: skip
    trading = defs.resolve_job_def("trading_job")
    assert {node.name for node in trading.nodes} == {"fills", "portfolio", "stop_levels", "daily_report"}
    report = defs.resolve_job_def("report_job")
    assert {node.name for node in report.nodes} == {"portfolio", "stop_levels", "daily_report"}
    assert {node.name for node in defs.resolve_job_def("stop_exit_job").nodes} == {"stop_exits"}


def test_every_partitioned_asset_shares_the_one_daily_partitions() -> None:
    from makenaide_assets.backtest.walk_forward_asset import windows_partitions
    from makenaide_assets.partitions import daily
    from makenaide_assets.trading.monthly import monthly

    # Other grains, on purpose: months, and walk-forward windows (one run per window, not per day).
    other = {"monthly_report": monthly, "walk_forward_window": windows_partitions, "walk_forward_report": None}
    graph = build_defs().resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        expected = other.get(key.to_user_string(), daily)
        assert graph.get(key).partitions_def == expected, key


def test_schedule_requests_the_day_that_just_closed() -> None:
    defs = build_defs()
    schedule = defs.resolve_schedule_def("analysis_schedule")
    context = dg.build_schedule_context(
        scheduled_execution_time=__import__("datetime").datetime(2023, 12, 21, 0, 5),
        repository_def=defs.get_repository_def(),
    )
    [request] = schedule.evaluate_tick(context).run_requests
    assert request.partition_key == "2023-12-20" and request.job_name == "analysis_job"


@pytest.mark.parametrize(
    ("name", "market_data", "broker"),
    [
        ("demo", ReplayMarketData, PaperBroker),
        ("paper", UpbitMarketData, PaperBroker),
        ("live", UpbitMarketData, UpbitBroker),
    ],
)
def test_mode_picks_resources_in_one_place(name: str, market_data: type, broker: type) -> None:
    resources = resources_for(name, has_openai_key=False)  # type: ignore[arg-type]
    assert isinstance(resources["market_data"], market_data)
    assert isinstance(resources["broker"], broker)
    expected_analyst = RulesAnalyst if name == "demo" else OpenAIAnalyst
    assert isinstance(resources["analyst"], expected_analyst)
    assert (resources["universe_thresholds"].min_months == DEMO_MIN_MONTHS) == (name == "demo")


def test_demo_with_an_openai_key_uses_openai(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(resources_for("demo", has_openai_key=True)["analyst"], OpenAIAnalyst)


def test_unknown_mode_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAKENAIDE_MODE", "yolo")
    with pytest.raises(SettingsError, match="MAKENAIDE_MODE"):
        mode()


def test_demo_partitions_are_the_replays_days_and_paper_keeps_2022_to_today(sample_dir, long_dir) -> None:
    from makenaide_assets.partitions import daily_partitions

    sample = daily_partitions("demo", sample_dir).get_partition_keys()
    assert (sample[0], sample[-1], len(sample)) == ("2022-12-05", "2023-12-31", 392)
    long = daily_partitions("demo", long_dir).get_partition_keys()
    assert (long[0], long[-1]) == ("2022-01-01", "2025-09-29")  # KRW-BTC from 2017: the contract start wins
    paper = daily_partitions("paper", sample_dir)
    assert paper.get_first_partition_key() == "2022-01-01"
    assert paper.get_last_partition_key() >= "2026-01-01"  # open-ended: up to the day that last closed


def test_a_schedule_tick_outside_the_partitions_skips_with_the_reason() -> None:
    defs = build_defs()
    schedule = defs.resolve_schedule_def("analysis_schedule")
    context = dg.build_schedule_context(
        scheduled_execution_time=__import__("datetime").datetime(2031, 1, 2, 0, 5),
        repository_def=defs.get_repository_def(),
    )
    result = schedule.evaluate_tick(context)
    assert not result.run_requests and "2031-01-01 is not a partition" in (result.skip_message or "")


def test_monthly_report_runs_on_the_first_for_the_month_that_ended_over_months_that_follow_the_days(
    sample_dir, long_dir
) -> None:
    from datetime import UTC, datetime

    from makenaide_assets.partitions import daily_partitions
    from makenaide_assets.trading.monthly import monthly_partitions

    defs = build_defs()
    graph = defs.resolve_asset_graph()
    assert graph.get(dg.AssetKey("monthly_report")).parent_keys == {dg.AssetKey("portfolio")}
    job = defs.resolve_job_def("monthly_report_job")
    assert {k.to_user_string() for k in job.asset_layer.executable_asset_keys} == {"monthly_report"}
    schedule = defs.resolve_schedule_def("monthly_report_schedule")
    assert schedule.cron_schedule == "45 0 1 * *" and schedule.execution_timezone == "UTC"  # 09:45 KST
    repository = defs.get_repository_def()
    first = dg.build_schedule_context(scheduled_execution_time=datetime(2023, 12, 1, 0, 45), repository_def=repository)
    [request] = schedule.evaluate_tick(first).run_requests
    assert request.partition_key == "2023-11" and request.job_name == "monthly_report_job"
    later = dg.build_schedule_context(scheduled_execution_time=datetime(2031, 2, 1, 0, 45), repository_def=repository)
    assert "2031-01 is not a month" in (schedule.evaluate_tick(later).skip_message or "")
    # Demo: the replay's months and no empty one; paper: from 2022-01 to the current month.
    sample = monthly_partitions(daily_partitions("demo", sample_dir)).get_partition_keys()
    assert (sample[0], sample[-1], len(sample)) == ("2022-12", "2023-12", 13)
    long = monthly_partitions(daily_partitions("demo", long_dir)).get_partition_keys()
    assert (long[0], long[-1]) == ("2022-01", "2025-09")
    paper = monthly_partitions(daily_partitions("paper", sample_dir))
    now = datetime.now(UTC).strftime("%Y-%m")
    assert paper.get_first_partition_key() == "2022-01" and paper.get_last_partition_key() == now


def test_every_asset_has_an_owner_and_a_code_version() -> None:
    graph = build_defs().resolve_asset_graph()
    missing = [
        key.to_user_string()
        for key in graph.get_all_asset_keys()
        if not graph.get(key).owners or not graph.get(key).code_version
    ]
    assert missing == []


_FREEZE_PROBE = """
import gc, weakref
before = gc.get_freeze_count()
import makenaide_assets.definitions
frozen = gc.get_freeze_count()

class Node:
    pass

node = Node()
node.self = node  # a cycle made after the definitions loaded: still the collector's to free
probe = weakref.ref(node)
del node
gc.collect()
print(before, frozen, probe() is None)
"""


def test_loading_the_definitions_freezes_what_they_built_and_later_garbage_is_still_collected() -> None:
    done = subprocess.run([sys.executable, "-c", _FREEZE_PROBE], capture_output=True, text=True, check=True)
    before, frozen, collected = done.stdout.split()
    assert before == "0"
    assert int(frozen) > 100_000  # Dagster, pandas and the definitions: out of every later collection's walk
    assert collected == "True"
