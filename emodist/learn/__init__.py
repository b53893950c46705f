"""Learning from listener votes: factor targets, soft labels, imbalance, human ceiling."""
