"""An incremental on-disk store of Upbit candles: a daily run fetches only what is new.

One Parquet file per interval and market (`<root>/<interval>/<market>.parquet`). Each file
records, in its metadata, the span it holds completely: every candle Upbit has that starts in
[first, end), and whether `first` is the market's first candle. A request for the candles
before `end` then costs:
- nothing, when the stored span already reaches `end` (e.g. monthly candles within a month);
- one request for the candles since the last stored one, that one included, so a candle Upbit
  revised after we stored it is replaced (a daily run: 2 candles, one request);
- more only for history the file does not reach yet.
No lookahead: only candles starting before the caller's `end` are stored or returned, and a later
file read for an earlier `end` is cut at that `end`. Writes go to a temporary file renamed over
the old one, so a run that dies mid-write leaves the previous file whole; an unreadable file is
treated as absent and fetched again.
"""

import os
import re
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq

from makenaide_assets.strategy.candles import CANDLE_COLUMNS, NUMERIC_COLUMNS, Interval

# fetch(end, count) → (the last `count` candles starting before `end`, ascending; True when the
# market's history begins within them, i.e. fewer exist).
Fetch = Callable[[pd.Timestamp, int], tuple[pd.DataFrame, bool]]

_FORMAT = 1
_MARKET = re.compile(r"^[A-Z0-9]+-[A-Z0-9]+$")
_STEP = {"day": pd.Timedelta(days=1), "minute240": pd.Timedelta(hours=4)}


@dataclass(frozen=True)
class Span:
    """The file holds every candle starting in [first, end); none older exists if `from_listing`."""

    first: pd.Timestamp
    end: pd.Timestamp
    from_listing: bool


class CandleStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def candles(self, market: str, interval: Interval, end: pd.Timestamp, count: int, fetch: Fetch) -> pd.DataFrame:
        """The last `count` candles starting before `end`, ascending, fetching only what is missing."""
        stored = self.read(market, interval)
        if stored is None:
            frame, listed = fetch(end, count)
            frame = _before(frame, end)
            self.write(market, interval, frame, Span(_first(frame, end), end, listed))
            return frame.tail(count).reset_index(drop=True)
        frame, span = stored
        if end <= span.first:
            if span.from_listing:  # before the market's first candle: nothing to ask for
                return _before(frame, end)
            # Older than anything stored: fetched, not stored (a file holds one unbroken span).
            return _before(fetch(end, count)[0], end).tail(count).reset_index(drop=True)
        changed = False
        if end > span.end:
            frame, span = self._newer(frame, span, interval, end, count, fetch)
            changed = True
        held = _before(frame, end)
        if len(held) < count and not span.from_listing:
            older, listed = fetch(span.first, count - len(held))
            older = _before(older, span.first)
            frame = pd.concat([older, frame], ignore_index=True)
            span = Span(_first(older, span.first), span.end, listed)
            held = _before(frame, end)
            changed = True
        if changed:
            self.write(market, interval, frame, span)
        return held.tail(count).reset_index(drop=True)

    def _newer(
        self, frame: pd.DataFrame, span: Span, interval: Interval, end: pd.Timestamp, count: int, fetch: Fetch
    ) -> tuple[pd.DataFrame, Span]:
        last = frame["candle_date_time_utc"].iloc[-1] if len(frame) else span.end
        steps = _steps(last, end, interval)  # candles in [last, end) at most: the last one is refreshed
        if steps > count:
            # A gap wider than what is asked: fetch what is asked and start the file afresh.
            fresh, listed = fetch(end, count)
            fresh = _before(fresh, end)
            return fresh, Span(_first(fresh, end), end, listed)
        new, listed = fetch(end, steps)
        new = _before(new, end)
        if listed:  # the whole history fits in what came back
            return new, Span(_first(new, end), end, True)
        oldest_new = new["candle_date_time_utc"].iloc[0] if len(new) else end
        kept = frame[frame["candle_date_time_utc"] < oldest_new]
        merged = pd.concat([kept, new], ignore_index=True)
        return merged, Span(min(span.first, _first(new, end)), end, span.from_listing)

    def path(self, market: str, interval: Interval) -> Path:
        if not _MARKET.match(market):
            raise ValueError(f"not an Upbit market code: {market!r}")
        return self.root / interval / f"{market}.parquet"

    def read(self, market: str, interval: Interval) -> tuple[pd.DataFrame, Span] | None:
        path = self.path(market, interval)
        if not path.is_file():
            return None
        try:
            frame = pq.read_table(path, use_threads=False).to_pandas()
            meta = frame.attrs["makenaide_span"]
            span = Span(pd.Timestamp(meta["first"]), pd.Timestamp(meta["end"]), bool(meta["from_listing"]))
            problem = "" if meta["format"] == _FORMAT else f"format {meta['format']}"
        except Exception as exc:  # a truncated or foreign file is refetched, never trusted
            frame, span, problem = pd.DataFrame(), None, f"{type(exc).__name__}: {exc}"
        problem = problem or _shape_problem(frame)
        if problem or span is None:
            dg.get_dagster_logger(__name__).warning(f"candle store: ignoring {path} ({problem}); fetching again")
            return None
        return frame, span

    def write(self, market: str, interval: Interval, frame: pd.DataFrame, span: Span) -> None:
        path = self.path(market, interval)
        path.parent.mkdir(parents=True, exist_ok=True)
        out = frame[CANDLE_COLUMNS].reset_index(drop=True)
        meta = {k: (v.isoformat() if isinstance(v, pd.Timestamp) else v) for k, v in asdict(span).items()}
        out.attrs = {"makenaide_span": {**meta, "format": _FORMAT}}
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "wb") as handle:
                out.to_parquet(handle, index=False)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)  # atomic: readers see the old file or the new one, never half
        finally:
            tmp.unlink(missing_ok=True)


def _shape_problem(frame: pd.DataFrame) -> str:
    """What makes a stored frame unlike the validated frames `write` stores ("" if nothing).

    The values were validated (candle_format.normalise_candles) before they were written; this
    cheaper check catches a file that is not one of ours, at a fraction of re-validating it.
    """
    if list(frame.columns) != CANDLE_COLUMNS:
        return f"columns {list(frame.columns)}"
    if any(frame[c].dtype != "datetime64[ns]" for c in CANDLE_COLUMNS[:2]):
        return "timestamps are not datetime64[ns]"
    if any(frame[c].dtype != "float64" for c in NUMERIC_COLUMNS) or frame[NUMERIC_COLUMNS].isna().to_numpy().any():
        return "prices or volumes are not all numbers"
    times = frame["candle_date_time_utc"]
    if not (times.is_monotonic_increasing and times.is_unique):
        return "timestamps are not ascending and unique"
    return ""


def _before(frame: pd.DataFrame, end: pd.Timestamp) -> pd.DataFrame:
    return frame[frame["candle_date_time_utc"] < end].reset_index(drop=True)


def _first(frame: pd.DataFrame, end: pd.Timestamp) -> pd.Timestamp:
    return pd.Timestamp(frame["candle_date_time_utc"].iloc[0]) if len(frame) else end


def _steps(last: pd.Timestamp, end: pd.Timestamp, interval: Interval) -> int:
    """Upper bound on the candles starting in [last, end); Upbit skips periods without trades."""
    if interval == "month":
        return max(1, (end.to_period("M") - last.to_period("M")).n)
    return max(1, -(-(end - last) // _STEP[interval]))
