"""What each audit figure means: one definition per metric and column, quoted by the audit's JSON,
its HTML page and the model card, so every command that prints a metric says the same thing."""

from __future__ import annotations

from facefair.audit.config import ALL, OVERALL, AuditConfig
from facefair.audit.gaps import DEFINITIONS as GAP_DEFINITIONS

METRIC_DEFINITIONS = {
    "accuracy": "Share of rows whose predicted label equals the true label (sklearn accuracy_score).",
    "macro_f1": "Unweighted mean F1 over the classes present in the group's true labels (sklearn f1_score with "
                "those labels). Not applicable (n/a, NaN) in a group holding one true class (gender by gender, "
                "every race x gender cell): there it would be that one class's F1, which reads higher than the "
                "group's accuracy and says nothing about fairness; such groups stay out of macro_f1_difference.",
    "fpr": "Binary task: false positive rate of the positive class (gender: positive = Female, so FPR = share "
           "of males predicted female). Multi-class: mean over classes of the one-vs-rest FPR (fpr_ovr), "
           "over classes where it is defined and not thin (see thin_cell).",
    "fnr": "Binary task: false negative rate of the positive class (gender: share of females predicted male). "
           "Multi-class: mean over classes of the one-vs-rest FNR (fnr_ovr) where defined and not thin.",
    "selection_rate": "Binary task: share of rows predicted as the positive class (fairlearn selection_rate).",
    "fpr_ovr": "For class C: share of rows whose true label is not C that are predicted C (fairlearn "
               "false_positive_rate on the one-vs-rest labels). NaN where the group has no such rows.",
    "fnr_ovr": "For class C: share of rows whose true label is C that are predicted something else. NaN where "
               "the group has no row of class C.",
    "selection_rate_ovr": "For class C: share of rows predicted C.",
    "roc_auc": "ROC-AUC of the predicted probabilities (sklearn roc_auc_score); binary: of the positive class; "
               "multi-class: mean one-vs-rest AUC over classes with both members and non-members in the group.",
    "ece": "Expected calibration error of the top label: bins of equal width over the probability given to the "
           "predicted label; sum over bins of (bin share) x |bin accuracy - bin mean probability|.",
    "mae": "Mean absolute error of the exact age in years (sklearn mean_absolute_error).",
    "mean_error": "Mean of (predicted - true) age in years: positive means the model over-estimates age.",
}


def definitions(config: AuditConfig) -> dict[str, str]:
    """What every column and figure of an audit means, with ``config``'s own numbers (CI level,
    resamples, minimum group size, alpha): the audit's JSON and report quote it."""
    level = f"{config.ci_level:.0%}"
    return {
        **METRIC_DEFINITIONS, **GAP_DEFINITIONS,
        "n": "Rows of the group with both a true label and a prediction for the task.",
        "flagged": f"True when n < min_group_size ({config.min_group_size}): the group is shown but is too "
                   "small to judge, and it is left out of every gap.",
        "support": "Rows an error rate rests on: the group's negatives for an FPR (gender: its men), its positives "
                   "for an FNR (its women); for other metrics the group's n.",
        "thin_cell": f"True when an error rate of a large-enough group rests on 1 to {config.min_group_size - 1} "
                     "rows (support < min_group_size): the rate is computed and shown with its CI, but is too thin "
                     "to judge, so it is left out of every gap; each gap that loses it names it in excluded_cells "
                     "and is marked complete = False (computed over fewer cells than it should). A rate with no "
                     "row at all (FNR of a group without women) is undefined: NaN, never 0.",
        "complete": "False when a gap lost a thin error-rate cell of a judged group (see excluded_cells): its value "
                    "is over the remaining cells only, and the summary never calls it the largest.",
        "ci": f"{level} percentile bootstrap interval from {config.n_boot} resamples (seed {config.seed}): each "
              "group's (true, predicted) cell counts are drawn from a multinomial with its observed shares, which "
              "is exactly a resample of its rows; the gaps are recomputed on every resample. ROC-AUC: DeLong's "
              "normal approximation. Replicates where a metric is undefined are ignored. Gaps that take a max or "
              "a min over groups are biased upward under resampling, so their interval can sit above the point "
              "estimate and never holds 0: judge a gap by its verdict.",
        "verdict": f"'significant': the gap's test (column test) rejects equal rates after Holm's correction over "
                   f"every test of this audit (family-wise error {config.alpha}); 'consistent with no difference' "
                   "otherwise; 'not judged': fewer than two groups (or cells) to compare; 'not tested': no test is "
                   "run for this gap (macro-F1, ROC-AUC, ECE, mean error). Gaps built on the same rate (degree of "
                   "bias, ratios, worst group) share that rate's test.",
        "p_value": "p-value of the gap's own test, before the correction.",
        "p_holm": "Holm-adjusted p-value over the audit's family of tests (every task, attribute and intersection).",
        "mdd": "Minimum detectable difference: the smallest shift of a group's rate (MAE: years), the others "
               "unchanged, that the gap's test finds with 80% power at the level of Holm's first step "
               f"({config.alpha} / number of tests). In gaps.csv: the smallest judged group's.",
        "difference_ci": "difference_ci_low/high: CI of the difference between the two groups a spread gap names "
                         "(worst minus best, signed like the gap), resampled as a difference; not adjusted for the "
                         "pair being the most extreme of many.",
        "parity": "Equalized-odds and demographic-parity differences are not computed for an attribute that "
                  "contains the task's own label (race classification across race groups): there the "
                  "differences are large by construction.",
        "overall": f"Rows with attribute '{OVERALL}', group '{ALL}': every labelled row of the task, including "
                   "rows whose sensitive attributes are unknown.",
    }
