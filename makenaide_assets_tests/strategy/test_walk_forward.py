import itertools

import pandas as pd
import pytest

from makenaide_assets.strategy.walk_forward import choose, grid_cells, window_at, windows


def test_test_windows_tile_the_range_and_each_trains_on_the_days_before_it() -> None:
    found = windows("2022-01-01", "2022-12-31", train_days=180, test_days=30)
    assert found[0].train_start == "2022-01-01" and found[0].train_end == "2022-06-29"
    assert found[0].test_start == "2022-06-30" and found[-1].test_end == "2022-12-31"
    for before, after in itertools.pairwise(found):
        assert pd.Timestamp(after.test_start) == pd.Timestamp(before.test_end) + pd.Timedelta(days=1)
    for w in found:
        assert pd.Timestamp(w.train_end) + pd.Timedelta(days=1) == pd.Timestamp(w.test_start)
        assert (pd.Timestamp(w.train_end) - pd.Timestamp(w.train_start)).days == 179
    assert found[-1].test_start == "2022-12-27"  # the last test window is cut at the end: 5 days


def test_a_range_too_short_for_one_window_is_refused() -> None:
    with pytest.raises(ValueError, match="too short"):
        windows("2023-07-12", "2023-09-01", train_days=90, test_days=30)
    assert window_at("2023-10-10", "2023-10-20", 90, 30).test_end == "2023-10-20"


def test_grid_cells_keep_the_first_values_in_cell_0() -> None:
    cells = grid_cells({"stop_loss_pct": [0.08, 0.12], "take_profit_pct": [0.25, 0.5]})
    assert cells[0] == {"stop_loss_pct": 0.08, "take_profit_pct": 0.25}
    assert len(cells) == 4 and cells[-1] == {"stop_loss_pct": 0.12, "take_profit_pct": 0.5}


def train(rows: list[tuple[int, int, float, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["cell", "trades", "total_return_pct", "max_drawdown_pct"])


def test_the_choice_is_the_best_train_return_among_cells_that_traded_enough() -> None:
    # Cell 2 returned most but on too few trades; cell 1 beats cell 3 on drawdown at the same return.
    table = train([(0, 3, 1.0, -2.0), (1, 4, 2.5, -1.0), (2, 1, 9.0, -0.5), (3, 5, 2.5, -3.0)])
    assert choose(table, min_trades=3) == 1
    assert choose(table, min_trades=1) == 2
    assert choose(table, min_trades=10) == 0  # nothing traded enough: the defaults
    assert choose(train([(0, 2, 1.0, -1.0), (1, 2, 1.0, -1.0)]), min_trades=1) == 0  # full tie: grid order
