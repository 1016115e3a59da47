"""Label correction (step 7 of the method): soft labels follow the model's predictions."""

from __future__ import annotations

import numpy as np


def ema_update(soft_labels: np.ndarray, probs: np.ndarray, alpha: float = 0.9) -> np.ndarray:
    """New soft labels ``alpha * soft_labels + (1 - alpha) * probs``.

    ``soft_labels`` (N, C) are the running label estimates t_i (rows in the simplex),
    ``probs`` (N, C) the model's softmax predictions q_i. ``alpha`` is the momentum: at 0.9 each
    update moves a soft label 10 % of the way toward the prediction. Rows stay in the simplex.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    soft_labels = np.asarray(soft_labels)
    probs = np.asarray(probs)
    if soft_labels.shape != probs.shape:
        raise ValueError(f"soft_labels {soft_labels.shape} and probs {probs.shape} differ in shape")
    return alpha * soft_labels + (1.0 - alpha) * probs
