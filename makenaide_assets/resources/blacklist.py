"""The operator's blacklist, a resource so `tickers` and its check read the same file."""

from pathlib import Path

import dagster as dg
import yaml

from makenaide_assets.settings import PACKAGE_DIR

DEFAULT_BLACKLIST = PACKAGE_DIR / "config" / "blacklist.yaml"


class Blacklist(dg.ConfigurableResource):
    """Markets never traded whatever the rules say; a YAML file of `market: reason`."""

    path: str = str(DEFAULT_BLACKLIST)

    def entries(self) -> dict[str, str]:
        """market → reason; a malformed file is an error, not an empty blacklist."""
        data = yaml.safe_load(Path(self.path).read_text(encoding="utf-8")) or {}
        entries = data.get("blacklist") or {}
        if not isinstance(entries, dict) or not all(isinstance(k, str) for k in entries):
            raise ValueError(f"{self.path}: 'blacklist' must map KRW-... markets to reasons")
        return {market: str(reason or "blacklisted") for market, reason in entries.items()}
