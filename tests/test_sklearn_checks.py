"""scikit-learn's own estimator checks, on every public estimator.

Our estimators declare ``two_d_array=False`` (they take lists of images or of
per-image feature grids), so scikit-learn would skip nearly all of its checks. Here
each estimator runs under a subclass that claims tabular input, so *every* check is
generated: the API checks (cloning, ``get_params``/``set_params``, ``__init__`` that
only stores, repr, tags, ...) must pass. Each check that feeds a 2-D
``(n_samples, n_features)`` array is listed below with the reason it cannot apply and
the exception it then raises (a strict xfail: a check that starts passing, or fails
otherwise, fails the suite). The behavioural ones among them are restated for lists
of feature grids in test_estimators_common.py.
"""

import pytest
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import estimator_checks_generator

from conftest import CHEAP_SEGMENTERS
from sklearn_useg import DeepCutSegmenter, DinoFeatures

RESTATED = ("feeds a 2-D (n_samples, n_features) array, refused with a TypeError; "
            "restated for lists of feature grids in test_estimators_common.py")
TABULAR = ("feeds a 2-D (n_samples, n_features) array; the estimator takes a list of "
           "per-image grids (images for DinoFeatures) and refuses it with a TypeError")
WANTS_OTHER_ERROR = ("feeds a 2-D array (sparse, empty, NaN, negative) and expects a "
                     "ValueError or a message about that content; the TypeError refusing "
                     "any 2-D array comes first, so the check's assertion fails")
STATELESS = ("DinoFeatures is a pre-trained, stateless transformer: fit only validates its "
             "parameters and never reads X (images are checked in transform), so the "
             "check's assertion fails")
N_CLUSTERS_1 = ("the check sets n_clusters=1; DeepCut needs at least 2 clusters and its "
                "parameter validation refuses it")
N_CLUSTERS_1_MESSAGE = ("the check sets n_clusters=1 and expects an error naming 1 feature "
                        "or 1 sample; DeepCut's names n_clusters (it needs at least 2)")

# {check: (reason, the exception the check then raises)}
SEGMENTER_FAILURES = {
    **dict.fromkeys([
        "check_dict_unchanged", "check_dont_overwrite_parameters",
        "check_estimators_fit_returns_self", "check_estimators_overwrite_params",
        "check_estimators_pickle", "check_f_contiguous_array_estimator",
        "check_fit_check_is_fitted", "check_fit_idempotent", "check_fit_score_takes_y",
        "check_methods_sample_order_invariance", "check_methods_subset_invariance",
        "check_n_features_in_after_fitting", "check_pipeline_consistency",
        "check_readonly_memmap_input"], (RESTATED, TypeError)),
    **dict.fromkeys([
        "check_complex_data", "check_dtype_object", "check_estimators_dtypes", "check_fit1d",
        "check_fit2d_1feature", "check_fit2d_1sample", "check_fit2d_predict1d",
        "check_n_features_in"], (TABULAR, TypeError)),
    **dict.fromkeys([
        "check_estimator_sparse_array", "check_estimator_sparse_matrix",
        "check_estimator_sparse_tag", "check_estimators_empty_data_messages",
        "check_estimators_nan_inf", "check_positive_only_tag_during_fit"],
        (WANTS_OTHER_ERROR, AssertionError)),
}

DEEPCUT_FAILURES = {
    **SEGMENTER_FAILURES,
    **dict.fromkeys(["check_dont_overwrite_parameters", "check_fit2d_predict1d",
                     "check_methods_subset_invariance"],
                    (N_CLUSTERS_1, InvalidParameterError)),
    **dict.fromkeys(["check_fit2d_1feature", "check_fit2d_1sample"],
                    (N_CLUSTERS_1_MESSAGE, AssertionError)),
}
del DEEPCUT_FAILURES["check_fit1d"]  # it expects the ValueError that n_clusters=1 gives

DINO_FAILURES = {
    **dict.fromkeys([
        "check_dict_unchanged", "check_estimators_pickle",
        "check_f_contiguous_array_estimator", "check_fit_idempotent",
        "check_methods_sample_order_invariance", "check_methods_subset_invariance",
        "check_pipeline_consistency"], (RESTATED, TypeError)),
    **dict.fromkeys([
        "check_dtype_object", "check_estimators_dtypes", "check_fit2d_predict1d",
        "check_fit_score_takes_y", "check_transformer_data_not_an_array",
        "check_transformer_general", "check_transformer_preserve_dtypes",
        "check_transformers_unfitted_stateless"], (TABULAR, TypeError)),
    **dict.fromkeys([
        "check_complex_data", "check_estimator_sparse_tag",
        "check_estimators_empty_data_messages", "check_estimators_nan_inf", "check_fit1d",
        "check_n_features_in", "check_n_features_in_after_fitting"],
        (STATELESS, AssertionError)),
}

API_CHECKS = {"check_get_params_invariance", "check_set_params",
              "check_no_attributes_set_in_init", "check_parameters_default_constructible",
              "check_estimator_cloneable", "check_estimator_repr",
              "check_do_not_raise_errors_in_init_or_set_params"}

ESTIMATORS = [make() for make in CHEAP_SEGMENTERS.values()] + [
    DinoFeatures(backbone="test_vit", weights=None, device="cpu")]


def _claiming_tabular_input(estimator):
    """The same estimator, its class extended only to claim 2-D array input (a module
    attribute, so that the pickle check can find it)."""
    cls = type(estimator)

    def __sklearn_tags__(self):
        tags = cls.__sklearn_tags__(self)
        tags.input_tags.two_d_array = True
        return tags

    qualname = f"Tabular{cls.__name__}"
    checked = type(cls.__name__, (cls,), {"__sklearn_tags__": __sklearn_tags__,
                                          "__module__": __name__, "__qualname__": qualname})
    globals()[qualname] = checked
    return checked(**estimator.get_params(deep=False))


def _expected_failures(estimator):
    if isinstance(estimator, DinoFeatures):
        return DINO_FAILURES
    return DEEPCUT_FAILURES if isinstance(estimator, DeepCutSegmenter) else SEGMENTER_FAILURES


def _check_name(check):
    return getattr(check, "func", check).__name__


def _cases():
    for estimator in ESTIMATORS:
        expected = _expected_failures(estimator)
        for checked, check in estimator_checks_generator(_claiming_tabular_input(estimator)):
            name = _check_name(check)
            marks = ()
            if name in expected:
                reason, error = expected[name]
                marks = pytest.mark.xfail(reason=reason, raises=error, strict=True)
            yield pytest.param(checked, check, marks=marks,
                               id=f"{type(estimator).__name__}-{name}")


CASES = list(_cases())


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.SkipTestWarning")
@pytest.mark.parametrize("estimator, check", CASES)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_api_checks_run_for_every_estimator_and_every_xfail_is_generated():
    # claiming tabular input is what makes scikit-learn generate its checks at all;
    # a check counts as run only when it is not an expected failure
    run, xfailed = {}, {}
    for case in CASES:
        estimator, check = case.values
        (xfailed if case.marks else run).setdefault(type(estimator).__name__, set()).add(
            _check_name(check))
    assert sorted(run) == sorted(type(e).__name__ for e in ESTIMATORS)
    for estimator in ESTIMATORS:
        name = type(estimator).__name__
        assert API_CHECKS <= run[name], API_CHECKS - run[name]
        # no stale entry: every expected failure names a check that scikit-learn generates
        assert xfailed[name] == set(_expected_failures(estimator)), name
