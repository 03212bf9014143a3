"""The one place where MAKENAIDE_MODE picks resources (DESIGN §4)."""

import os
from typing import Any

import dagster as dg

from makenaide_assets import settings
from makenaide_assets.resources.analyst import Analyst, OpenAIAnalyst, RulesAnalyst
from makenaide_assets.resources.blacklist import Blacklist
from makenaide_assets.resources.broker import PaperBroker
from makenaide_assets.resources.io_manager import ParquetIOManager
from makenaide_assets.resources.kelly_evidence import KellyEvidence
from makenaide_assets.resources.ledger import TradingLedger
from makenaide_assets.resources.market_data import MarketData, ReplayMarketData
from makenaide_assets.resources.notifier import Notifier
from makenaide_assets.resources.thresholds import UniverseThresholds
from makenaide_assets.resources.trading_limits import LIVE_LIMITS

# The recorded sample holds at most 13 monthly candles, so the seeds' 14 would reject every
# market; 6 keeps the rule visible (late listings still fail it). Paper and live keep 14.
DEMO_MIN_MONTHS = 6


def _analyst(mode: settings.Mode, has_openai_key: bool) -> Analyst:
    if mode == "demo" and not has_openai_key:
        return RulesAnalyst()
    # Key and cache URL are read from the environment when a candidate is asked: the UI never shows
    # them, and a missing key makes error rows (exits still planned) instead of failing the run.
    return OpenAIAnalyst()


def _ledger_url(mode: settings.Mode) -> str | dg.EnvVar:
    """The ledger's URL as the UI may show it: MAKENAIDE_LEDGER_URL by name when set (a PostgreSQL
    URL carries its password), else this mode's own SQLite file (a path, no secret)."""
    if os.environ.get("MAKENAIDE_LEDGER_URL"):
        return dg.EnvVar("MAKENAIDE_LEDGER_URL")
    return settings.ledger_url(mode)


def resources_for(mode: settings.Mode, *, has_openai_key: bool) -> dict[str, Any]:
    # One ledger and one market data object, given to the assets and nested in the broker, so the
    # broker books into the ledger the assets read and fills at the prices they see.
    ledger = TradingLedger(url=_ledger_url(mode), mode=mode)
    common: dict[str, Any] = {
        "io_manager": ParquetIOManager(base_path=settings.storage_root()),
        "ledger": ledger,
        "analyst": _analyst(mode, has_openai_key),
        "notifier": Notifier(),
        "blacklist": Blacklist(),
        # Walk-forward out-of-sample trades for Kelly while the ledger is short of trades (unset: none).
        "kelly_evidence": KellyEvidence(path=os.environ.get("MAKENAIDE_KELLY_EVIDENCE") or None),
    }
    if mode == "demo":
        market_data: MarketData = ReplayMarketData(replay_dir=settings.replay_dir())
        return {
            **common,
            "market_data": market_data,
            "universe_thresholds": UniverseThresholds(min_months=DEMO_MIN_MONTHS),
            "broker": PaperBroker(ledger=ledger, market_data=market_data),
        }
    # Imported here: the Upbit clients bring pyupbit, requests and PyJWT (~0.3 s), which a demo run,
    # and so every `dagster` command in demo mode, never needs.
    from makenaide_assets.resources.upbit_broker import UpbitBroker
    from makenaide_assets.resources.upbit_quotation import UpbitMarketData

    # Candles kept under MAKENAIDE_VAR: a daily run then asks Upbit only for what closed since the last
    # one (about one request per market, benchmarks/daily_fetch.py), not 400 days of every market.
    market_data = UpbitMarketData(base_url=settings.upbit_api_url(), store_dir=str(settings.var_dir() / "candles"))
    live_data = {"market_data": market_data, "universe_thresholds": UniverseThresholds()}
    if mode == "paper":
        return {**common, **live_data, "broker": PaperBroker(ledger=ledger, market_data=market_data)}
    return {
        **common,
        **live_data,
        "broker": UpbitBroker(
            ledger=ledger,
            limits=LIVE_LIMITS,
            base_url=settings.upbit_api_url(),
            access_key=dg.EnvVar("UPBIT_ACCESS_KEY"),
            secret_key=dg.EnvVar("UPBIT_SECRET_KEY"),
            live_confirm=dg.EnvVar("MAKENAIDE_LIVE_CONFIRM"),
        ),
    }
