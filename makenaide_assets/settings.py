"""Settings read from the environment at run time (never at import), in one place."""

import os
from pathlib import Path
from typing import Literal

Mode = Literal["demo", "paper", "live"]
MODES: tuple[Mode, ...] = ("demo", "paper", "live")

PACKAGE_DIR = Path(__file__).resolve().parent
SAMPLE_REPLAY_DIR = PACKAGE_DIR / "data" / "upbit_sample"


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def mode() -> Mode:
    value = os.environ.get("MAKENAIDE_MODE", "demo").strip().lower() or "demo"
    if value not in MODES:
        raise SettingsError(f"MAKENAIDE_MODE={value!r} is not one of {', '.join(MODES)}")
    return value  # type: ignore[return-value]


def var_dir() -> Path:
    """Where local state lives by default: ./var under the working directory (the repo root)."""
    return Path(os.environ.get("MAKENAIDE_VAR", "var")).resolve()


def storage_root() -> str:
    """Folder or s3://bucket/prefix for asset values."""
    return os.environ.get("MAKENAIDE_STORAGE") or str(var_dir() / "storage")


# A ledger belongs to one mode for life (DESIGN §8), so each mode has its own default file: paper
# fills must never become positions a live broker would sell. Demo keeps the name it always had.
DEFAULT_LEDGER_FILES: dict[Mode, str] = {
    "demo": "ledger.sqlite",
    "paper": "ledger-paper.sqlite",
    "live": "ledger-live.sqlite",
}


def ledger_url(for_mode: Mode | None = None) -> str:
    """MAKENAIDE_LEDGER_URL, else the mode's own SQLite file under MAKENAIDE_VAR."""
    explicit = os.environ.get("MAKENAIDE_LEDGER_URL")
    if explicit:
        return explicit
    return f"sqlite:///{var_dir() / DEFAULT_LEDGER_FILES[for_mode or mode()]}"


def sql_url(url: str) -> str:
    """`postgresql://…` as people write it, on the driver we install (psycopg2).

    SQLAlchemy 2.1 maps a bare `postgresql://` to psycopg 3, which is not installed, so the
    documented URL would otherwise fail with "No module named 'psycopg'".
    """
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url


def replay_dir() -> str:
    return os.environ.get("MAKENAIDE_REPLAY_DIR") or str(SAMPLE_REPLAY_DIR)


def upbit_api_url() -> str:
    """Upbit's API, or the local exchange a rehearsal runs against (makenaide_assets.testing)."""
    return os.environ.get("MAKENAIDE_UPBIT_API_URL") or "https://api.upbit.com"
