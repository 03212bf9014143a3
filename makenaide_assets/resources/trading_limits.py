"""The trading limits as Dagster config, and the operator's halt switch read at run time."""

import os

import dagster as dg
from pydantic import Field

from makenaide_assets.strategy.limits import HALT_ALL, HALTS, Limits

HALT_ENV = "MAKENAIDE_HALT"


class TradingLimits(dg.Config):
    """None = no limit. Live mode's defaults are `LIVE_LIMITS` (modes.py); paper and demo have
    none beyond the cash, so backtests and the demo size exactly as the strategy says."""

    max_krw_per_order: float | None = Field(default=None, description="KRW one buy may spend")
    max_krw_per_day: float | None = Field(default=None, description="KRW all buys of one partition may spend")
    daily_loss_pct: float | None = Field(
        default=None, description="no new buys once equity fell this % since the previous close"
    )
    drawdown_halt_pct: float | None = Field(default=None, description="no new buys this % below the equity peak")
    price_band_pct: float | None = Field(
        default=None, description="a market buy is refused when the quote moved more than this % from the signal"
    )

    def resolve(self) -> tuple[Limits, str | None]:
        """The limits with the operator's halt switch as it stands now (MAKENAIDE_HALT: "buys" or
        "all"; read at every run, so it takes effect without a redeploy), and a warning if the
        switch holds something unknown, which is read as "all": a typo must not let orders through."""
        raw = os.environ.get(HALT_ENV, "").strip().lower()
        warning = None
        if raw not in HALTS:
            warning = f'{HALT_ENV}={raw!r} is not "buys" or "all"; read as "all": nothing is ordered'
            raw = HALT_ALL
        limits = Limits(
            max_krw_per_order=self.max_krw_per_order,
            max_krw_per_day=self.max_krw_per_day,
            daily_loss_pct=self.daily_loss_pct,
            drawdown_halt_pct=self.drawdown_halt_pct,
            price_band_pct=self.price_band_pct,
            halt=raw,
        )
        return limits, warning


# Live money starts small: an operator raises these once the rehearsal and the first weeks agree.
LIVE_LIMITS = TradingLimits(
    max_krw_per_order=1_000_000.0,
    max_krw_per_day=3_000_000.0,
    daily_loss_pct=5.0,
    drawdown_halt_pct=15.0,
    price_band_pct=3.0,
)
