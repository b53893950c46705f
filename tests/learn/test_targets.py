"""GEMS factor targets: the mapping, the sums, the dominant factor and its ties."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emodist.data.labels import GEMS, dominant_emotion
from emodist.errors import DataError
from emodist.learn import targets as F

# Zentner, Grandjean & Scherer (2008), with Emotify's names for wonder,
# transcendence and peacefulness.
PAPER = {
    "sublimity": {"amazement", "solemnity", "tenderness", "nostalgia", "calmness"},
    "vitality": {"power", "joyful_activation"},
    "unease": {"tension", "sadness"},
}


def test_mapping_follows_the_paper():
    assert F.FACTORS == ("sublimity", "vitality", "unease")
    for factor, emotions in PAPER.items():
        assert {e for e, f in F.FACTOR_OF.items() if f == factor} == emotions
    M = F.factor_matrix()
    assert M.shape == (9, 3)
    assert (M.sum(axis=1) == 1).all()
    for j, factor in enumerate(F.FACTORS):
        assert {GEMS[i] for i in np.flatnonzero(M[:, j])} == PAPER[factor]


def test_factor_profile_sums_the_emotions():
    rng = np.random.default_rng(0)
    votes = rng.dirichlet(np.ones(9), size=50)
    f = F.factor_profile(votes)
    assert f.shape == (50, 3)
    np.testing.assert_allclose(f.sum(axis=1), 1.0)
    for j, factor in enumerate(F.FACTORS):
        cols = [GEMS.index(e) for e in PAPER[factor]]
        np.testing.assert_allclose(f[:, j], votes[:, cols].sum(axis=1))


def test_dataframe_columns_are_matched_by_name():
    rng = np.random.default_rng(1)
    votes = rng.dirichlet(np.ones(9), size=10)
    frame = pd.DataFrame(votes, columns=list(GEMS))[list(reversed(GEMS))]
    np.testing.assert_allclose(F.factor_profile(frame), F.factor_profile(votes))
    with pytest.raises(DataError):
        F.factor_profile(frame.drop(columns="power"))
    with pytest.raises(DataError):
        F.factor_profile(votes[:, :8])


def test_dominant_label_matches_the_catalog_rule_with_ties():
    rng = np.random.default_rng(2)
    # coarse values make ties frequent, in both profiles
    votes = rng.integers(0, 3, size=(400, 9)).astype(float)
    votes /= np.maximum(votes.sum(axis=1, keepdims=True), 1)
    mean = rng.integers(0, 3, size=(400, 9)) / 4.0
    for rule in ("listener", "mean"):
        primary = votes if rule == "listener" else mean
        np.testing.assert_array_equal(F.dominant_label(primary, mean, GEMS),
                                      dominant_emotion(votes, mean, rule))


def test_dominant_factor_ties_go_to_plain_mean_then_order():
    votes = np.zeros((3, 9))
    mean = np.zeros((3, 9))
    # sublimity 0.5 = vitality 0.5; vitality has the higher plain mean
    votes[0, GEMS.index("calmness")] = 0.5
    votes[0, GEMS.index("power")] = 0.5
    mean[0, GEMS.index("calmness")] = 0.3
    mean[0, GEMS.index("power")] = 0.4
    # same, plain means equal too -> first factor
    votes[1] = votes[0]
    mean[1, GEMS.index("calmness")] = mean[1, GEMS.index("power")] = 0.4
    # unease wins outright although tension is not the top emotion
    votes[2, [GEMS.index("tension"), GEMS.index("sadness"), GEMS.index("calmness")]] = [0.3, 0.3, 0.4]
    mean[2] = votes[2]
    assert F.dominant_factor(votes, mean).tolist() == ["vitality", "sublimity", "unease"]
    assert F.dominant_factor(votes, mean, "mean").tolist() == ["vitality", "sublimity", "unease"]
    with pytest.raises(DataError):
        F.dominant_factor(votes, mean, "median")


def test_factor_targets_normalise_under_both_rules():
    rng = np.random.default_rng(3)
    votes = rng.dirichlet(np.ones(9), size=20)
    mean = rng.random((20, 9)) * 0.6
    mean[0] = 0
    votes[0] = 0
    for rule in ("listener", "mean"):
        dist, labels = F.factor_targets(votes, mean, rule)
        assert dist.shape == (20, 3) and labels.shape == (20,)
        np.testing.assert_allclose(dist[1:].sum(axis=1), 1.0)
        assert (dist[0] == 0).all()
        np.testing.assert_array_equal(labels, F.dominant_factor(votes, mean, rule))
    dist, _ = F.factor_targets(votes, mean, "mean")
    raw = F.factor_profile(mean[1:])
    np.testing.assert_allclose(dist[1:], raw / raw.sum(axis=1, keepdims=True))
