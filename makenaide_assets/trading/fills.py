"""`fills`: the day's signals executed through the broker; the value is the ledger's record of the day."""

import dagster as dg
import pandas as pd

from makenaide_assets.market.metadata import COLUMN_SCHEMA, OWNERS, catalog, krw, table, table_schema
from makenaide_assets.partitions import daily
from makenaide_assets.resources.broker import Broker
from makenaide_assets.resources.ledger import CutOff, PlanConflict, TradingLedger, identifiers_for_signals
from makenaide_assets.resources.ledger import schema as t
from makenaide_assets.resources.notifier import Notifier
from makenaide_assets.strategy.ticks import FEE_RATE
from makenaide_assets.trading.alerts import order_messages
from makenaide_assets.trading.signal_checks import latest_signal_checks

FILL_COLUMNS = ["identifier", "market", "side", "price", "volume", "fee", "krw_value", "status"]
SCHEMA = table_schema(
    ("identifier", "string", "Deterministic order identifier: partition, market, side, signal hash"),
    ("market", "string", "Upbit market code, KRW-<coin>"),
    ("side", "string", "buy, add or sell"),
    ("price", "float", "Average execution price, KRW (empty when not executed)"),
    ("volume", "float", "Units of the coin executed"),
    ("fee", "float", "Fee paid, KRW"),
    ("krw_value", "float", "price x volume, KRW, fee not included"),
    ("status", "string", "done, rejected, failed, skipped, pending or submitted"),
    ("reason", "string", "The signal's reason: the exit rule, or the entry's score, verdict and 4h timing"),
    ("status_reason", "string", "Why an order did not execute: the limit, the halt or the exchange's error"),
)
# A fee is booked from a float product (paper) or Upbit's rounded `paid_fee` (live): allow 1 KRW.
FEE_TOLERANCE_KRW = 1.0


def _has_contract_columns(_: dg.TypeCheckContext, value: object) -> dg.TypeCheck:
    missing = sorted(set(FILL_COLUMNS) - set(value.columns)) if isinstance(value, pd.DataFrame) else FILL_COLUMNS
    return dg.TypeCheck(success=not missing, description=f"missing contract columns: {missing}" if missing else None)


# Declared rather than inferred: with check_specs, a `-> MaterializeResult` annotation alone makes
# Dagster type the value as Nothing, and the DataFrame would fail its type check.
FillsFrame = dg.DagsterType(name="FillsFrame", type_check_fn=_has_contract_columns, description="fills contract")

CHECKS = [
    dg.AssetCheckSpec(
        "fills_match_the_plan",
        asset="fills",
        partitions_def=daily,
        blocking=True,
        description="The signals are the ones this partition was first traded with; a changed past orders nothing",
    ),
    dg.AssetCheckSpec(
        "fills_match_signals", asset="fills", partitions_def=daily, description="Each order maps to a signal"
    ),
    dg.AssetCheckSpec(
        "fills_unique_identifiers", asset="fills", partitions_def=daily, description="No identifier appears twice"
    ),
    dg.AssetCheckSpec(
        "fills_fee_rate", asset="fills", partitions_def=daily, description="Fee = 0.05% of each fill's KRW value"
    ),
    dg.AssetCheckSpec(
        "fills_cash_never_negative",
        asset="fills",
        partitions_def=daily,
        description="The ledger's cash never went below 0",
    ),
    dg.AssetCheckSpec(
        "fills_none_rejected", asset="fills", partitions_def=daily, description="No order was rejected or failed"
    ),
    dg.AssetCheckSpec(
        "fills_nothing_unresolved",
        asset="fills",
        partitions_def=daily,
        description="No order of any partition is left with an unknown outcome at the exchange",
    ),
]


@dg.asset(
    partitions_def=daily,
    group_name="trading",
    kinds={"pandas", "sql"},
    check_specs=CHECKS,
    dagster_type=FillsFrame,
    metadata={COLUMN_SCHEMA: SCHEMA},
    owners=OWNERS,
    code_version="1",
)
def fills(
    context: dg.AssetExecutionContext, broker: Broker, notifier: Notifier, signals: pd.DataFrame
) -> dg.MaterializeResult:
    """Orders of day D as the ledger holds them: executed once, re-runs add nothing."""
    key = context.partition_key
    refuse_unchecked_signals(context.instance, key)
    # The checks read the broker's own ledger, the object the fills were just booked through: Dagster
    # gives a nested resource its own copy, apart from the top-level `ledger` (same database).
    ledger = broker.ledger
    before = ledger.fills_for_partition(key).set_index("identifier")["status"].to_dict()
    try:
        # The plan is recorded under the ledger's writer lock, before the first order.
        conflict = None
        frame = broker.execute(signals, key, context.log, plan=True)
    except PlanConflict as exc:
        # A past partition whose signals changed (e.g. new parameters): its history stays as it was
        # traded, nothing is ordered today, and the blocking check below says what differs.
        conflict = exc
        context.log.error(str(exc))
        frame = ledger.fills_for_partition(key)
    for notice in broker.notices:
        notifier.send(f"Makenaide {key}: {notice}")
    # What this run changed (a re-run that orders nothing says nothing again).
    changed = frame[[before.get(i) != status for i, status in zip(frame["identifier"], frame["status"], strict=True)]]
    for message in order_messages(key, changed):
        notifier.send(message.text, routine=message.routine)
    done = frame[frame["status"] == t.DONE]
    not_done = frame[frame["status"] != t.DONE]
    metadata = {
        **catalog(frame, SCHEMA),
        "broker": broker.describe(),
        "orders": dg.MetadataValue.int(len(frame)),
        **{
            f"{status}_count": dg.MetadataValue.int(int((frame["status"] == status).sum()))
            for status in t.ORDER_STATUSES
        },
        "krw_bought": krw(done.loc[done["side"] != "sell", "krw_value"].sum()),
        "krw_sold": krw(done.loc[done["side"] == "sell", "krw_value"].sum()),
        "fees_krw": krw(done["fee"].sum()),
        "cash_krw": krw(ledger.cash_krw(CutOff(key, own_orders=True))),
        "preview": table(frame[[*FILL_COLUMNS, "reason"]]),
        "not_executed": table(not_done[["identifier", "market", "side", "status", "status_reason"]]),
    }
    return dg.MaterializeResult(
        value=frame,
        metadata=metadata,
        check_results=[plan_check(key, conflict), *fill_checks(frame, signals, key, ledger, broker)],
    )


def refuse_unchecked_signals(instance: dg.DagsterInstance, partition_key: str) -> None:
    """Trade only signals whose blocking checks passed, however this run was started (the sensor
    looks too, but a hand-started materialisation or `dagster job execute` does not ask it)."""
    found = latest_signal_checks(instance, partition_key)
    if found is None:
        return  # signals given to this run some other way (materialised in it, or a test's stand-in)
    run_id, failed = found
    if failed:
        raise dg.Failure(
            description=f"signals of {partition_key} failed blocking checks ({', '.join(failed)}) in run "
            f"{run_id[:8]}; nothing is ordered. Fix the cause and re-materialise signals.",
            metadata={"failed_checks": ", ".join(failed), "signals_run": run_id},
        )


def plan_check(partition_key: str, conflict: PlanConflict | None) -> dg.AssetCheckResult:
    if conflict is None:
        return dg.AssetCheckResult(
            check_name="fills_match_the_plan", passed=True, metadata={"partition": partition_key}
        )
    return dg.AssetCheckResult(
        check_name="fills_match_the_plan",
        passed=False,
        severity=dg.AssetCheckSeverity.ERROR,
        description=str(conflict),
        metadata={
            "partition": partition_key,
            "new_orders_not_placed": ", ".join(conflict.new) or "none",
            "planned_orders_no_longer_signalled": ", ".join(conflict.missing) or "none",
        },
    )


def fill_checks(
    frame: pd.DataFrame, signals: pd.DataFrame, partition_key: str, ledger: TradingLedger, broker: Broker
) -> list[dg.AssetCheckResult]:
    expected = set(identifiers_for_signals(partition_key, signals))
    strangers = sorted(set(frame["identifier"]) - expected)
    # A signal the broker refused to book (a side the ledger cannot hold) has no order at all.
    unbooked = sorted(expected - set(frame["identifier"]))
    unresolved = pd.DataFrame(ledger.unresolved_orders(), columns=["identifier", "market", "side", "status"])
    duplicated = sorted(set(frame.loc[frame["identifier"].duplicated(), "identifier"]))
    done = frame[frame["status"] == t.DONE]
    fee_rate = float(getattr(broker, "fee_rate", FEE_RATE))
    off_fee = done[(done["fee"] - done["krw_value"] * fee_rate).abs() > FEE_TOLERANCE_KRW]
    cut = CutOff(partition_key, own_orders=True)
    history = ledger.cash_history(cut)
    lowest = float(history["balance_krw"].min()) if not history.empty else 0.0
    refused = frame[frame["status"].isin([t.REJECTED, t.FAILED])]
    error, warn = dg.AssetCheckSeverity.ERROR, dg.AssetCheckSeverity.WARN
    return [
        dg.AssetCheckResult(
            check_name="fills_match_signals",
            passed=not strangers and not unbooked,
            severity=error,
            metadata={
                "signals": len(expected),
                "orders_without_signal": ", ".join(strangers) or "none",
                "signals_without_order": ", ".join(unbooked) or "none",
            },
        ),
        dg.AssetCheckResult(
            check_name="fills_unique_identifiers",
            passed=not duplicated,
            severity=error,
            metadata={"duplicated": ", ".join(duplicated) or "none"},
        ),
        dg.AssetCheckResult(
            check_name="fills_fee_rate",
            passed=off_fee.empty,
            # Upbit may run fee promotions, so a live mismatch is a question, not an alarm.
            severity=error if broker.name == "paper" else warn,
            metadata={"fee_rate": fee_rate, "off_rate": ", ".join(off_fee["identifier"]) or "none"},
        ),
        dg.AssetCheckResult(
            check_name="fills_cash_never_negative",
            passed=lowest >= -0.01,
            severity=error,
            metadata={"lowest_cash_krw": krw(lowest), "cash_krw": krw(ledger.cash_krw(cut))},
        ),
        dg.AssetCheckResult(
            check_name="fills_none_rejected",
            passed=refused.empty,
            severity=warn,
            metadata={"refused": table(refused[["identifier", "status", "status_reason"]])},
        ),
        dg.AssetCheckResult(
            check_name="fills_nothing_unresolved",
            passed=unresolved.empty,
            # Not blocking: the report must still run and say so. New orders of those markets are
            # held back by the broker until the next run resolves them.
            severity=error,
            description=None
            if unresolved.empty
            else f"{len(unresolved)} order(s) with an unknown outcome; no new order in "
            f"{', '.join(sorted(set(unresolved['market'])))} until resolved",
            metadata={"unresolved": table(unresolved)},
        ),
    ]
