"""The one short-time Fourier transform computed per segment.

:func:`analyse` computes the magnitude STFT of a segment once; every spectral
handcrafted feature and the spectrogram image are derived from the
:class:`Analysis` it returns.  Filterbanks (mel, chroma) are built once per
``(sr, n_fft)`` and cached, so extracting thousands of segments never rebuilds
them.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, field

import librosa
import numpy as np
import scipy.sparse

from emodist.errors import DataError, EmodistError

__all__ = [
    "N_MELS", "Analysis", "analyse", "chroma_basis", "fft_frequencies", "mel_basis",
    "mel_basis_sparse", "stft_magnitude", "thread_free_product",
]

#: Mel bands used for MFCCs and the onset envelope (librosa's default).
N_MELS = 128


def thread_free_product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` whose values do not depend on how many threads BLAS runs.

    A BLAS matrix product splits its work by the size of its thread pool,
    and the sums come out in another order (1 ULP apart) when a worker runs
    another ``--threads-per-worker``: a chunk repaired on another cluster
    would not equal the chunks beside it.  ``numpy.einsum`` (no ``optimize``)
    sums in its own loop, in one order, in the calling thread.  It is
    slower than one BLAS thread (a 12 x 1025 chroma bank times the 1300
    frames of a 15 s segment: 5.7 ms against 1.3 ms here), a few
    milliseconds of a segment's handcrafted time.

    Parameters
    ----------
    a : np.ndarray
        ``(m, k)``.
    b : np.ndarray
        ``(k, n)``.

    Returns
    -------
    np.ndarray
        ``(m, n)``, in the dtype NumPy gives ``a @ b``.
    """
    return np.einsum("mk,kn->mn", a, b)


@dataclass(eq=False)
class Analysis:
    """A segment and its magnitude STFT.

    Attributes
    ----------
    y : np.ndarray
        float32 mono samples of the segment.
    sr : int
        Sample rate in Hz.
    S : np.ndarray
        float32 magnitude ``|STFT|``, shape ``(1 + n_fft // 2, frames)``, Hann
        window, centred frames (librosa defaults, zero padding).
    freqs : np.ndarray
        Centre frequency in Hz of each row of ``S``.
    n_fft, hop_length : int
        Transform size and hop in samples.
    """

    y: np.ndarray
    sr: int
    S: np.ndarray
    freqs: np.ndarray
    n_fft: int
    hop_length: int
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def n_frames(self) -> int:
        """Number of STFT frames."""
        return int(self.S.shape[1])

    @property
    def power(self) -> np.ndarray:
        """Power spectrogram ``S ** 2`` (computed once)."""
        if "power" not in self._cache:
            self._cache["power"] = self.S * self.S
        return self._cache["power"]

    @property
    def mel_power(self) -> np.ndarray:
        """Mel power spectrogram, ``(N_MELS, frames)``, librosa's default filterbank."""
        if "mel" not in self._cache:
            self._cache["mel"] = np.asarray(mel_basis_sparse(self.sr, self.n_fft) @ self.power)
        return self._cache["mel"]


@functools.lru_cache(maxsize=16)
def mel_basis(sr: int, n_fft: int, n_mels: int = N_MELS) -> np.ndarray:
    """Cached librosa mel filterbank (Slaney scale and norm), float32, read-only."""
    basis = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, dtype=np.float32)
    basis.setflags(write=False)
    return basis


@functools.lru_cache(maxsize=16)
def mel_basis_sparse(sr: int, n_fft: int, n_mels: int = N_MELS):
    """:func:`mel_basis` as a CSR matrix: each band touches few bins, so the product is cheap."""
    return scipy.sparse.csr_array(mel_basis(sr, n_fft, n_mels))


@functools.lru_cache(maxsize=16)
def chroma_basis(sr: int, n_fft: int) -> np.ndarray:
    """Cached librosa chroma filterbank at A440 tuning (``tuning=0``), float32, read-only."""
    basis = librosa.filters.chroma(sr=sr, n_fft=n_fft, tuning=0.0, dtype=np.float32)
    basis.setflags(write=False)
    return basis


@functools.lru_cache(maxsize=16)
def fft_frequencies(sr: int, n_fft: int) -> np.ndarray:
    """Cached centre frequencies of the STFT rows, read-only."""
    freqs = librosa.fft_frequencies(sr=sr, n_fft=n_fft)
    freqs.setflags(write=False)
    return freqs


def stft_magnitude(y: np.ndarray, n_fft: int, hop_length: int) -> np.ndarray:
    """``|librosa.stft(y)|`` as float32 (Hann window, centred, zero padded).

    A segment shorter than the window is zero padded (librosa's behaviour);
    the warning librosa gives for it is silenced here.
    """
    if y.shape[-1] < n_fft:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="n_fft=.*too large", category=UserWarning)
            D = librosa.stft(y, n_fft=n_fft, hop_length=hop_length, center=True,
                             pad_mode="constant")
    else:
        D = librosa.stft(y, n_fft=n_fft, hop_length=hop_length, center=True, pad_mode="constant")
    return np.abs(D).astype(np.float32, copy=False)


def analyse(y: np.ndarray, sr: int, config) -> Analysis:
    """Compute THE one STFT of a segment.

    Parameters
    ----------
    y : np.ndarray
        Mono samples (any float dtype; converted to float32).
    sr : int
        Sample rate in Hz.
    config : emodist.spec.ExtractionSpec
        Supplies ``n_fft`` and ``hop_length``.

    Returns
    -------
    Analysis

    Raises
    ------
    DataError
        The segment holds no samples.
    EmodistError
        ``y`` is not one-dimensional.
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise EmodistError(f"segment audio must be mono (1-D), got shape {y.shape}")
    if y.size == 0:
        raise DataError("segment holds no samples")
    y = np.ascontiguousarray(y, dtype=np.float32)
    if not np.all(np.isfinite(y)):
        y = np.nan_to_num(y, nan=0.0, posinf=0.0, neginf=0.0)
    n_fft, hop = int(config.n_fft), int(config.hop_length)
    S = stft_magnitude(y, n_fft, hop)
    return Analysis(y=y, sr=int(sr), S=S, freqs=fft_frequencies(int(sr), n_fft),
                    n_fft=n_fft, hop_length=hop)
