"""Spectrogram images for the deep features, made from the segment's one STFT.

The reference study fed grey spectrogram pictures of each segment to an
ImageNet Inception-v3.  :func:`spectrogram_image` makes that picture from the
magnitude STFT already computed by :func:`emodist.features.spectral.analyse` (no second
transform):

1. power ``P = S ** 2`` (linear frequency axis) or the mel power spectrogram
   (``config.image_scale == "mel"``, librosa's 128-band Slaney filterbank);
2. ``L = log10(P + config.image_log_floor)``;
3. min-max scaling of ``L`` to ``[0, 255]`` per image (a constant image maps
   to 0);
4. rows flipped so that low frequencies are at the bottom, time runs left to
   right;
5. bilinear resize of both axes to ``config.image_size`` (a triangle filter,
   widened by the shrink factor when shrinking, exactly like Pillow's
   ``Image.resize(..., BILINEAR)``; half-pixel centres);
6. rounding to ``uint8``.

:func:`emodist.models.build.to_network_input` turns a batch of such grey
images into the float32 ``(N, 3, H, W)`` tensor the network expects.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.sparse

from emodist.errors import EmodistError

__all__ = [
    "log_spectrogram", "resize_bilinear", "resize_weights", "scale_to_pixels",
    "spectrogram_image",
]


@functools.lru_cache(maxsize=32)
def resize_weights(n_in: int, n_out: int) -> scipy.sparse.csr_matrix:
    """Sparse ``(n_out, n_in)`` matrix of a bilinear (triangle) resize along one axis.

    Output sample ``i`` sits at input coordinate ``(i + 0.5) * n_in / n_out``
    (half-pixel centres).  When shrinking, the triangle is widened by the
    shrink factor so that every input sample contributes (antialiasing), as
    Pillow's ``BILINEAR`` filter does.  Each row sums to one.  Kept instead
    of Pillow (a development dependency only) because the cached sparse
    weights resize a spectrogram faster (``benchmarks/bench_library_copies.py``
    row "resize_bilinear vs Pillow Image.resize(BILINEAR), 299 x 299").

    Parameters
    ----------
    n_in, n_out : int
        Input and output lengths, both positive.

    Returns
    -------
    scipy.sparse.csr_matrix
        float32 weights; ``W @ x`` resizes the first axis of ``x``.
    """
    if n_in < 1 or n_out < 1:
        raise EmodistError(f"cannot resize {n_in} samples to {n_out}")
    scale = n_in / n_out
    support = max(scale, 1.0)
    centres = (np.arange(n_out) + 0.5) * scale
    lo = np.clip(np.floor(centres - support).astype(int), 0, n_in - 1)
    width = int(np.ceil(2 * support)) + 2
    cols = lo[:, None] + np.arange(width)[None, :]
    valid = cols < n_in
    cols = np.minimum(cols, n_in - 1)
    w = 1.0 - np.abs((cols + 0.5 - centres[:, None]) / support)
    w = np.where(valid & (w > 0), w, 0.0)
    w /= w.sum(axis=1, keepdims=True)
    rows = np.repeat(np.arange(n_out), width)
    W = scipy.sparse.csr_matrix(
        (w.ravel().astype(np.float32), (rows, cols.ravel())), shape=(n_out, n_in)
    )
    W.eliminate_zeros()
    return W


def resize_bilinear(x: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize a 2-D float array with :func:`resize_weights` on both axes.

    Parameters
    ----------
    x : np.ndarray
        ``(rows, cols)`` array.
    shape : tuple of int
        ``(out_rows, out_cols)``.

    Returns
    -------
    np.ndarray
        float32 ``shape`` array; values stay within ``[x.min(), x.max()]``.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise EmodistError(f"resize needs a 2-D array, got shape {x.shape}")
    Wr = resize_weights(x.shape[0], int(shape[0]))
    Wc = resize_weights(x.shape[1], int(shape[1]))
    rows = np.asarray(Wr @ x, dtype=np.float32)  # (out_rows, cols)
    return np.ascontiguousarray(np.asarray(Wc @ rows.T, dtype=np.float32).T)


def log_spectrogram(analysis, config) -> np.ndarray:
    """``log10(power + floor)`` of a segment, rows = frequency (low first).

    Parameters
    ----------
    analysis : emodist.features.spectral.Analysis
        Holds ``S`` (magnitude STFT) and ``sr``, ``n_fft``.
    config : emodist.features.inception.InceptionV3
        Supplies ``image_scale`` and ``image_log_floor``.

    Returns
    -------
    np.ndarray
        float32 ``(bins, frames)``.
    """
    S = np.asarray(analysis.S)
    if S.ndim != 2 or S.shape[0] < 1 or S.shape[1] < 1:
        raise EmodistError(f"spectrogram must be a non-empty 2-D array, got shape {S.shape}")
    if config.image_scale == "mel":
        P = getattr(analysis, "mel_power", None)
        if P is None:  # a plain object holding S: build the filterbank here
            import librosa

            basis = librosa.filters.mel(sr=analysis.sr, n_fft=analysis.n_fft, dtype=np.float32)
            P = basis @ (S * S)
    else:
        P = getattr(analysis, "power", None)
        if P is None:
            P = S * S
    P = np.asarray(P, dtype=np.float32)
    return np.log10(P + np.float32(config.image_log_floor), dtype=np.float32)


def scale_to_pixels(x: np.ndarray) -> np.ndarray:
    """Min-max scale an array to float ``[0, 255]`` (a constant array gives 0).

    Non-finite entries are treated as the minimum.
    """
    x = np.asarray(x, dtype=np.float32)
    finite = np.isfinite(x)
    if not finite.all():
        x = np.where(finite, x, np.min(x[finite]) if finite.any() else 0.0)
    lo, hi = float(x.min()), float(x.max())
    if hi - lo <= 0:
        return np.zeros_like(x)
    return (x - np.float32(lo)) * np.float32(255.0 / (hi - lo))


def spectrogram_image(analysis, config) -> np.ndarray:
    """The grey spectrogram picture of one segment, as in the study.

    Parameters
    ----------
    analysis : emodist.features.spectral.Analysis
        The segment's one STFT (``S``, ``sr``, ``n_fft``).
    config : emodist.features.inception.InceptionV3
        ``image_size``, ``image_scale`` (``"linear"`` or ``"mel"``) and
        ``image_log_floor``.

    Returns
    -------
    np.ndarray
        uint8 ``(image_size, image_size)``; row 0 is the highest frequency,
        column 0 the first frame.

    Raises
    ------
    EmodistError
        The spectrogram is empty or ``image_size`` is not positive.
    """
    size = int(config.image_size)
    if size < 1:
        raise EmodistError(f"image_size must be positive, got {config.image_size}")
    pixels = scale_to_pixels(log_spectrogram(analysis, config))[::-1]
    img = resize_bilinear(pixels, (size, size))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)
