"""What a worker does with one chunk task: decode once, every group, one region write.

For each track of the chunk (:func:`track_spans`), the file is decoded once
from its start to the end of the chunk's last segment of it, and resampled
once per rate the groups need (:func:`emodist.data.audio.decode`).  Each
segment is a :class:`emodist.features.Segment` over that one decode: groups
reading the STFT share one per segment.  Each group prepares its
per-segment input, then finishes the chunk (batched ONNX inference for
model groups, on a session cached per worker process).  The blocks and
statuses are written to the chunk's region of the store.

On the CPU a chunk is one task (:func:`extract_chunk`).  When model tasks
are to run on other workers (Dask worker resources such as ``GPU=1``,
:func:`chunk_route`), a chunk is two: :func:`prepare_stage` (decode,
prepare every group, finish the groups without a model) returns a
:class:`PreparedChunk` holding the model inputs (uint8 pictures, small), and
:func:`model_stage` finishes the model groups and writes the region.  Every
task returns the thread CPU seconds of its stages (the compute floor of
``benchmarks/bench_pipeline.py``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from emodist.data.audio import SHORTFALL_S, decode, decoded_end
from emodist.errors import DataError
from emodist.features import Segment, WorkerContext
from emodist.models.trained import track_context
from emodist.spec import BATCH_SIZE, ExtractionSpec
from emodist.store import layout
from emodist.store.zarrio import read_region, read_rows, write_region

__all__ = [
    "ChunkTask", "Job", "PreparedChunk", "SegmentRows", "apply_thread_budget", "chunk_route",
    "compute_chunk", "extract_chunk", "finish_groups", "model_stage", "prepare_chunk",
    "prepare_stage", "rates_needed", "task_rows", "track_context_rows", "track_spans",
    "worker_threads",
]

log = logging.getLogger(__name__)

_BUDGET: dict = {}
#: The first call in a process loads BLAS and numba's threading layer; two worker threads
#: doing it at once deadlocked (threadpoolctl walking the loaded libraries while numba
#: dlopens its layer), so calls are serialised.
_BUDGET_LOCK = threading.Lock()


@dataclass(frozen=True, eq=False)
class SegmentRows:
    """A chunk's segments as columns: their track, start and duration.

    Row ``i`` is ``(track_id, path, start_s, duration_s)`` (``rows[i]``,
    iteration), as a tuple per segment would be; held as NumPy columns and
    one ``(track_id, path)`` per track, so that a plan of millions of
    segments keeps no Python object per segment on the driver.  Equality and
    hashing are by identity (NumPy columns have no truth value), so a
    :class:`ChunkTask` stays hashable; compare ``list(rows)`` for values.

    Attributes
    ----------
    tracks : tuple of (str, str)
        ``(track_id, path)`` of each track of the chunk, in order of first appearance.
    owner : numpy.ndarray
        ``(n,)`` int32: each segment's index into ``tracks``.
    start_s, duration_s : numpy.ndarray
        ``(n,)`` float64.
    """

    tracks: tuple
    owner: np.ndarray
    start_s: np.ndarray
    duration_s: np.ndarray

    @classmethod
    def from_tuples(cls, rows: Iterable[tuple]) -> SegmentRows:
        """Columns of ``(track_id, path, start_s, duration_s)`` tuples."""
        rows = list(rows)
        index: dict[tuple[str, str], int] = {}
        owner = [index.setdefault((str(t), str(p)), len(index)) for t, p, _, _ in rows]
        return cls(tuple(index), np.asarray(owner, np.int32),
                   np.asarray([r[2] for r in rows], np.float64),
                   np.asarray([r[3] for r in rows], np.float64))

    @classmethod
    def from_columns(cls, track_ids, paths, start_s, duration_s) -> SegmentRows:
        """Rows from per-segment columns (a store's coordinates, :func:`read_rows`)."""
        pairs = pd.MultiIndex.from_arrays([np.asarray(track_ids, dtype=object),
                                           np.asarray(paths, dtype=object)])
        codes, uniques = pd.factorize(pairs)  # in order of first appearance
        return cls(tuple((str(t), str(p)) for t, p in uniques), codes.astype(np.int32),
                   np.asarray(start_s, np.float64), np.asarray(duration_s, np.float64))

    def __len__(self) -> int:
        return len(self.owner)

    def __getitem__(self, i: int) -> tuple[str, str, float, float]:
        track_id, path = self.tracks[self.owner[i]]
        return track_id, path, float(self.start_s[i]), float(self.duration_s[i])

    def __iter__(self):
        return (self[i] for i in range(len(self)))


@dataclass(frozen=True)
class ChunkTask:
    """One chunk of the store to fill: its rows and the groups still pending there.

    Attributes
    ----------
    chunk : int
        Chunk index along ``segment``.
    start, stop : int
        Segment slice ``[start, stop)`` of the chunk.
    rows : SegmentRows, sequence of (track_id, path, start_s, duration_s) or None
        One row per segment of the slice, in store order; ``None``: the
        worker reads them from the store's coordinates (a store planned on
        the workers, :func:`task_rows`).
    groups : tuple of str
        Names of the groups to compute in this chunk.
    """

    chunk: int
    start: int
    stop: int
    rows: SegmentRows | tuple | None
    groups: tuple


@dataclass(frozen=True)
class Job:
    """What every task of one extraction shares (sent with each task; small).

    Attributes
    ----------
    store : str
        Store location.
    spec : ExtractionSpec
        The resolved spec.
    batch_size : int
        Network inputs per inference call.
    dataset_options, store_options, model_options : dict or None
        fsspec options of each location (kept out of reprs: worker logs).
    device : str
        Where model groups run (``cpu``, ``cuda``, ``cuda:N``).
    """

    store: str
    spec: ExtractionSpec
    batch_size: int = BATCH_SIZE
    dataset_options: dict | None = field(default=None, repr=False)
    store_options: dict | None = field(default=None, repr=False)
    model_options: dict | None = field(default=None, repr=False)
    device: str = "cpu"


def apply_thread_budget(nthreads: int) -> int:
    """Limit BLAS/OpenMP pools and numba to ``nthreads`` in this process (set once)."""
    n = max(1, int(nthreads))
    with _BUDGET_LOCK:
        if _BUDGET.get("blas") != n:
            from threadpoolctl import threadpool_limits

            _BUDGET["limiter"] = threadpool_limits(limits=n)
            _BUDGET["blas"] = n
        try:
            import numba
        except ImportError:  # pragma: no cover - librosa brings numba
            return n
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    return n


def worker_threads() -> int:
    """Thread count of the Dask worker running this task (1 outside a worker)."""
    try:
        from distributed import get_worker

        return int(get_worker().state.nthreads)
    except (ImportError, ValueError, AttributeError):
        return 1


def track_spans(rows: Iterable[tuple]) -> list[tuple[str, str, float, list[int]]]:
    """Group a chunk's segments by track, with the end of the span to decode.

    Parameters
    ----------
    rows : SegmentRows or iterable of (track_id, path, start_s, duration_s)

    Returns
    -------
    list of (track_id, path, end_s, positions)
        One entry per track in order of first appearance; ``positions`` index ``rows``.
    """
    cols = rows if isinstance(rows, SegmentRows) else SegmentRows.from_tuples(rows)
    ends = cols.start_s + cols.duration_s
    spans = []
    for k, (track_id, path) in enumerate(cols.tracks):
        pos = np.flatnonzero(cols.owner == k)
        spans.append((track_id, path, float(ends[pos].max()), pos.tolist()))
    return spans


def rates_needed(spec: ExtractionSpec, groups) -> list[int]:
    """Sample rates the groups read (the spec's for STFT groups), each once."""
    rates = []
    for g in groups:
        inp = g.input()
        rate = spec.sr if inp.kind == "stft" or inp.sr is None else int(inp.sr)
        if rate not in rates:
            rates.append(rate)
    return rates


def _stage_timer(stages: dict, name: str):
    """Context adding the thread CPU seconds of a block to ``stages[name]``."""
    import contextlib

    @contextlib.contextmanager
    def timed():
        t0 = time.thread_time()
        try:
            yield
        finally:
            stages[name] = stages.get(name, 0.0) + time.thread_time() - t0

    return timed()


@dataclass
class PreparedChunk:
    """The CPU stage's output: finished blocks of non-model groups, inputs of model groups.

    Small enough to travel between workers: model inputs are the prepared
    per-segment arrays (uint8 pictures, mel patches), not audio.

    Attributes
    ----------
    values : dict of str to numpy.ndarray
        Finished ``(n, width)`` blocks (non-model groups so far).
    inputs : dict of str to (list of int, list of numpy.ndarray)
        Model group -> positions in the chunk and their prepared inputs.
    status : dict of str to numpy.ndarray
        int8 done / failed per segment and group.
    failures : list of dict
        As :func:`compute_chunk` returns them.
    stages : dict of str to float
        Thread CPU seconds per stage (``decode``, ``prepare/NAME``, ``finish/NAME``).
    heads : list of str
        Pending model heads (groups that read other groups' values), finished last.
    """

    values: dict
    inputs: dict
    status: dict
    failures: list
    stages: dict = field(default_factory=dict)
    heads: list = field(default_factory=list)


def task_rows(task: ChunkTask, job: Job) -> SegmentRows | tuple:
    """The rows of a chunk task: carried, or read from the store's coordinates."""
    if task.rows is not None:
        return task.rows
    return SegmentRows.from_columns(*read_rows(job.store, task.start, task.stop,
                                               job.store_options))


def prepare_chunk(task: ChunkTask, job: Job, threads: int = 1) -> PreparedChunk:
    """Decode every track once, prepare every group, finish the non-model groups."""
    spec = job.spec
    pending = [spec.group(name) for name in task.groups]
    groups = [g for g in pending if g.input().reads_audio]
    n = task.stop - task.start
    status = {g.name: np.full(n, layout.STATUS_DONE, np.int8) for g in pending}
    prepared: dict[str, dict[int, np.ndarray]] = {g.name: {} for g in groups}
    failures: list[dict] = []
    stages: dict[str, float] = {}
    rates = rates_needed(spec, groups)
    # a chunk with only model heads pending reads no audio
    rows = task_rows(task, job) if groups else ()
    for track_id, path, end_s, positions in track_spans(rows):
        # decode from the start of the file: seeking into an MP3 loses the bit
        # reservoir of the first frame, and values then depend on where chunks cut
        try:
            with _stage_timer(stages, "decode"):
                tracks = decode(path, rates=rates, end_s=end_s,
                                storage_options=job.dataset_options)
        except DataError as exc:
            for g in pending:
                status[g.name][positions] = layout.STATUS_FAILED
            failures.append({"track_id": track_id, "path": path, "error": exc.message,
                             "group": ""})
            continue
        positions = _whole(tracks, rows, positions, track_id, path, status, failures)
        segments = {i: Segment(tracks, rows[i][2], rows[i][3], sr=spec.sr,
                               n_fft=spec.n_fft, hop_length=spec.hop_length) for i in positions}
        for g in groups:
            try:
                with _stage_timer(stages, f"prepare/{g.name}"):
                    inputs = {i: g.prepare(segments[i]) for i in positions}
            except DataError as exc:
                status[g.name][positions] = layout.STATUS_FAILED
                failures.append({"track_id": track_id, "path": path, "error": exc.message,
                                 "group": g.name})
                continue
            prepared[g.name].update(inputs)
    out = PreparedChunk(values={}, inputs={}, status=status, failures=failures, stages=stages,
                        heads=[g.name for g in pending if not g.input().reads_audio])
    for g in groups:
        order = sorted(prepared[g.name])
        out.inputs[g.name] = (order, [prepared[g.name][i] for i in order])
    finish_groups(out, task, job, threads, models=False)
    return out


def _whole(tracks: dict, rows, positions: list[int], track_id: str, path: str, status: dict,
           failures: list) -> list[int]:
    """The positions whose segment the decoded audio holds; the others failed, as truncated.

    A file that decodes to less audio than its header promised (a truncated
    download) would otherwise give its last planned segments cut short, or
    none at all: values computed from a fraction of a segment, silently.
    """
    end = decoded_end(tracks)
    if end is None:
        return positions
    short = [i for i in positions if rows[i][2] + rows[i][3] > end + SHORTFALL_S]
    if not short:
        return positions
    for st in status.values():
        st[short] = layout.STATUS_FAILED
    failures.append({"track_id": track_id, "path": path, "group": "",
                     "error": f"truncated audio: it ends at {end:.3f} s, sooner than its header "
                     "says (the segments past that are not computed)"})
    return [i for i in positions if i not in short]


def finish_groups(chunk: PreparedChunk, task: ChunkTask, job: Job, threads: int,
                  models: bool) -> PreparedChunk:
    """Finish the pending groups of ``chunk`` that run a model (``models``) or do not."""
    context = WorkerContext(threads=threads, batch_size=job.batch_size,
                            storage_options=job.model_options, device=job.device)
    n = task.stop - task.start
    for name in [k for k in chunk.inputs if job.spec.group(k).batched == models]:
        g = job.spec.group(name)
        order, inputs = chunk.inputs.pop(name)
        block = np.full((n, g.width), np.nan, np.float32)
        if order:
            with _stage_timer(chunk.stages, f"finish/{name}"):
                block[order] = g.finish(inputs, context)
        chunk.values[name] = block
    if models:  # heads last: they read the values just finished
        for name in chunk.heads:
            g = job.spec.group(name)
            order, inputs = head_inputs(g, chunk, task, job)
            chunk.status[name][np.setdiff1d(np.arange(n), order)] = layout.STATUS_FAILED
            block = np.full((n, g.width), np.nan, np.float32)
            if len(order):
                with _stage_timer(chunk.stages, f"finish/{name}"):
                    block[order] = g.finish(list(inputs), context)
            chunk.values[name] = block
        chunk.heads = []
    return chunk


def head_inputs(head, chunk: PreparedChunk, task: ChunkTask,
                job: Job) -> tuple[np.ndarray, np.ndarray]:
    """A model head's input rows: its groups' values joined, where every one is done.

    Each group's values come from this chunk when it was computed here, else
    from the store's region (a group an earlier run stored).  A head with a
    track context (``head.context == "track"``) gets each row followed by
    the mean of its track's rows (:func:`track_context_rows`).

    Returns
    -------
    order : numpy.ndarray
        Positions in the chunk of the segments the head can be computed for.
    rows : numpy.ndarray
        ``(len(order), input width)`` float32.
    """
    names = head.input().groups
    stored = [name for name in names if name not in chunk.values]
    values, status = (read_region(job.store, task.start, task.stop, stored, job.store_options)
                      if stored else ({}, {}))
    values.update({name: chunk.values[name] for name in names if name in chunk.values})
    status.update({name: chunk.status[name] for name in names if name in chunk.values})
    ok = np.all([status[name] == layout.STATUS_DONE for name in names], axis=0)
    order = np.flatnonzero(ok)
    rows = _joined(head, values, order)
    if getattr(head, "context", "none") == "track":
        rows = track_context_rows(head, rows, order, task, job)
    return order, rows


def _joined(head, values: dict, order: np.ndarray) -> np.ndarray:
    """The head's groups' columns side by side, at rows ``order``."""
    names = head.input().groups
    columns = head.columns or [()] * len(names)
    return np.concatenate([values[name][order][:, list(cols)] if cols else values[name][order]
                           for name, cols in zip(names, columns)], axis=1)


def track_context_rows(head, rows: np.ndarray, order: np.ndarray, task: ChunkTask,
                       job: Job) -> np.ndarray:
    """A chunk's head input joined with the mean over each row's whole track.

    A track's segments are consecutive in the store, but a chunk boundary may
    cut one: the first and last track of the chunk may have segments before
    ``task.start`` or from ``task.stop`` on.  Those are read from the store
    (their groups must be stored: :func:`emodist.engine.predict.run_predict`
    stores the inputs of every segment before it runs such a head), so that
    the mean is over every segment of the track where every input group is
    done, as in training.  Without a store (``job.store`` empty, a chunk of
    every segment: :func:`emodist.engine.predict.featurise_files`) the chunk
    is all there is.

    Returns
    -------
    numpy.ndarray
        ``(len(order), 2 * rows.shape[1])`` float32:
        :func:`emodist.models.trained.track_context` over the track's rows.
    """
    ids = np.asarray([r[0] for r in task_rows(task, job)], dtype=object)
    parts, tracks = [rows], [ids[order]]
    if job.store and len(ids):
        names = head.input().groups
        lo = _track_edge(job, task.start, ids[0], -1, task.stop - task.start)
        hi = _track_edge(job, task.stop, ids[-1], 1, task.stop - task.start)
        for a, b, track in ((lo, task.start, ids[0]), (task.stop, hi, ids[-1])):
            if b > a:
                values, status = read_region(job.store, a, b, names, job.store_options)
                done = np.flatnonzero(np.all([status[n] == layout.STATUS_DONE for n in names],
                                             axis=0))
                parts.append(_joined(head, values, done))
                tracks.append(np.full(len(done), track, dtype=object))
    joined = track_context(np.concatenate(parts), np.concatenate(tracks))
    return joined[:len(rows)].astype(np.float32)


def _track_edge(job: Job, edge: int, track: str, step: int, window: int) -> int:
    """Where ``track``'s consecutive segments end beyond ``edge`` (before it: ``step`` -1).

    Reads the store's ``track_id`` in windows of ``window`` segments away
    from ``edge`` until another track (or the store's end) is met.
    """
    window = max(1, window)
    at = edge
    while True:
        a, b = (max(0, at - window), at) if step < 0 else (at, at + window)
        if a >= b:
            return at
        ids = np.asarray(read_rows(job.store, a, b, job.store_options)[0], dtype=object)
        other = np.flatnonzero(ids != track)
        if step < 0:
            if len(other):
                return a + int(other[-1]) + 1
            at = a
        else:
            if len(other):
                return a + int(other[0])
            if len(ids) < b - a:  # the store ends here
                return a + len(ids)
            at = b


def compute_chunk(task: ChunkTask, job: Job, threads: int = 1) -> tuple[dict, dict, list[dict]]:
    """Every pending group's block of one chunk, in memory (no store access).

    Returns
    -------
    values : dict of str to numpy.ndarray
        Group name -> ``(n, width)`` float32, NaN rows where a segment failed.
    status : dict of str to numpy.ndarray
        Group name -> int8 done (1) or failed (-1) per segment.
    failures : list of dict
        ``{"track_id", "path", "error", "group"}`` per track and group that failed
        (``group`` is ``""`` when the track could not be decoded at all).
    """
    chunk = finish_groups(prepare_chunk(task, job, threads), task, job, threads, models=True)
    return chunk.values, chunk.status, chunk.failures


def _write(task: ChunkTask, job: Job, chunk: PreparedChunk, t0: float) -> dict:
    """Write a finished chunk's region; the small summary the driver receives."""
    with _stage_timer(chunk.stages, "write"):
        write_region(job.store, task.start, task.stop, chunk.values, chunk.status,
                     job.store_options)
    every = np.stack(list(chunk.status.values()))
    return {
        "chunk": task.chunk,
        "n_done": int(np.sum(np.all(every == layout.STATUS_DONE, axis=0))),
        "n_failed": int(np.sum(np.any(every == layout.STATUS_FAILED, axis=0))),
        "failures": chunk.failures,
        "seconds": time.perf_counter() - t0,
        "stages": chunk.stages,
    }


def extract_chunk(task: ChunkTask, job: Job) -> dict:
    """Worker entry point: compute one chunk and write its region of the store.

    Returns
    -------
    dict
        ``chunk``, ``n_done``, ``n_failed`` (segments, over the task's groups),
        ``failures``, ``seconds`` and ``stages`` (thread CPU seconds per stage);
        small, so the driver's memory stays flat.
    """
    t0 = time.perf_counter()
    threads = apply_thread_budget(worker_threads())
    chunk = finish_groups(prepare_chunk(task, job, threads), task, job, threads, models=True)
    return _write(task, job, chunk, t0)


def prepare_stage(task: ChunkTask, job: Job) -> PreparedChunk:
    """Worker entry point of the CPU stage of a split chunk (decode, prepare, CPU groups)."""
    return prepare_chunk(task, job, apply_thread_budget(worker_threads()))


def model_stage(chunk: PreparedChunk, task: ChunkTask, job: Job) -> dict:
    """Worker entry point of the model stage of a split chunk: finish models, write."""
    t0 = time.perf_counter()
    threads = apply_thread_budget(worker_threads())
    return _write(task, job, finish_groups(chunk, task, job, threads, models=True), t0)


def chunk_route(job: Job, resources: dict | None = None,
                model_resources: dict | None = None) -> dict:
    """How chunk tasks are submitted: keyword arguments of :func:`run_bounded`.

    Without ``model_resources`` a chunk is one task (:func:`extract_chunk`),
    needing ``resources`` if given.  With them, and a model group pending, a
    chunk is a CPU task (:func:`prepare_stage`, needing ``resources``) whose
    output feeds a model task (:func:`model_stage`, needing
    ``model_resources``) that also writes the region.
    """
    if not model_resources or not any(g.batched for g in job.spec.groups):
        return {"func": extract_chunk, "resources": resources or None}
    return {"func": prepare_stage, "resources": resources or None,
            "then": model_stage, "then_resources": dict(model_resources)}
