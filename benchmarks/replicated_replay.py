"""A replay directory with ~230 KRW markets, built by replicating the sample's 63 real markets.

Upbit lists about 230 KRW markets; the sample holds 63. Every replica is a byte copy of a real
market's recorded candles under a new code (KRW-BTC → KRW-BTCR1, KRW-BTCR2, ...), so no candle
is invented; the copies only multiply the work. Benchmarks say so in their output.

    .venv/bin/python benchmarks/replicated_replay.py [--markets 230]   # prints the directory
"""

import argparse
import json
import shutil
from pathlib import Path

from benchmarks.machine import BENCH_VAR
from makenaide_assets.settings import SAMPLE_REPLAY_DIR

DEFAULT_MARKETS = 230


def replica_code(market: str, copy: int) -> str:
    return f"{market}R{copy}"


def build(markets: int = DEFAULT_MARKETS, src: Path = SAMPLE_REPLAY_DIR, dst: Path | None = None) -> Path:
    """The replicated directory under var/bench (rebuilt only when missing or for another size)."""
    dst = dst or BENCH_VAR / f"replay-{markets}"
    stamp = dst / "REPLICATED.json"
    recipe = {"source": str(src), "markets": markets}
    if stamp.is_file() and json.loads(stamp.read_text()) == recipe:
        return dst
    if dst.exists():
        shutil.rmtree(dst)
    listed = json.loads((src / "markets.json").read_text(encoding="utf-8"))
    originals = [item for item in listed if item["market"].startswith("KRW-")]
    source_of = {item["market"]: item["market"] for item in listed}  # code → recorded market it copies
    out, copy = list(listed), 0
    while len(originals) * (copy + 1) < markets:
        copy += 1
        for item in originals[: markets - len(originals) * copy]:
            code = replica_code(item["market"], copy)
            source_of[code] = item["market"]
            out.append(
                {
                    **item,
                    "market": code,
                    "korean_name": f"{item['korean_name']} (복제 {copy})",
                    "english_name": f"{item['english_name']} (replica {copy})",
                }
            )
    for path in sorted((src / "candles").glob("*/*.csv*")):
        interval, market = path.parent.name, path.name.split(".")[0]
        suffix = path.name[len(market) :]
        for code in (c for c, original in source_of.items() if original == market):
            target = dst / "candles" / interval / f"{code}{suffix}"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    (dst / "markets.json").write_text(json.dumps(out, ensure_ascii=False, indent=1), encoding="utf-8")
    stamp.write_text(json.dumps(recipe))
    return dst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markets", type=int, default=DEFAULT_MARKETS)
    print(build(parser.parse_args().markets))


if __name__ == "__main__":
    main()
