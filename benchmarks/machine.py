"""What every benchmark prints about the machine it ran on, and small shared helpers."""

import os
import platform
import resource
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH_VAR = REPO / "var" / "bench"  # gitignored (/var/), so generated data never reaches a commit


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def describe() -> str:
    """One line: cores, CPU, Python, load average now (other engineers share this machine)."""
    return (
        f"machine: {os.cpu_count()} cores, {cpu_model()}, Python {platform.python_version()}, "
        f"load average (1/5/15 min) {load()}"
    )


def busy(threshold_per_core: float = 0.75) -> bool:
    """True when the 1-minute load says other work competes for the cores (re-run then)."""
    return os.getloadavg()[0] > threshold_per_core * (os.cpu_count() or 1)


class Stopwatch:
    """Wall seconds, and the CPU seconds (user + system) of the child processes that ended inside:
    on this shared machine the wall time of a run moves with other work, its CPU time much less."""

    def __enter__(self) -> "Stopwatch":
        self.started = time.perf_counter()
        self._children = _children_cpu()
        self.seconds = self.child_cpu = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.started
        self.child_cpu = _children_cpu() - self._children


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
