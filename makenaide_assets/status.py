"""`python -m makenaide_assets.status`: the operator's view outside the UI.

The balance (cash, equity), the open positions with their unrealised P&L and their stops, today's
signals and the last daily report. It reads and never writes:
- the trading ledger of MAKENAIDE_MODE (MAKENAIDE_LEDGER_URL, else the mode's SQLite file);
- the mode's market data for the closes (demo: the replay, at the newest partition with a portfolio);
- `<storage>/daily_indicators/<day>.parquet` for the ATR and trend MA `signals` judged exits on;
- the Dagster instance in DAGSTER_HOME for the newest `signals` and `daily_report` partitions.
The stops are `strategy/exits.py`'s, with the exit parameters of the run that made those signals.
"""

import argparse
import json
import math
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from makenaide_assets import settings
from makenaide_assets.strategy.stops import held_outside, position_rows

NO_TRADES = "no trades yet; run ./scripts/demo"


def _no_trades(mode: settings.Mode) -> str:
    return NO_TRADES if mode == "demo" else f"no trades yet in this {mode} ledger"


class StatusError(RuntimeError):
    """Something to tell the operator instead of a traceback."""


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m makenaide_assets.status", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the same as one JSON document")
    return parser.parse_args(argv)


def run(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    try:
        mode = settings.mode()
        status = gather(mode)
    except (settings.SettingsError, StatusError) as exc:
        print(f"makenaide status: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, settings.SettingsError) else 1
    print(json.dumps(_plain(status), indent=2, ensure_ascii=False) if args.json else render(status))
    return 0


# ---- gathering ------------------------------------------------------------------------------------


def gather(mode: settings.Mode) -> dict[str, Any]:
    """Everything the status shows, as plain values (the `--json` document)."""
    status = _gather(mode)
    return {key: status[key] for key in SECTIONS}


def _gather(mode: settings.Mode) -> dict[str, Any]:
    from makenaide_assets.analysis.signals import SignalsConfig
    from makenaide_assets.sql import shown_url

    status: dict[str, Any] = {"mode": mode, "generated_at": _iso(datetime.now(UTC))}
    config, status["instance"], status["signals"], status["daily_report"] = _from_instance()
    if config is None:
        config, source = SignalsConfig(), "SignalsConfig's defaults"
    else:
        source = f"as the signals run of {status['signals']['partition']} had them"
    status["exit_params"] = _exit_params(config, source)

    url = settings.ledger_url()
    ledger, recorded, missing = _open_ledger(url, mode)
    status["ledger"] = {"url": shown_url(url), "mode": recorded, "exists": ledger is not None, "message": missing}
    status["balance"], status["positions"], status["prices"] = None, [], None
    if ledger is None:
        return status
    try:
        cash = ledger.cash_krw(None)
        positions = ledger.open_positions(None)
        equity = ledger.equity_history(None)
        balances = ledger.balances()
        orders = ledger.all_orders()
        if status["signals"] is not None:
            planned = ledger.plan(status["signals"]["partition"])
            status["signals"]["traded"] = None if planned is None else len(planned)
    except Exception as exc:  # a database that answers nothing: say so, without the URL's secrets
        raise StatusError(f"cannot read the ledger at {shown_url(url)}: {_first_line(exc)}") from None
    if orders.empty and equity.empty and positions.empty:
        status["ledger"]["message"] = _no_trades(mode)
    status["prices"], closes, indicators, positions = _prices(mode, positions, equity)
    status["positions"] = position_rows(positions, closes, indicators, config.plan_params().exits, config.trend_ma)
    value = sum(p["value_krw"] for p in status["positions"])
    status["balance"] = {
        "cash_krw": cash,
        "positions_value_krw": value,
        "equity_krw": cash + value,
        "cash_as_of": "everything booked in the ledger",
        "positions_as_of": None if status["prices"] is None else status["prices"]["as_of"],
        "held_outside_positions": held_outside(balances, positions),
        "last_recorded_equity": None
        if equity.empty
        else {
            "partition": str(equity["partition_key"].iloc[-1]),
            "equity_krw": float(equity["equity_krw"].iloc[-1]),
            "cash_krw": float(equity["cash_krw"].iloc[-1]),
        },
    }
    return status


# The `--json` document's keys, in the order the text shows them.
SECTIONS = (
    "mode", "generated_at", "ledger", "balance", "prices", "positions", "exit_params", "instance", "signals",
    "daily_report",
)  # fmt: skip


def _open_ledger(url: str, mode: settings.Mode) -> tuple[Any, str | None, str | None]:
    """(the ledger, the mode it records, why there is none). Reads only: a missing SQLite file is
    not created, and a live ledger is opened as live, since a ledger opened without a mode is
    seeded with paper cash when it has none (TradingLedger._create_and_seed)."""
    import sqlalchemy as sa

    from makenaide_assets.resources.ledger import TradingLedger
    from makenaide_assets.resources.ledger import schema as t
    from makenaide_assets.settings import sql_url
    from makenaide_assets.sql import make_engine, shown_url

    parsed = sa.make_url(sql_url(url))
    local = parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:")
    if local and not Path(str(parsed.database)).is_file():
        return None, None, f"no ledger at {shown_url(url)} yet: {_no_trades(mode)}"
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names())
            if t.cash_events.name not in tables:
                return None, None, f"{shown_url(url)} holds no ledger yet: {_no_trades(mode)}"
            recorded = None
            if t.ledger_info.name in tables:
                query = sa.select(t.ledger_info.c.value).where(t.ledger_info.c.key == "mode")
                recorded = conn.execute(query).scalar()
    except sa.exc.SQLAlchemyError as exc:
        raise StatusError(f"cannot read the ledger at {shown_url(url)}: {_first_line(exc)}") from None
    finally:
        engine.dispose()
    return TradingLedger(url=url, mode="live" if recorded == "live" else None), recorded, None


def _from_instance() -> tuple[Any, dict[str, Any], dict[str, Any] | None, dict[str, Any] | None]:
    """(the `signals` config of the newest signals run, where the instance is, signals, report)."""
    import os

    import dagster as dg

    home = os.environ.get("DAGSTER_HOME")
    where: dict[str, Any] = {"dagster_home": home, "message": None}
    if not home:
        where["message"] = (
            "DAGSTER_HOME is not set: today's signals and the last report live in the Dagster instance "
            "(export DAGSTER_HOME=$PWD for the demo's)"
        )
        return None, where, None, None
    try:
        with dg.DagsterInstance.get() as instance:
            signals = _newest(instance, "signals")
            report = _newest(instance, "daily_report")
            config = _signals_config(instance, signals) if signals is not None else None
            return config, where, _signals(signals), _report(report)
    except Exception as exc:  # an unreadable instance must not hide the ledger part
        where["message"] = f"the Dagster instance in {home} could not be read: {_first_line(exc)}"
        return None, where, None, None


def _newest(instance: Any, asset: str) -> Any:
    """The newest materialisation of the asset's newest partition ("today"), even when an older
    partition was re-materialised after it."""
    import dagster as dg

    key = dg.AssetKey(asset)
    partitions = instance.get_materialized_partitions(key)
    if not partitions:
        return None
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[max(partitions)]), limit=1
    ).records
    return records[0] if records else None


def _signals_config(instance: Any, record: Any) -> Any:
    """SignalsConfig as the run that made these signals had it (the defaults when it set none)."""
    from makenaide_assets.analysis.signals import SignalsConfig

    run = instance.get_run_by_id(record.event_log_entry.run_id)
    ops = (run.run_config or {}).get("ops", {}) if run is not None else {}
    return SignalsConfig(**(ops.get("signals", {}).get("config") or {}))


def _meta(record: Any) -> dict[str, Any]:
    metadata = record.asset_materialization.metadata
    return {key: getattr(value, "value", value) for key, value in metadata.items()}


def _signals(record: Any) -> dict[str, Any] | None:
    if record is None:
        return None
    from makenaide_assets.resources.io_manager import storage_path

    meta = _meta(record)
    partition = record.asset_materialization.partition
    path = meta.get("path") or str(storage_path(settings.storage_root()) / "signals" / f"{partition}.parquet")
    rows, message = [], None
    try:
        with storage_path(str(path)).open("rb") as handle:
            frame = pd.read_parquet(handle)
        rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    except (OSError, ValueError) as exc:
        message = f"the rows could not be read from {path}: {_first_line(exc)}"
    return {
        "partition": partition,
        "signal_count": meta.get("signal_count"),
        "materialized_at": _iso(datetime.fromtimestamp(record.timestamp, UTC)),
        "run_id": record.event_log_entry.run_id,
        "regime": meta.get("regime"),
        "allow_new_buys": meta.get("allow_new_buys"),
        "buys_halted": meta.get("buys_halted"),
        "path": str(path),
        "rows": rows,
        "message": message,
        "traded": None,  # orders the trading run planned for the partition (None: not traded)
    }


def _report(record: Any) -> dict[str, Any] | None:
    if record is None:
        return None
    meta = _meta(record)
    keys = ("can_i_trust_today", "equity_krw", "pnl_total_krw", "drawdown_pct", "max_drawdown_pct", "trades")
    return {
        "partition": record.asset_materialization.partition,
        "materialized_at": _iso(datetime.fromtimestamp(record.timestamp, UTC)),
        **{key: meta.get(key) for key in keys},
    }


def _exit_params(config: Any, source: str | None) -> dict[str, Any]:
    exits = config.plan_params().exits
    return {
        "stop_loss_pct": exits.stop_loss_pct,
        "atr_multiple": exits.atr_multiple,
        "trail_pct": exits.trail_pct,
        "take_profit_pct": exits.take_profit_pct,
        "trend_ma": config.trend_ma,
        "source": source,
    }


def _prices(
    mode: settings.Mode, positions: pd.DataFrame, equity: pd.DataFrame
) -> tuple[dict[str, Any] | None, dict[str, tuple[float, str]], pd.DataFrame, pd.DataFrame]:
    """Which day's closes value the positions, the closes, that day's indicators, and the
    positions with their highest close since entry (as `signals` raises it)."""
    if positions.empty:
        return None, {}, pd.DataFrame(), positions
    from makenaide_assets.analysis.signals import with_highest_close_since_entry
    from makenaide_assets.resources.io_manager import storage_path
    from makenaide_assets.resources.modes import resources_for
    from makenaide_assets.strategy.calendar import partition_close, utc_now_naive

    market_data = resources_for(mode, has_openai_key=False)["market_data"]
    prices: dict[str, Any] = {"source": market_data.describe()}
    try:
        if mode == "demo" and not equity.empty:
            day = str(equity["partition_key"].iloc[-1])
            prices["why"] = "the newest partition with a portfolio (its equity is in the ledger)"
        else:
            now = utc_now_naive()
            dates = [market_data.candles(m, "day", now, 1)["candle_date_time_utc"] for m in positions["market"]]
            known = [d.iloc[-1] for d in dates if not d.empty]
            if not known:
                raise StatusError("no daily candle of any held market")
            day = max(known).strftime("%Y-%m-%d")
            prices["why"] = "the latest recorded close" if mode == "demo" else "the latest closed daily candle"
        as_of = partition_close(day)
        closes = {}
        for market in positions["market"]:
            candle = market_data.candles(market, "day", as_of, 1)
            if not candle.empty:
                closes[market] = (float(candle["trade_price"].iloc[-1]), candle["candle_date_time_utc"].iloc[-1])
        positions = with_highest_close_since_entry(positions, market_data, day)
    except Exception as exc:  # no prices: the positions still show, at cost, with their fixed stops
        prices.update(partition=None, as_of=None, message=f"no prices: {_first_line(exc)}")
        return prices, {}, pd.DataFrame(), positions
    prices.update(partition=day, as_of=_iso(as_of.to_pydatetime().replace(tzinfo=UTC)), message=None)
    path = storage_path(settings.storage_root()) / "daily_indicators" / f"{day}.parquet"
    indicators = pd.DataFrame()
    try:
        with path.open("rb") as handle:
            indicators = pd.read_parquet(handle).drop_duplicates("market", keep="last").set_index("market")
        prices["indicators"] = str(path)
    except (OSError, ValueError):
        prices["indicators"] = None
        prices["message"] = f"no daily_indicators for {day} ({path}): ATR unknown, trailing stops at the % fallback"
    return prices, {m: (c, d.strftime("%Y-%m-%d")) for m, (c, d) in closes.items()}, indicators, positions


# ---- rendering ------------------------------------------------------------------------------------


def render(status: dict[str, Any]) -> str:
    lines = [f"Makenaide status ({status['mode']} mode), {_when(status['generated_at'])}"]
    ledger = status["ledger"]
    lines.append(f"Ledger: {ledger['url']}" + (f" ({ledger['mode']} ledger)" if ledger["mode"] else ""))
    if not ledger["exists"]:
        lines.append(f"  {ledger['message']}")
    else:
        lines += _render_ledger(status)
    lines.append("")
    lines += _render_instance(status)
    return "\n".join(lines)


def _render_ledger(status: dict[str, Any]) -> list[str]:
    balance, prices, positions = status["balance"], status["prices"], status["positions"]
    lines = []
    if prices is not None:
        if prices["partition"] is not None:
            lines.append(
                f"Prices: daily closes of {prices['partition']} (closed {_when(prices['as_of'])}), {prices['why']};"
                f" {prices['source']}"
            )
        if prices["message"]:
            lines.append(f"  {prices['message']}")
    at = f"at the {prices['partition']} closes" if prices and prices["partition"] else "at cost"
    lines += [
        "",
        "Balance",
        f"  cash       {_krw(balance['cash_krw']):>14} KRW   everything booked in the ledger",
        f"  positions  {_krw(balance['positions_value_krw']):>14} KRW   {len(positions)} open, {at}",
        f"  equity     {_krw(balance['equity_krw']):>14} KRW",
    ]
    recorded = balance["last_recorded_equity"]
    if recorded is not None:
        lines.append(
            f"  (equity recorded by the portfolio of {recorded['partition']}: {_krw(recorded['equity_krw'])} KRW)"
        )
    for coin, volume in balance["held_outside_positions"].items():
        lines.append(f"  also held outside Makenaide's positions: {_volume(volume)} {coin}")
    if status["ledger"]["message"]:
        lines += ["", status["ledger"]["message"]]
        return lines
    if not positions:
        return [*lines, "", "Open positions: none"]
    lines += ["", f"Open positions ({len(positions)})"]
    lines += _table(
        ["market", "volume", "avg price", "close", "value KRW", "unrealised KRW", "%", "opened"],
        [
            [
                p["market"],
                _volume(p["volume"]),
                _price(p["avg_price"]),
                f"{_price(p['close'])} ({p['close_date']})" if p["close"] is not None else "unknown",
                _krw(p["value_krw"]),
                _krw(p["unrealized_pnl_krw"], sign=True),
                _pct(p["unrealized_pnl_pct"]),
                p["opened_partition"],
            ]
            for p in positions
        ],
    )
    ex = status["exit_params"]
    lines += [
        "",
        f"Stops ({ex['source']}): stop-loss {ex['stop_loss_pct']:.0%} below avg, trailing {ex['atr_multiple']:g}×ATR14"
        f" ({ex['trail_pct']:.0%} without ATR) below the highest close since entry, take-profit"
        f" {ex['take_profit_pct']:.0%} above avg; % from the close",
    ]
    lines += _table(
        ["market", "stop-loss", "trailing stop", "take-profit", "highest close", "ATR14", ex["trend_ma"].upper()],
        [
            [
                p["market"],
                _level(p["stop_loss_price"], p["close"]),
                f"{_level(p['trailing_stop_price'], p['close'])} {p['trailing_basis']}",
                _level(p["take_profit_price"], p["close"]),
                _price(p["highest_close"]),
                _price(p["atr14"]),
                _price(p["trend_ma"]),
            ]
            for p in positions
        ],
    )
    due = [f"  {p['market']}: {'; '.join(p['exits_triggered'])}" for p in positions if p["exits_triggered"]]
    when = f"the {prices['partition']} close" if prices and prices["partition"] else "the last close"
    lines += [f"Exits triggered at {when}:", *due] if due else [f"Exits triggered at {when}: none"]
    return lines


def _render_instance(status: dict[str, Any]) -> list[str]:
    where = status["instance"]
    if where["message"]:
        return [where["message"]]
    lines = []
    signals = status["signals"]
    if signals is None:
        lines.append("Today's signals: no signals materialised in this instance yet")
    else:
        count = signals["signal_count"]
        head = f"Today's signals: {signals['partition']}, {count} signal(s)"
        if signals["regime"]:
            head += f", regime {signals['regime']}"
        lines.append(f"{head} (materialised {_when(signals['materialized_at'])})")
        if signals["buys_halted"] not in (None, "no"):
            lines.append(f"  buys halted: {signals['buys_halted']}")
        for row in signals["rows"]:
            amount = (
                f"{_krw(row['krw_amount'])} KRW"
                if row.get("krw_amount") is not None
                else f"{_volume(row.get('volume'))} coins"
            )
            line = f"  {row['side']:<4} {row['market']:<10} {amount} at {_price(row.get('price'))}"
            if row.get("stop_price") is not None:
                line += f", stop {_price(row['stop_price'])}, take-profit {_price(row.get('take_profit_price'))}"
            lines += [line, f"       {row.get('reason') or ''}"]
        if not signals["rows"] and not signals["message"]:
            lines.append("  no orders")
        if signals["message"]:
            lines.append(f"  {signals['message']}")
        if count:
            traded = signals.get("traded")
            lines.append("  not traded (yet)" if traded is None else f"  traded: {traded} order(s) planned")
    report = status["daily_report"]
    if report is None:
        lines.append("Last daily report: none in this instance yet")
    else:
        lines += [
            f"Last daily report: {report['partition']} (materialised {_when(report['materialized_at'])})",
            f"  can I trust today? {report['can_i_trust_today']}",
            f"  equity {_krw(report['equity_krw'])} KRW, P&L since the start"
            f" {_krw(report['pnl_total_krw'], sign=True)} KRW, drawdown {_pct(report['drawdown_pct'], sign=False)}%"
            f" (max {_pct(report['max_drawdown_pct'], sign=False)}%), {report['trades']} trade(s) that day",
        ]
    return lines


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    """Left-aligned text columns, right-aligned numbers."""
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=True)]
    numeric = [all(_looks_numeric(r[i]) for r in rows) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        return (
            "  "
            + "  ".join(
                str(c).rjust(w) if num else str(c).ljust(w) for c, w, num in zip(cells, widths, numeric, strict=True)
            ).rstrip()
        )

    return [line(headers), *(line(r) for r in rows)]


def _looks_numeric(cell: str) -> bool:
    return cell[:1].isdigit() or cell[:1] in "+-" or cell == "unknown"


# ---- numbers for a human ---------------------------------------------------------------------------


def _krw(value: float | None, sign: bool = False) -> str:
    """KRW amounts: thousands separators, no decimals."""
    if value is None or math.isnan(value):
        return "unknown"
    rounded = round(value) + 0  # + 0: no "-0"
    return f"{rounded:+,}" if sign else f"{rounded:,}"


def _price(value: float | None) -> str:
    """A coin's KRW price as Upbit quotes it: whole won from 100 KRW up, finer below (its tick table)."""
    if value is None or math.isnan(value):
        return "unknown"
    decimals = 0 if abs(value) >= 100 or value == 0 else min(8, 2 - math.floor(math.log10(abs(value))))
    return f"{value:,.{decimals}f}"


def _level(price: float, close: float | None) -> str:
    """A stop level with its distance from the close."""
    if close is None or not close:
        return _price(price)
    return f"{_price(price)} ({_pct((price / close - 1) * 100)}%)"


def _pct(value: float | None, sign: bool = True) -> str:
    """Percents with 2 decimals (signed when a change)."""
    if value is None or math.isnan(value):
        return "unknown"
    return f"{value:+.2f}" if sign else f"{value:.2f}"


def _volume(value: float | None) -> str:
    """Coin volumes: at most Upbit's 8 decimals, trailing zeros dropped."""
    if value is None or math.isnan(value):
        return "unknown"
    return f"{value:,.8f}".rstrip("0").rstrip(".")


# ---- plumbing ---------------------------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _when(iso: str | None) -> str:
    """An ISO instant for a person: to the minute, in UTC."""
    return "unknown" if iso is None else f"{iso[:10]} {iso[11:16]} UTC"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _plain(value: Any) -> Any:
    """JSON-ready: numpy scalars as Python ones, NaN and infinities as null, timestamps as ISO text."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


if __name__ == "__main__":
    sys.exit(run())
