"""Bias mitigation: training methods that plug into ``facefair train --method NAME`` and a
post-processing step for predictions.

==============  ==================================================  ========================
method          what it does                                        demographic labels
==============  ==================================================  ========================
``reweight``    loss weight per row ~ 1 / size of its group         training rows
``adversarial`` gradient-reversal adversary predicts the group      training rows
``fineface``    FineFACE cross-layer attention experts              none
``group_dro``   one task's loss weighted towards its worst groups   training rows
==============  ==================================================  ========================

Group-balanced sampling (``--sampler balanced --sampler-by race gender``) and class-balanced
losses (``--class-weights``) are options of every method.  Group thresholds
(:mod:`facefair.mitigate.thresholds`) and class-prior adjustment
(:mod:`facefair.mitigate.logit_adjust`) post-process a finished run's predictions.
"""

from __future__ import annotations

# Nothing is imported here: the methods register when a run names them
# (``facefair.train.methods.METHODS``), their models when a checkpoint does
# (``facefair.models.registry.ARCHITECTURES``), so the modules of this package import in any order.

#: method name -> (needs demographic labels, one line) for ``facefair mitigate methods``.
METHOD_SUMMARIES = {
    "standard": (False, "plain multi-task training (combine with --sampler balanced / --class-weights)"),
    "reweight": (True, "per-row loss weight 1/size of the row's --group-by group, mean 1"),
    "adversarial": (True, "gradient-reversal adversary predicts the --group-by group from the shared features"),
    "group_dro": (True, "Group DRO: one task's per-group losses weighted by online exponentiated-gradient weights"),
    "fineface": (False, "FineFACE: 3 cross-layer attention experts + a concat head, 5 optimiser steps a batch"),
}
