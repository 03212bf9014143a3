"""The walk-forward grid over issue 15's six axes: each name routed to the op whose run config it is,
unknown names refused, and the work shared between cells (the analysis up to candidates, the runs of
exit variants that never bought) giving every cell what its own run alone gives. On the long
recording's 2023-11-10 → 12-05, where `min_score` 5 drops the 2023-11-15 KRW-BTC entry."""

from dataclasses import replace
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from makenaide_assets.analysis.candidates import CandidatesConfig
from makenaide_assets.analysis.signals import SignalsConfig
from makenaide_assets.backtest import shared_analysis
from makenaide_assets.backtest.evaluate import evaluate
from makenaide_assets.backtest.fast import FastEngine, run_fast
from makenaide_assets.backtest.runner import BacktestSpec
from makenaide_assets.backtest.walk_forward import DEFAULT_GRID, Plan, exit_families, main, run_cell, train_windows
from makenaide_assets.backtest.walk_forward_asset import WalkForwardConfig
from makenaide_assets.resources.market_data import ReplayMarketData
from makenaide_assets_tests.conftest import SHARED_DATA

LONG = str(SHARED_DATA / "upbit-long")
START, END, DAYS = "2023-11-10", "2023-12-05", 26
CASH = 10_000_000.0


def plan_of(tmp_path: Path, grid: dict, **kwargs: object) -> Plan:
    """One window whose train days are START → END (and a one-day test window after it)."""
    return Plan(
        replay_dir=LONG, start=START, end="2023-12-06", workdir=tmp_path, train_days=DAYS, test_days=1, grid=grid,
        **kwargs,
    )  # fmt: skip


def test_the_default_grid_has_the_six_axes_each_with_its_default_first(tmp_path: Path) -> None:
    names = ["stop_loss_pct", "trailing_atr_multiple", "take_profit_pct", "min_score", "min_confidence"]
    assert list(DEFAULT_GRID) == [*names, "max_position_fraction"]
    signals, candidates = SignalsConfig(), CandidatesConfig()
    for name, values in DEFAULT_GRID.items():
        default = getattr(candidates if name == "min_score" else signals, name)
        assert values[0] == default and len(set(values)) == len(values) >= 2, name
    plan = plan_of(tmp_path, DEFAULT_GRID)
    assert len(plan.cells()) == 64
    assert plan.ops_config(0) == {
        "signals": {"config": {name: getattr(signals, name) for name in DEFAULT_GRID if name != "min_score"}},
        "breadth_and_candidates": {"config": {"min_score": candidates.min_score}},
    }
    # 8 entry combinations (min_score × confidence × cap), each with its 7 exit variants.
    families = exit_families(plan)
    assert len(families) == 8 and all(len(cells) == 7 for cells in families.values())
    assert sorted(c for base, cells in families.items() for c in [base, *cells]) == list(range(64))


def passed(replay: str, min_score: int) -> set[tuple[str, str]]:
    """(day, market) of every passed candidate over START → END."""
    spec = BacktestSpec(
        start=START, end=END, replay_dir=replay, workdir=Path("unused"),
        ops_config={"breadth_and_candidates": {"config": {"min_score": min_score}}},
    )  # fmt: skip
    days = shared_analysis.prepared_days(FastEngine.for_spec(spec), spec.partitions())
    return {(key, m) for key, day in days.items() for m in day.candidates.loc[day.candidates["passed"], "market"]}


def test_min_score_goes_to_breadth_and_candidates_and_changes_candidates_and_buys(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, {"min_score": [4, 5], "min_confidence": [70, 80]})
    assert plan.ops_config(2) == {
        "breadth_and_candidates": {"config": {"min_score": 5}},
        "signals": {"config": {"min_confidence": 70.0}},
    }
    assert type(plan.cells()[2]["min_score"]) is int  # as the op's config reads it, not 5.0
    strict, loose = passed(LONG, 5), passed(LONG, 4)
    assert strict < loose and ("2023-11-15", "KRW-BTC") in loose - strict
    buys = {}
    for cell in (0, 2):
        fills, _, _ = run_cell(LONG, START, END, tmp_path / f"cell{cell}", CASH, plan.ops_config(cell))
        buys[cell] = set(map(tuple, fills.loc[fills["side"] == "buy", ["partition_key", "market"]].to_numpy()))
    assert ("2023-11-15", "KRW-BTC") in buys[0] - buys[2]


def test_unknown_names_and_refused_values_are_refused_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ValueError, match="'stop_loss' is not run config a grid cell can set"):
        plan_of(tmp_path, {"stop_loss": [0.05]})
    with pytest.raises(ValueError, match="'score' is not run config"):
        plan_of(tmp_path, {"stop_loss_pct": [0.05]}, fixed={"score": 5})
    with pytest.raises(ValueError, match=r"min_score 4\.5 is refused by the config of breadth_and_candidates"):
        plan_of(tmp_path, {"min_score": [4, 4.5]})
    with pytest.raises(SystemExit) as exit_:
        main(["--start", START, "--end", END, "--workdir", str(tmp_path), "--grid", "candidate_score=4,5"])
    assert exit_.value.code == 2 and "'candidate_score' is not run config" in capsys.readouterr().err
    with pytest.raises(dg.Failure, match="'score' is not run config"):
        WalkForwardConfig(replay_dir=LONG, end=END, grid={"score": [4.0]}, workdir=str(tmp_path)).plan()
    assert not any(tmp_path.iterdir())


def test_a_shared_run_equals_the_cell_run_alone_whatever_ran_before_it(tmp_path: Path) -> None:
    """Cells of other min_score and signals config one after another in one process, the cache filled by
    the first: each equals run_fast of that cell alone. A cache keyed on the recording only would hand the
    second the first's candidates; an engine or book kept between runs, its positions."""
    shared_analysis.clear()
    cells = [
        {"breadth_and_candidates": {"config": {"min_score": 5}}, "signals": {"config": {"stop_loss_pct": 0.05}}},
        {},
        {"signals": {"config": {"max_position_fraction": 0.05}}},
    ]
    fills = []
    for i, ops in enumerate(cells):
        spec = BacktestSpec(start=START, end=END, replay_dir=LONG, workdir=tmp_path / f"shared{i}", ops_config=ops)
        shared, alone = shared_analysis.run_shared(spec), run_fast(replace(spec, workdir=tmp_path / f"alone{i}"))
        pd.testing.assert_frame_equal(shared.orders, alone.orders)
        pd.testing.assert_frame_equal(shared.ledger_equity, alone.ledger_equity)
        pd.testing.assert_frame_equal(shared.signals, alone.signals)
        timings = ["analysis_s", "trading_s"]
        pd.testing.assert_frame_equal(shared.days.drop(columns=timings), alone.days.drop(columns=timings))
        fills.append(alone.fills()[["partition_key", "market", "side", "volume"]])
    # The cells' runs differ: a leak from one into another would show.
    assert not fills[0].equals(fills[1]) and not fills[1].equals(fills[2])


def test_a_train_table_equals_every_cell_run_alone_copies_included(tmp_path: Path) -> None:
    """Confidence 90 buys nothing here, so its stop-loss variant is booked as the same run without
    running; confidence 70 buys, so its variant runs. Every row equals run_fast of its cell alone."""
    plan = plan_of(tmp_path, {"min_confidence": [70, 90], "stop_loss_pct": [0.08, 0.05]})
    window = plan.windows()[0]
    assert (window.train_start, window.train_end) == (START, END)
    table = train_windows(plan, workers=1, progress=lambda line: None, only=[window])[window.key]
    copies = table.loc[table["same_as"].notna(), "cell"].tolist()
    assert copies == [3] and table.loc[table["cell"] == 1, "same_as"].isna().all()
    for row in table.itertuples():
        spec = BacktestSpec(
            start=START, end=END, replay_dir=LONG, workdir=tmp_path / f"alone{row.cell}",
            ops_config=plan.ops_config(row.cell),
        )  # fmt: skip
        result = evaluate(run_fast(spec), ReplayMarketData(replay_dir=LONG))
        assert row.trades == result.trade_stats.trades
        assert row.total_return_pct == pytest.approx(result.strategy["total_return_pct"], abs=1e-12)
        assert row.max_drawdown_pct == pytest.approx(result.strategy["max_drawdown_pct"], abs=1e-12)
