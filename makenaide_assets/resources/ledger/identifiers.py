"""Deterministic Upbit order identifiers: the same signal of the same partition always maps to one."""

import hashlib
from collections.abc import Mapping
from typing import Any

import pandas as pd

# Upbit documents no maximum for `identifier`; 64 keeps us far inside any sane limit and inside
# the column width.
MAX_IDENTIFIER_LENGTH = 64


def order_identifier(partition_key: str, market: str, side: str, signal_fingerprint: str) -> str:
    digest = hashlib.sha256(signal_fingerprint.encode("utf-8")).hexdigest()[:12]
    identifier = f"mkn-{partition_key}-{market}-{side}-{digest}"
    if len(identifier) > MAX_IDENTIFIER_LENGTH:
        raise ValueError(f"identifier {identifier!r} is longer than {MAX_IDENTIFIER_LENGTH} characters")
    return identifier


def market_of(identifier: str, partition_key: str) -> str:
    """The market an identifier of `partition_key` was minted for (the inverse of `order_identifier`)."""
    return identifier.removeprefix(f"mkn-{partition_key}-").rsplit("-", 2)[0]


def signal_fingerprint(signal: Mapping[str, Any]) -> str:
    """What identifies a signal across re-materialisations.

    Amounts and prices are left out on purpose: they depend on cash and positions, which change
    once the first fill is booked, so a re-run of `signals` after `fills` would otherwise mint a
    new identifier and order again. One order per (partition, market, side) unless `signals`
    supplies a `signal_id` to tell several apart.
    """
    parts = [str(signal["market"]), str(signal["side"])]
    signal_id = signal.get("signal_id")
    if signal_id is not None and not pd.isna(signal_id):
        parts.append(str(signal_id))
    return "|".join(parts)


def identifier_for_signal(partition_key: str, signal: Mapping[str, Any]) -> str:
    return order_identifier(partition_key, str(signal["market"]), str(signal["side"]), signal_fingerprint(signal))


def identifiers_for_signals(partition_key: str, signals: pd.DataFrame) -> list[str]:
    """Every identifier a partition's signals map to, sorted: what its trading run plans."""
    return sorted(identifier_for_signal(partition_key, row) for row in signals.to_dict("records"))
