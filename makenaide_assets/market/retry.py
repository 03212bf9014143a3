"""Step retries for the analysis steps that call the network: `market`, `gpt_verdicts`, `timing_4h`.

The clients already retry one request (`upbit_retry`: 429, 5xx, timeouts, a few seconds apart); a
step retry covers what outlasts them — Upbit or the network away for a minute, S3 not answering
the IO manager. Two retries with exponential backoff, as the seeds ask: 30 s, then 90 s (Dagster's
(2^n - 1) × delay). No jitter: one client, nobody to stampede with. Three attempts of a cold day
(~70 s each, docs/performance.md) stay well inside `dagster/max_runtime` (jobs.py).

A retry re-runs the whole step: these steps read only, and every value is keyed by partition, so
running them again changes nothing but the time. `fills` and `signals` get none: they touch the
ledger and the exchange, and their own code retries only what is safe to repeat.

What another attempt cannot change fails at once (`dg.Failure(allow_retries=False)`): a recording
or an answer that is malformed, a day outside the recording, a market Upbit does not know, a
request Upbit refused (4xx) or a ban, which a retry would extend.
"""

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from makenaide_assets.resources.market_data import ReplayOutOfRange
from makenaide_assets.strategy.candles import MalformedMarketData

NETWORK_RETRY = dg.RetryPolicy(max_retries=2, delay=30, backoff=dg.Backoff.EXPONENTIAL)

_PERMANENT = (MalformedMarketData, ReplayOutOfRange)
# The Upbit clients' errors are looked up, not imported: importing the clients brings pyupbit,
# requests and PyJWT (~0.3 s of every demo-mode `dagster` command, docs/performance.md), and an
# exception of a class whose module was never imported cannot have been raised.
_HTTP, _QUOTATION = "makenaide_assets.resources.upbit_http", "makenaide_assets.resources.upbit_quotation"


def _classes(module: str, *names: str) -> tuple[type[BaseException], ...]:
    loaded = sys.modules.get(module)
    return tuple(getattr(loaded, name) for name in names) if loaded is not None else ()


def permanent(exc: BaseException) -> bool:
    """True when trying the step again would fail the same way."""
    upbit = (*_classes(_QUOTATION, "MarketNotFound", "QuoteNotAsOf"), *_classes(_HTTP, "UpbitBanned"))
    if isinstance(exc, (*_PERMANENT, *upbit)):
        return True
    if isinstance(exc, _classes(_HTTP, "UpbitRequestError")):
        # Upbit answered 4xx (not 429): it refused the request as asked, and will again.
        return exc.status is not None and 400 <= exc.status < 500 and exc.status != 429
    return False


@contextmanager
def retried_unless_permanent() -> Iterator[None]:
    """Lets NETWORK_RETRY retry what may pass, and fails at once what cannot."""
    try:
        yield
    except Exception as exc:
        if isinstance(exc, dg.DagsterError) or not permanent(exc):
            raise  # Dagster's own errors, a `Failure` and anything that may pass go to the policy as they are
        raise dg.Failure(
            description=f"{type(exc).__name__}: {exc} (not retried: another attempt would fail the same way)",
            allow_retries=False,
        ) from exc
