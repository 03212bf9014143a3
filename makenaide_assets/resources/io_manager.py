"""Parquet files at <storage>/<asset_key>/<partition_key>.parquet, on disk or in S3."""

import os

import dagster as dg
import pandas as pd
from upath import UPath

# Object stores have no folders: creating one is meaningless, and s3fs would even create a missing
# bucket, hiding a typo in MAKENAIDE_STORAGE. A missing bucket fails the write instead.
_OBJECT_STORES = {"s3", "s3a"}


def storage_path(base: str) -> UPath:
    """A folder or `s3://bucket/prefix` as a UPath, resolved at run time.

    For S3, credentials and region come from the usual AWS chain (environment, profile, instance
    role); `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL` points it at an S3-compatible server
    (MinIO, moto in the tests).
    """
    path = UPath(base)
    if path.protocol in _OBJECT_STORES:
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            path = UPath(base, client_kwargs={"endpoint_url": endpoint})
    return path


class ParquetUPathIOManager(dg.UPathIOManager):
    extension = ".parquet"

    def make_directory(self, path: UPath) -> None:
        if path.protocol not in _OBJECT_STORES:
            path.mkdir(parents=True, exist_ok=True)

    def dump_to_path(self, context: dg.OutputContext, obj: pd.DataFrame, path: UPath) -> None:
        if not isinstance(obj, pd.DataFrame):
            raise TypeError(f"{context.asset_key.to_user_string()} returned {type(obj).__name__}, not a DataFrame")
        with path.open("wb") as handle:
            obj.to_parquet(handle, index=False)

    def load_from_path(self, context: dg.InputContext, path: UPath) -> pd.DataFrame:
        with path.open("rb") as handle:
            return pd.read_parquet(handle)


class ParquetIOManager(dg.ConfigurableIOManagerFactory):
    """Asset values as Parquet so a person can open any partition with pandas (a folder or S3)."""

    base_path: str

    def create_io_manager(self, context: dg.InitResourceContext) -> ParquetUPathIOManager:
        return ParquetUPathIOManager(base_path=storage_path(self.base_path))
