"""How well a score tells the corrupted training labels from the clean ones: the AUROC that every run with known
noise records at each evaluation (its latest training losses and weights), and the tables read back."""

import numpy as np


def auroc(score, positive, negative):
    """The chance that a positive's score is above a negative's, ties counting one half (the Mann-Whitney U over
    the two counts' product), from average ranks; NaN scores (never drawn) left out; None without both kinds."""
    drawn = ~np.isnan(score)
    pos, neg = score[positive & drawn], score[negative & drawn]
    if not len(pos) or not len(neg):
        return None
    both = np.concatenate([pos, neg])
    values, inverse, counts = np.unique(both, return_inverse=True, return_counts=True)
    mean_rank = np.cumsum(counts) - (counts - 1) / 2  # 1-based: ties share the mean of their ranks
    u = mean_rank[inverse[: len(pos)]].sum() - len(pos) * (len(pos) + 1) / 2
    return round(float(u / (len(pos) * len(neg))), 6)
