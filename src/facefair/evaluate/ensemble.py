"""An ensemble of runs scored on the same faces: their predictions tables averaged face by face.

Classification tasks average the members' class probabilities (the predicted class is the
argmax of the mean); regression tasks (age) average the predicted values.  Members must hold
the same faces in the same order (runs sharing one split), or the average would mix faces.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import pandas as pd

from facefair.table import classes_of, probability_columns, tasks_in


def average_predictions(frames: Sequence[pd.DataFrame], weights: Optional[dict[str, Sequence[float]]] = None
                        ) -> pd.DataFrame:
    """The ensemble's predictions table: mean class probabilities and mean predicted values.

    Parameters
    ----------
    frames : sequence of pandas.DataFrame
        Predictions tables of the members (``path``, ``T_true``, ``T_pred``, ``T_prob_<class>``),
        every one with the same ``path`` column in the same order.
    weights : dict, optional
        Per task, one weight per member (normalised to sum to 1), e.g. ``{"race": [0, 1]}`` keeps
        the second member's race; tasks not named are plain means.

    Returns
    -------
    pandas.DataFrame
        The first member's table with ``T_prob_<class>`` replaced by the members' mean,
        ``T_pred`` by the class of the largest mean probability (classification) or by the mean
        prediction (regression); true labels and other columns are the first member's.

    Raises
    ------
    ValueError
        When fewer than one member is given, or the members hold different rows or orders.

    Examples
    --------
    >>> import pandas as pd
    >>> member = lambda male: pd.DataFrame({"path": ["a.jpg"], "gender_true": ["Male"],
    ...     "gender_pred": ["Male" if male >= 0.5 else "Female"],
    ...     "gender_prob_Female": [1 - male], "gender_prob_Male": [male]})
    >>> average_predictions([member(0.9), member(0.3)])[["gender_pred", "gender_prob_Male"]]
      gender_pred  gender_prob_Male
    0        Male               0.6
    >>> average_predictions([member(0.9), member(0.3)], {"gender": [3, 1]})["gender_prob_Male"].round(3).tolist()
    [0.75]
    """
    frames = list(frames)
    if not frames:
        raise ValueError("an ensemble needs at least one predictions table")
    first = frames[0]
    paths = first["path"].reset_index(drop=True)
    for number, frame in enumerate(frames[1:], start=2):
        if len(frame) != len(first) or not frame["path"].reset_index(drop=True).equals(paths):
            raise ValueError(f"ensemble member {number} holds different test rows from member 1 (or in another "
                             "order); members must share one split")
    weights = weights or {}
    for task, given in weights.items():
        if len(given) != len(frames) or min(given) < 0 or sum(given) <= 0:
            raise ValueError(f"ensemble weights of {task}: one non-negative weight per member ({len(frames)}), "
                             f"not all zero; got {list(given)}")
    out = first.copy()
    for task in tasks_in(first):
        columns = probability_columns(first, task)
        share = np.asarray(weights.get(task, np.ones(len(frames))), dtype=float)
        share = share / share.sum()
        if columns:
            mean = np.tensordot(share, [frame[columns].to_numpy(dtype=float) for frame in frames], axes=1)
            out[columns] = mean
            predicted = np.asarray(classes_of(first, task), dtype=object)[np.nan_to_num(mean, nan=-1.0).argmax(axis=1)]
            # a face some member could not read has no ensemble prediction either
            predicted[np.isnan(mean).any(axis=1)] = None
            out[f"{task}_pred"] = predicted
        else:
            out[f"{task}_pred"] = np.tensordot(share, [frame[f"{task}_pred"].to_numpy(dtype=float) for frame in frames],
                                               axes=1)
    return out
