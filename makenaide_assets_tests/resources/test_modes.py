"""`resources_for`: the broker holds the very ledger and market data the assets are given."""

import pytest

from makenaide_assets.resources.broker import PaperBroker
from makenaide_assets.resources.modes import resources_for
from makenaide_assets.resources.upbit_broker import UpbitBroker


@pytest.mark.parametrize("mode", ["demo", "paper"])
def test_the_paper_broker_nests_the_top_level_ledger_and_market_data(mode: str) -> None:
    resources = resources_for(mode, has_openai_key=False)  # type: ignore[arg-type]
    broker = resources["broker"]
    assert isinstance(broker, PaperBroker)
    assert broker.ledger is resources["ledger"]
    assert broker.market_data is resources["market_data"]


def test_the_live_broker_nests_the_top_level_ledger_and_no_market_data() -> None:
    resources = resources_for("live", has_openai_key=False)
    broker = resources["broker"]
    assert isinstance(broker, UpbitBroker)
    assert broker.ledger is resources["ledger"]
    assert "market_data" not in type(broker).model_fields  # Upbit itself is the live exchange's price
