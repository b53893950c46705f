"""Reading audio headers, and opening audio, from S3 with an object store's round trip.

Planning reads one header per file (:func:`emodist.data.segments.probe`).
``N`` copies (256 by default, 16 with ``quick``) of one 60 s stereo 44.1 kHz
MP3 (the shape of an Emotify track) are uploaded to a moto S3 server, which
is reached through :func:`tests.servers.latency_proxy`: every request waits
``DELAY_MS`` (20 ms by default) before moto sees it, as a request to a real
object store waits for its round trip; loopback has none, so without the
proxy a request's cost is moto's own CPU time.

Each probe is measured with 1 and with 16 threads (the pool a planning task
uses), against the former probe in the same run: ``fsspec.open`` with the
filesystem's defaults, then ``soundfile.info`` on the file object.  That
read ahead one block (50 MiB on s3fs, so the whole track) from inside
libsndfile's open, which soundfile (0.14) runs under a process-wide lock:
one thread's download kept every other thread from opening a file.  The
rows give files/s, the requests and the bytes fetched per file (from
s3fs's debug log), and the speed-up; the headers must be equal.  The
same with 16 threads for files that begin with 300 KB of cover art (an
ID3v2 tag, which libsndfile reads whole).

A decode's open is measured the same way (open, then read the first 5 s;
1 and 8 threads, as a worker with several threads decodes): the former
open let libsndfile's first read fetch the file's first block inside the
lock; :func:`emodist.data.audio._audio_file` fetches it before the open.

Environment: ``EMODIST_BENCH_HEADER_FILES`` (another ``N``),
``EMODIST_BENCH_HEADER_DELAY_MS`` (another delay).
"""

from __future__ import annotations

import io
import os
import time
from concurrent.futures import ThreadPoolExecutor

from benchmarks.common import machine, row

BUCKET = "bench-headers"
THREADS = (1, 16)
#: Threads of the decode's open (a worker's threads) and the seconds it reads.
OPEN_THREADS = (1, 8)
READ_S = 5.0


def mp3_bytes(seconds: float = 60.0, sr: int = 44100) -> bytes:
    """A stereo MP3 of a tone in noise, as bytes."""
    import numpy as np
    import soundfile as sf

    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(0)
    y = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)
    buf = io.BytesIO()
    sf.write(buf, np.stack([y, y], axis=1).astype(np.float32), sr, format="MP3")
    return buf.getvalue()


def with_cover_art(mp3: bytes, art_bytes: int = 300_000) -> bytes:
    """``mp3`` behind an ID3v2.3 tag holding one picture of ``art_bytes`` random bytes."""
    import struct

    import numpy as np

    body = b"\x00image/jpeg\x00\x03\x00" + np.random.default_rng(1).bytes(art_bytes)
    frame = b"APIC" + struct.pack(">I", len(body)) + b"\x00\x00" + body
    n = len(frame)
    size = bytes([(n >> 21) & 0x7F, (n >> 14) & 0x7F, (n >> 7) & 0x7F, n & 0x7F])
    return b"ID3\x03\x00\x00" + size + frame + mp3


def former_probe(path: str, options: dict):
    """The probe before the header blocks were fetched ahead: the filesystem's defaults."""
    import fsspec
    import soundfile as sf

    with fsspec.open(path, "rb", **options) as f:
        info = sf.info(f)
    return info.frames / info.samplerate, info.samplerate, info.channels


def probe(path: str, options: dict):
    from emodist.data.segments import probe as emodist_probe

    return tuple(emodist_probe(path, options))


def former_open(path: str, options: dict):
    """A decode's open before the first block was fetched ahead, then READ_S seconds."""
    import fsspec
    import soundfile as sf

    with fsspec.open(path, "rb", **options) as f, sf.SoundFile(f) as snd:
        return snd.read(frames=int(READ_S * snd.samplerate)).shape


def emodist_open(path: str, options: dict):
    import soundfile as sf

    from emodist.data.audio import _audio_file

    with _audio_file(path, options) as f, sf.SoundFile(f) as snd:
        return snd.read(frames=int(READ_S * snd.samplerate)).shape


def measure(fn, paths: list[str], options: dict, threads: int, size: int) -> dict:
    from tests.servers import S3Requests

    with S3Requests() as calls:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            headers = list(pool.map(lambda p: fn(p, options), paths))
        seconds = time.perf_counter() - t0
    n = len(paths)
    fetched = sum(min(end, size) - start if end else size for start, end in calls.gets)
    return {"rate": n / seconds, "headers": headers,
            "requests": (calls.heads + len(calls.gets)) / n, "kib": fetched / n / 1024}


def run(quick: bool = False) -> dict:
    import s3fs

    from emodist.data.audio import HEADER_BLOCK
    from tests.servers import latency_proxy, make_bucket, moto_server

    n = 16 if quick else int(os.environ.get("EMODIST_BENCH_HEADER_FILES", "256"))
    delay_ms = float(os.environ.get("EMODIST_BENCH_HEADER_DELAY_MS", "20"))
    data = mp3_bytes()
    rows, got = [], {}
    with moto_server() as (endpoint, options):
        make_bucket(endpoint, BUCKET)
        s3fs.S3FileSystem(**options).pipe(
            {f"{BUCKET}/audio/{i:05d}.mp3": data for i in range(n)}, batch_size=64)
        paths = [f"s3://{BUCKET}/audio/{i:05d}.mp3" for i in range(n)]
        top = max(THREADS)
        with latency_proxy(endpoint, options, delay_ms / 1000) as slow:
            measure(probe, paths[:4], slow, 4, len(data))  # connections and imports
            for threads in THREADS:
                for name, fn in (("former", former_probe), ("emodist", probe)):
                    got[name, threads] = r = measure(fn, paths, slow, threads, len(data))
                    how = ("fsspec defaults, read ahead inside libsndfile's open" if
                           name == "former" else f"first and last {HEADER_BLOCK // 1024} KiB "
                           "fetched together before the open")
                    rows += [
                        row(f"{name} probe, {threads} thread(s): rate", r["rate"],
                            unit="files/s", note=how),
                        row(f"{name} probe, {threads} thread(s): requests", r["requests"],
                            unit="per file", note="HEAD + GETs" if name == "former" else
                            "HEAD, then both GETs at once: 2 round trips"),
                        row(f"{name} probe, {threads} thread(s): fetched", r["kib"],
                            unit="KiB/file", note=f"of a {len(data) / 1024:.0f} KiB file"),
                    ]
                same = all(abs(a[0] - b[0]) < 1e-9 and a[1:] == b[1:] for a, b in
                           zip(got["former", threads]["headers"], got["emodist", threads]["headers"]))
                assert same, "the two probes read different headers"
                rows.append(row(f"probe speed-up, {threads} thread(s)",
                                got["emodist", threads]["rate"] / got["former", threads]["rate"],
                                unit="x", note="emodist / former, same run"))
            art = [f"s3://{BUCKET}/art/{i:05d}.mp3" for i in range(n)]
            tagged = with_cover_art(data)
            s3fs.S3FileSystem(**options).pipe(dict(zip(art, [tagged] * n)), batch_size=64)
            for name, fn in (("former", former_probe), ("emodist", probe)):
                got["art", name] = r = measure(fn, art, slow, top, len(tagged))
                rows += [
                    row(f"{name} probe with cover art, {top} threads: rate", r["rate"],
                        unit="files/s", note=f"{len(tagged) / 1024:.0f} KiB file, 293 KiB "
                        "of it an ID3v2 tag"),
                    row(f"{name} probe with cover art, {top} threads: requests",
                        r["requests"], unit="per file"),
                    row(f"{name} probe with cover art, {top} threads: fetched", r["kib"],
                        unit="KiB/file"),
                ]
            assert got["art", "former"]["headers"] == got["art", "emodist"]["headers"]
            for threads in OPEN_THREADS:
                for name, fn in (("former", former_open), ("emodist", emodist_open)):
                    got["open", name, threads] = r = measure(fn, paths, slow, threads, len(data))
                    rows.append(row(f"{name} decode open + {READ_S:g} s read, {threads} "
                                    "thread(s): rate", r["rate"], unit="files/s",
                                    note="first block read inside libsndfile's open" if
                                    name == "former" else "first block fetched before the open"))
                assert got["open", "former", threads]["headers"] == \
                    got["open", "emodist", threads]["headers"]
                rows.append(row(f"decode open speed-up, {threads} thread(s)",
                                got["open", "emodist", threads]["rate"]
                                / got["open", "former", threads]["rate"],
                                unit="x", note="emodist / former, same run"))
    wide = max(OPEN_THREADS)
    summary = (f"{n} headers of {len(data) / 1024:.0f} KiB MP3s on moto behind {delay_ms:g} ms "
               f"a request: {top} threads {got['emodist', top]['rate']:.0f} files/s (former "
               f"{got['former', top]['rate']:.0f}, "
               f"{got['emodist', top]['rate'] / got['former', top]['rate']:.1f}x), "
               f"{got['emodist', top]['kib']:.0f} KiB fetched a file (former "
               f"{got['former', top]['kib']:.0f}); 1 thread "
               f"{got['emodist', 1]['rate']:.1f} vs {got['former', 1]['rate']:.1f} files/s; "
               f"decode opens with {wide} threads "
               f"{got['open', 'emodist', wide]['rate']:.0f} vs "
               f"{got['open', 'former', wide]['rate']:.0f} files/s; with cover art "
               f"{got['art', 'emodist']['rate']:.0f} vs {got['art', 'former']['rate']:.0f}")
    return {"name": "audio headers and opens from S3 at a round trip's latency", "machine": machine(),
            "rows": rows, "summary": summary}


if __name__ == "__main__":
    from benchmarks.common import main

    main(run)
