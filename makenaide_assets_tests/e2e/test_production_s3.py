"""MAKENAIDE_STORAGE=s3://bucket/prefix on the S3-compatible test server (moto in server mode).

The market half of the graph is materialised into a bucket through the same resources the
definitions use, then read back with pandas over s3fs, and compared with the same partition
written to a local folder (the embedded default).
"""

from pathlib import Path

import botocore.exceptions
import dagster as dg
import pandas as pd
import pytest

from makenaide_assets.market import step
from makenaide_assets.resources.io_manager import storage_path
from makenaide_assets.resources.modes import resources_for

pytest_plugins = ["makenaide_assets_tests.e2e.servers"]
pytestmark = pytest.mark.e2e

PARTITION = "2023-12-06"
MARKET_ASSETS = ["tickers", "universe", "daily_candles", "daily_indicators"]


def _materialize_market(partition: str) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [*dg.load_assets_from_modules([step]), *dg.load_asset_checks_from_modules([step])],
        resources=resources_for("demo", has_openai_key=False),  # reads MAKENAIDE_STORAGE now
        partition_key=partition,
        raise_on_error=False,
    )


def test_assets_are_written_to_s3_and_read_back_with_pandas(
    s3_env, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bucket = s3_env.create_bucket()
    monkeypatch.setenv("MAKENAIDE_STORAGE", f"s3://{bucket}/prod/makenaide")
    result = _materialize_market(PARTITION)
    assert result.success, [e.message for e in result.all_events if e.is_failure]

    # <storage>/<asset_key>/<partition_key>.parquet, nothing else.
    assert s3_env.keys(bucket) == sorted(f"prod/makenaide/{a}/{PARTITION}.parquet" for a in MARKET_ASSETS)
    options = {"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": s3_env.endpoint}}
    from_s3 = {
        a: pd.read_parquet(f"s3://{bucket}/prod/makenaide/{a}/{PARTITION}.parquet", storage_options=options)
        for a in MARKET_ASSETS
    }
    frame = from_s3["daily_indicators"]
    assert not frame.empty
    assert {"market", "date", "close", "ma20", "ma200", "rsi14", "atr14", "rs_vs_btc"} <= set(frame.columns)
    assert set(frame["market"]) <= set(from_s3["universe"]["market"])

    # The same partition on local disk holds the same values: S3 changes where, not what.
    monkeypatch.setenv("MAKENAIDE_STORAGE", str(tmp_path / "storage"))
    assert _materialize_market(PARTITION).success
    for asset, value in from_s3.items():
        pd.testing.assert_frame_equal(value, pd.read_parquet(tmp_path / "storage" / asset / f"{PARTITION}.parquet"))


def test_a_missing_bucket_fails_the_write_instead_of_creating_one(s3_env, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = f"mkn-missing-{PARTITION}"
    monkeypatch.setenv("MAKENAIDE_STORAGE", f"s3://{missing}/makenaide")
    # Not retried by the step's RetryPolicy: it fails at once, saying why.
    with pytest.raises(dg.Failure, match="bucket does not exist"):
        dg.materialize(
            [step.market],
            selection=["tickers"],
            resources=resources_for("demo", has_openai_key=False),
            partition_key=PARTITION,
        )
    with pytest.raises(botocore.exceptions.ClientError):
        s3_env.client().head_bucket(Bucket=missing)


def test_storage_path_points_s3_at_the_configured_endpoint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:2")
    path = storage_path("s3://bucket/prefix")
    assert path.storage_options["client_kwargs"] == {"endpoint_url": "http://127.0.0.1:2"}
    assert (path / "tickers").storage_options == path.storage_options
    assert storage_path(str(tmp_path)) == tmp_path  # a plain folder: pathlib, no fsspec
