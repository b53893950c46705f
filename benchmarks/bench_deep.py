"""Deep features: Inception-v3 ONNX throughput against this CPU's FP32 ceiling.

What is measured
----------------
- images/s of :func:`emodist.models.session.embed` (uint8 images in, features
  out, the ``x / 128 - 1`` mapping included) for batch 1 / 8 / 32, 1 and 2
  ONNX Runtime threads, fp32 and int8 (``emodist model build --quantize
  int8``), wall clock (median of repeats; spread = max - min);
- the same per CPU-second of the process for 1 thread, which a shared,
  loaded machine distorts far less than wall clock;
- multiply-accumulates per image counted from the graph's Conv nodes
  (:func:`emodist.models.inception_graph.count_macs`), times 2 = FLOP per image;
- the ceiling: cores x clock x FP32 lanes x FMA units x 2, from
  ``/proc/cpuinfo`` (flags, vendor, family) and the clock measured with a
  dependent integer chain (the ``cpu MHz`` field of a VM is the nominal TSC
  rate, below the boost clock the cores run at); the assumptions are in
  the row notes;
- int8 vs fp32: speed ratio and cosine similarity of the feature vectors on
  real spectrogram images (Emotify when ``EMODIST_EMOTIFY_ROOT`` is set,
  generated music-like audio otherwise; calibration and evaluation images
  come from different tracks);
- the int8 graph's average pools moved behind their 1 x 1 convolutions
  (:func:`emodist.models.quantize.pools_after_convs`, the default) against
  the same int8 model quantized with the pools where they are: CPU time per
  image on 1 thread (batch 8, the two models alternated) and both cosines;
- milliseconds to make one spectrogram image from a segment's STFT.

``quick=True`` uses the tiny random model (no download) and few images.
"""

from __future__ import annotations

import os
import re
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import machine, repeat, row

GENRES = ("classical", "rock", "electronic", "pop")


def measured_clock_ghz(n: int = 100_000_000) -> float:
    """Core clock in GHz from a loop of two dependent 1-cycle integer ops per iteration.

    ``x = (x + i) ^ (x >> 3)``: the add and the xor are on the critical path
    (the shift runs beside the add), so one iteration takes two cycles on
    any x86 core of the last decade.  Timed with process CPU time.
    """
    import numba

    @numba.njit(cache=False)
    def chain(count, x):
        for i in range(count):
            x = (x + i) ^ (x >> 3)
        return x

    chain(1000, 1)
    best = 0.0
    for _ in range(3):
        t0 = time.process_time()
        chain(n, 12345)
        best = max(best, 2 * n / (time.process_time() - t0) / 1e9)
    return best


def cpu_peak(cpuinfo: str, clock_ghz: float) -> tuple[float, str]:
    """Peak FP32 FLOP/s of ONE core and the assumptions behind it.

    Parameters
    ----------
    cpuinfo : str
        Text of ``/proc/cpuinfo``.
    clock_ghz : float
        Clock to use.

    Returns
    -------
    (float, str)
        FLOP/s and a one-line statement of datapath width and FMA units.
    """
    flags = set(re.search(r"^flags\s*:(.*)$", cpuinfo, re.MULTILINE).group(1).split()) \
        if re.search(r"^flags\s*:", cpuinfo, re.MULTILINE) else set()
    vendor = (re.search(r"^vendor_id\s*:\s*(\S+)", cpuinfo, re.MULTILINE) or [None, ""])[1]
    family = int((re.search(r"^cpu family\s*:\s*(\d+)", cpuinfo, re.MULTILINE) or [None, "0"])[1])
    if vendor == "AuthenticAMD" and family >= 26 and "avx512f" in flags:
        bits, fma, why = 512, 2, "AMD Zen 5: 2 FMA pipes, 512-bit datapath"
    elif vendor == "AuthenticAMD" and "fma" in flags:
        bits, fma, why = 256, 2, ("AMD Zen 2-4: 2 FMA pipes, 256-bit datapath "
                                  "(AVX-512 is executed as 2 x 256 on Zen 4)")
    elif "avx512f" in flags:
        bits, fma, why = 512, 2, "Intel AVX-512: assumed 2 FMA units of 512 bits (Xeon Gold/Platinum)"
    elif "fma" in flags:
        bits, fma, why = 256, 2, "AVX2: 2 FMA units of 256 bits"
    else:
        bits, fma, why = 128, 1, "SSE: 1 multiply + 1 add unit of 128 bits"
    lanes = bits // 32
    flops = clock_ghz * 1e9 * lanes * fma * 2
    return flops, f"{why}; {lanes} lanes x {fma} FMA x 2 x {clock_ghz:.2f} GHz"


def _emotify_segments(root: Path, tracks: range) -> list[Path]:
    return [root / "emotifymusic" / g / f"{i}.mp3" for i in tracks for g in GENRES
            if (root / "emotifymusic" / g / f"{i}.mp3").is_file()]


def real_images(n: int, first_track: int, config, picture) -> tuple[np.ndarray, list[float], str]:
    """Spectrogram images of ``n`` segments (first 15 s of tracks), image-making ms each."""
    from emodist.features.images import spectrogram_image
    from emodist.features.spectral import analyse

    root = os.environ.get("EMODIST_EMOTIFY_ROOT")
    if root and (Path(root) / "data.csv").is_file():
        from emodist.data.audio import load_track

        paths = _emotify_segments(Path(root), range(first_track, first_track + 25))[:n]
        clips = [load_track(str(p), config.sr, offset_s=0.0, duration_s=config.segment_seconds)
                 for p in paths]
        source = f"Emotify, first 15 s of {len(clips)} tracks from number {first_track} per genre"
    else:
        rng = np.random.default_rng(first_track)
        t = np.arange(int(config.segment_seconds * config.sr)) / config.sr
        clips = [(0.3 * np.sin(2 * np.pi * rng.uniform(80, 2000) * t * (1 + 0.01 * np.sin(t)))
                  + 0.05 * rng.standard_normal(t.size)).astype(np.float32) for _ in range(n)]
        source = f"{n} generated clips (EMODIST_EMOTIFY_ROOT not set)"
    images, ms = [], []
    for y in clips:
        an = analyse(y, config.sr, config)
        t0 = time.process_time()
        images.append(spectrogram_image(an, picture))
        ms.append((time.process_time() - t0) * 1e3)
    return np.stack(images), ms, source


def _throughput(images, model, batch, threads, reps):
    from emodist.models.session import embed

    n = len(images)
    cpu = []

    def once():
        c0 = time.process_time()
        embed(images, model, batch_size=batch, threads=threads)
        cpu.append(time.process_time() - c0)

    med, spread = repeat(once, n=reps, warmup=1)
    cpu_med = statistics.median(cpu[1:])
    return n / med, n / (med - spread / 2) - n / (med + spread / 2), n / cpu_med


def run(quick: bool = False) -> dict:
    """Run the deep-feature benchmark; see the module docstring."""
    import onnx

    from emodist.errors import ModelError
    from emodist.features.inception import InceptionV3
    from emodist.models import build
    from emodist.models import inception_graph as graph
    from emodist.models.quantize import quantize_int8
    from emodist.models.session import default_model_path, embed
    from emodist.spec import ExtractionSpec

    cfg = ExtractionSpec()
    picture = InceptionV3(image_size=build.IMAGE_SIZE)
    rows = []
    with tempfile.TemporaryDirectory(prefix="emodist-bench-deep-") as tmp:
        if quick:
            model = build.build_tiny_model(Path(tmp) / "tiny.onnx")
            what = "tiny random model (quick)"
        else:
            model = default_model_path()
            try:
                from emodist.models.session import read_sidecar

                ok = read_sidecar(model).get("archive_sha1") == build.ARCHIVE_SHA1
            except ModelError:
                ok = False
            if not ok:
                model = build.build_real_model(Path(tmp) / "inception_v3_fid.onnx")
            what = "real Inception-v3 (2048 features)"
        n_cal, n_eval = (2, 4) if quick else (16, 32)
        cal, _, _ = real_images(n_cal, 1, cfg, picture)
        evals, ms, source = real_images(n_eval, 5, cfg, picture)
        rows.append(row("image making per segment", statistics.median(ms),
                        max(ms) - min(ms), "ms",
                        "spectrogram_image from the STFT: log, min-max, flip, bilinear resize "
                        "to 299 x 299 (CPU time)"))
        int8 = quantize_int8(model, Path(tmp) / "int8.onnx", cal)

        macs = graph.count_macs(onnx.load(model), picture.image_size)["macs"]
        flop = 2 * macs
        rows.append(row("graph MACs per image", macs, 0, "MAC",
                        f"{what}: Conv nodes counted from the graph at 299 x 299"))
        clock = measured_clock_ghz(20_000_000 if quick else 200_000_000)
        cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
        nominal = float((re.search(r"^cpu MHz\s*:\s*([\d.]+)", cpuinfo, re.MULTILINE) or [0, "0"])[1]) / 1e3
        peak1, why = cpu_peak(cpuinfo, max(clock, nominal))
        rows.append(row("core clock (measured)", clock, 0, "GHz",
                        f"/proc/cpuinfo says {nominal:.2f} GHz (nominal)"))
        rows.append(row("FP32 peak, 1 core", peak1 / 1e9, 0, "GFLOP/s", why))

        batches = (1, 8) if quick else (1, 8, 32)
        reps = 2 if quick else 3
        eval32 = evals[: (8 if quick else 32)]
        figures = {}
        for prec, path in (("fp32", model), ("int8", int8)):
            for threads in (1, 2):
                for b in batches:
                    ips, spread, ips_cpu = _throughput(eval32, path, b, threads, reps)
                    figures[prec, threads, b] = (ips, ips_cpu)
                    rows.append(row(f"{prec} images/s, batch {b}, {threads} thread"
                                    f"{'s' if threads > 1 else ''}", ips, spread, "images/s",
                                    f"wall clock; per CPU-second: {ips_cpu:.2f}"
                                    if threads == 1 else "wall clock"))
        b = 8
        fp1_wall, fp1_cpu = figures["fp32", 1, b]
        fp2_wall, _ = figures["fp32", 2, b]
        rows.append(row("fp32 share of ceiling, 1 thread, CPU time", fp1_cpu * flop / peak1, 0,
                        "ratio", f"batch {b}; {fp1_cpu * flop / 1e9:.1f} GFLOP/s of "
                                 f"{peak1 / 1e9:.1f}; target >= 0.6"))
        rows.append(row("fp32 share of ceiling, 1 thread, wall", fp1_wall * flop / peak1, 0,
                        "ratio", f"batch {b}; 1-min load average {os.getloadavg()[0]:.1f}"))
        rows.append(row("fp32 share of ceiling, 2 threads, wall", fp2_wall * flop / (2 * peak1), 0,
                        "ratio", f"batch {b}; 2-core ceiling; 1-min load average {os.getloadavg()[0]:.1f}"))
        i1_wall, i1_cpu = figures["int8", 1, b]
        rows.append(row("int8 speed-up over fp32, 1 thread, CPU time", i1_cpu / fp1_cpu, 0, "x",
                        f"batch {b}; target >= 1.5; wall-clock ratio {i1_wall / fp1_wall:.2f}"))
        a = embed(evals, model, batch_size=8)
        q = embed(evals, int8, batch_size=8)
        cos = (a * q).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(q, axis=1))
        rows.append(row("int8 cosine to fp32, minimum", float(cos.min()), 0, "cosine",
                        f"{len(evals)} images: {source}; calibrated on {len(cal)} other tracks; "
                        f"mean {cos.mean():.5f}; target >= 0.99"))
        # the pools moved behind their convolutions (the default) against not moved
        kept = quantize_int8(model, Path(tmp) / "int8_pools_kept.onnx", cal, move_pools=False)
        cpu = {"moved": [], "kept": []}
        for _ in range(2 if quick else 4):
            for name, path in (("kept", kept), ("moved", int8)):
                c0 = time.process_time()
                embed(eval32, path, batch_size=8, threads=1)
                cpu[name].append((time.process_time() - c0) / len(eval32))
        k = embed(evals, kept, batch_size=8)
        cos_kept = (a * k).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(k, axis=1))
        moved_ms, kept_ms = (1e3 * statistics.median(cpu[n][1:]) for n in ("moved", "kept"))
        rows.append(row("int8 CPU ms per image, pools not moved", kept_ms,
                        1e3 * (max(cpu["kept"][1:]) - min(cpu["kept"][1:])), "ms",
                        f"1 thread, batch 8, alternated with the default; min cosine to fp32 "
                        f"{cos_kept.min():.4f}, mean {cos_kept.mean():.5f}"))
        rows.append(row("int8 CPU ms per image, pools moved behind their convolutions (default)",
                        moved_ms, 1e3 * (max(cpu["moved"][1:]) - min(cpu["moved"][1:])), "ms",
                        f"speed-up {kept_ms / moved_ms:.2f}x; min cosine to fp32 {cos.min():.4f}"))
    summary = (f"{what}: fp32 {fp1_cpu:.2f} images per CPU-second on 1 thread = "
               f"{fp1_cpu * flop / peak1:.0%} of the {peak1 / 1e9:.0f} GFLOP/s core ceiling; "
               f"int8 {i1_cpu / fp1_cpu:.2f}x faster, cosine >= {cos.min():.4f} "
               f"({kept_ms / moved_ms:.2f}x from its moved pools); "
               f"image making {statistics.median(ms):.1f} ms per segment")
    return {"name": "deep features (Inception-v3 ONNX)", "machine": machine(), "rows": rows,
            "summary": summary}


if __name__ == "__main__":
    from benchmarks.common import main

    main(run)
