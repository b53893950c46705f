"""Helpers shared by the benchmark scripts: timing and machine description."""

from __future__ import annotations

import os
import platform
import statistics
import threading
import time
from collections.abc import Callable

#: Libraries whose versions are recorded with every result.
LIBRARIES = ("numpy", "librosa", "onnxruntime", "dask", "distributed", "zarr", "xarray",
             "scikit-learn", "soundfile", "soxr")


def library_versions(names=LIBRARIES) -> dict:
    """Installed version of each of ``names`` (``None`` when not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def memory_gib() -> float | None:
    """Total memory of this machine in GiB (from /proc/meminfo), or None."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def machine() -> dict:
    """CPU model, core count, SIMD flags, memory and library versions of this machine."""
    info = {"platform": platform.platform(), "python": platform.python_version(),
            "cpu_count": os.cpu_count(), "memory_gib": memory_gib(),
            "libraries": library_versions()}
    try:
        with open("/proc/cpuinfo") as fh:
            text = fh.read()
        for line in text.splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        for line in text.splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                info["simd"] = sorted(f for f in flags if f.startswith(("avx", "fma", "sse4")))
                break
    except OSError:
        pass
    return info


def repeat(fn: Callable[[], object], n: int = 5, warmup: int = 1) -> tuple[float, float]:
    """Run ``fn`` ``warmup + n`` times; median and (max - min) seconds of the timed runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return median_spread(times)


def median_spread(values) -> tuple[float, float]:
    """(median, largest minus smallest) of ``values``: a row's value and spread."""
    values = list(values)
    return float(statistics.median(values)), float(max(values) - min(values))


def row(metric: str, value: float, spread: float = 0.0, unit: str = "", note: str = "") -> dict:
    """One result row in the shape every benchmark returns."""
    return {"metric": metric, "value": float(value), "spread": float(spread), "unit": unit,
            "note": note}


def main(run: Callable[..., dict], argv: list[str] | None = None) -> None:
    """Command-line entry of a benchmark module: run it (``--quick`` for the smoke sizes), print."""
    import sys

    result = run(quick="--quick" in (sys.argv[1:] if argv is None else argv))
    for r in result["rows"]:
        print(f"{r['metric']:<52} {r['value']:>12.4g} ± {r['spread']:<9.3g} {r['unit']:<12} "
              f"{r['note']}")
    print(result["summary"])


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


class RssPeak:
    """Peak RSS of this process while the ``with`` block runs, sampled by a thread."""

    def __init__(self, every_s: float = 0.02):
        self.every_s, self.peak, self.base = every_s, 0, 0
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.wait(self.every_s):
            self.peak = max(self.peak, _rss())

    def __enter__(self):
        self.base = self.peak = _rss()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())
