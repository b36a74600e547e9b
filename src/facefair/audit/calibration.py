"""Expected calibration error and reliability curves of the top label.

Neither scikit-learn nor fairlearn has ECE, and ``sklearn.calibration.calibration_curve`` does
not return how many rows fall in each bin (which ECE weights by), so binning is done here with
exactly sklearn's rule; a test checks the curves agree with ``calibration_curve``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def bin_edges(n_bins: int) -> np.ndarray:
    return np.linspace(0.0, 1.0, n_bins + 1)


def bin_index(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    # sklearn's rule: a value on an inner edge falls into the lower bin.
    return np.searchsorted(bin_edges(n_bins)[1:-1], confidence)


def reliability_bins(confidence: np.ndarray, correct: np.ndarray, n_bins: int) -> pd.DataFrame:
    """Every bin, empty ones included (n = 0, NaN means): count, mean confidence, accuracy."""
    confidence = np.asarray(confidence, dtype=float)
    correct = np.asarray(correct, dtype=float)
    edges = bin_edges(n_bins)
    ids = bin_index(confidence, n_bins)
    total = np.bincount(ids, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(ids, weights=confidence, minlength=n_bins) / total
        accuracy = np.bincount(ids, weights=correct, minlength=n_bins) / total
    return pd.DataFrame({"bin": np.arange(n_bins), "bin_low": edges[:-1], "bin_high": edges[1:], "n": total,
                         "mean_confidence": mean_conf, "accuracy": accuracy})


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, n_bins: int) -> float:
    """sum over bins of (bin share) * |bin accuracy - bin mean confidence|; NaN for no rows."""
    confidence = np.asarray(confidence, dtype=float)
    if len(confidence) == 0:
        return float("nan")
    gap = np.bincount(bin_index(confidence, n_bins), weights=confidence - np.asarray(correct, dtype=float),
                      minlength=n_bins)
    return float(np.abs(gap).sum() / len(confidence))


def ece_from_weights(weights: np.ndarray, confidence: np.ndarray, correct: np.ndarray, n_bins: int) -> np.ndarray:
    """ECE of each bootstrap replicate; ``weights`` (replicates, rows) counts how often each row was drawn."""
    ids = bin_index(confidence, n_bins)
    signed = np.zeros((len(confidence), n_bins), dtype=weights.dtype)
    signed[np.arange(len(confidence)), ids] = np.asarray(confidence, float) - np.asarray(correct, float)
    total = weights.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.abs(weights @ signed).sum(axis=1) / total
