"""Universe thresholds, a resource so the mode (not the asset) decides them."""

import dagster as dg


class UniverseThresholds(dg.ConfigurableResource):
    """The seeds' Phase 1 filters: months listed (monthly candles) and 24h traded value."""

    min_months: int = 14
    min_trade_value_krw: float = 300_000_000.0
    # Daily candles read per market: MA200 and the 52-week range need more than one
    # 200-candle page, and VCP/base rules look back further than that.
    history_days: int = 400
