"""Parquet files at <storage>/<asset_key>/<partition_key>.parquet, on disk or in S3."""

import os
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import pandas as pd

if TYPE_CHECKING:
    from upath import UPath

# Object stores have no folders: creating one is meaningless, and s3fs would even create a missing
# bucket, hiding a typo in MAKENAIDE_STORAGE. A missing bucket fails the write instead.
_OBJECT_STORES = {"s3", "s3a"}


def _protocol(base: str) -> str:
    return base.split("://", 1)[0].lower() if "://" in base else ""


def storage_path(base: str) -> "Path | UPath":
    """A folder as a `Path`, or `s3://bucket/prefix` (any fsspec URL) as a UPath, resolved at run time.

    A plain folder does not import universal_pathlib: its pathlib_abc compiles glob patterns at
    import (~0.2 s, a twentieth of a daily run; docs/performance.md). For S3, credentials and region
    come from the usual AWS chain (environment, profile, instance role); `AWS_ENDPOINT_URL_S3` or
    `AWS_ENDPOINT_URL` points it at an S3-compatible server (MinIO, moto in the tests).
    """
    protocol = _protocol(base)
    if not protocol:
        return Path(base)
    from upath import UPath

    if protocol in _OBJECT_STORES:
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            return UPath(base, client_kwargs={"endpoint_url": endpoint})
    return UPath(base)


def is_object_store(path: "Path | UPath") -> bool:
    return not isinstance(path, Path) and path.protocol in _OBJECT_STORES


class ParquetIOManager(dg.ConfigurableIOManager):
    """Asset values as Parquet so a person can open any partition with pandas (a folder or S3).

    Written out rather than built on `UPathIOManager`, which logs three debug lines per value
    read or written: each is an event the instance stores, a fifth of a daily run's events.
    """

    base_path: str

    def path_for(self, asset_key: dg.AssetKey, partition_key: str | None) -> "Path | UPath":
        folder = storage_path(self.base_path).joinpath(*asset_key.path)
        return folder / f"{partition_key}.parquet" if partition_key is not None else folder.with_suffix(".parquet")

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        if not isinstance(obj, pd.DataFrame):
            raise TypeError(f"{context.asset_key.to_user_string()} returned {type(obj).__name__}, not a DataFrame")
        path = self.path_for(context.asset_key, _one_partition(context))
        if not is_object_store(path):
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with path.open("wb") as handle:
                obj.to_parquet(handle, index=False)
        except FileNotFoundError as exc:
            # A missing bucket stays missing: no retry of the step can create it (nor should one).
            raise dg.Failure(description=f"cannot write {path}: {exc}", allow_retries=False) from exc
        context.add_output_metadata({"path": dg.MetadataValue.path(str(path))})

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        return self.load_partition(context.asset_key, _one_partition(context))

    def load_partition(self, asset_key: dg.AssetKey, partition_key: str | None) -> pd.DataFrame:
        """The stored value of one partition, as `load_input` reads it (grouped steps call it directly)."""
        path = self.path_for(asset_key, partition_key)
        if not path.exists():
            raise FileNotFoundError(
                f"{asset_key.to_user_string()} has no value at {path}: materialise it for this partition first"
            )
        with path.open("rb") as handle:
            return pd.read_parquet(handle)


def _one_partition(context: dg.OutputContext | dg.InputContext) -> str | None:
    """Every asset of the graph reads its upstreams' value for its own day: one partition each."""
    if not context.has_asset_partitions:
        return None
    keys = context.asset_partition_keys
    if len(keys) != 1:
        raise ValueError(f"{context.asset_key.to_user_string()}: one partition per value, not {len(keys)}")
    return keys[0]
