"""Scoring: rates with 95% intervals and paired tests. Pure numpy/scipy.

Why intervals everywhere: public PARA-vs-ACT numbers disagree by tens of points between pages, and
with 100 episodes a 54% rate is compatible with anything from 44% to 63%. A bare rate is not a result.

One episode = one outcome string. Which strings exist, which one is success, the weighted score of each
and the rates a summary reports are the scene's (:class:`pxp.core.contracts.Outcomes`, declared by its
config model): every function here takes that ``scheme``.

Episodes that crashed (``error`` set, outcome ``None``) are not outcomes: they are counted in
``errors`` and left out of ``n``, so a crash neither helps nor hurts a policy silently; the report
shows the error count next to every rate.
"""
from __future__ import annotations

import math
from itertools import combinations

import numpy as np

# norm.isf(0.025), the critical value statsmodels uses; a literal so that importing this module (and the
# evaluator plugins, at `pxp list-plugins` time) does not pull in scipy.stats (~0.5 s). A test checks it.
Z95 = 1.9599639845400545
BOOTSTRAP_SEED = 20260405  # fixed: the same episodes always give the same bootstrap interval
BOOTSTRAP_RESAMPLES = 4000


def wilson(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval, identical to statsmodels ``proportion_confint(method="wilson")``.

    ``successes`` may be fractional (used by :func:`weighted_interval`). ``n == 0`` gives (nan, nan).
    """
    if n <= 0:
        return (math.nan, math.nan)
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # Clip tiny float overshoots so 0/n gives exactly 0 and n/n exactly 1.
    return (max(0.0, centre - half), min(1.0, centre + half))


def weighted_interval(scores, z: float = Z95) -> tuple[float, float]:
    """95% interval for the mean of per-episode scores in [0, 1] (here 0, 0.5, 1).

    Plain Wilson assumes Bernoulli data, which weighted scores are not. But the variance of ANY
    [0, 1]-valued variable with mean mu is at most mu(1 - mu), with equality only for Bernoulli.
    Inverting |mean - mu| <= z * sqrt(mu(1 - mu) / n) with that bound gives exactly the Wilson
    formula applied to (sum of scores, n): a score interval that is conservative (never narrower
    than the truth asymptotically), stays inside [0, 1], is not degenerate at 0 or 1 (unlike a
    bootstrap or Wald interval when every episode is a MISS), and reduces to the ordinary Wilson
    interval when there are no GRASPs. See :func:`bootstrap_interval` for a second opinion.
    """
    s = np.asarray(scores, dtype=float)
    return wilson(float(s.sum()), int(s.size), z)


def bootstrap_interval(scores, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Percentile bootstrap over episodes (fixed seed → reproducible). Degenerate when all scores are equal."""
    s = np.asarray(scores, dtype=float)
    if s.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = s[rng.integers(0, s.size, size=(resamples, s.size))].mean(axis=1)
    lo, hi = np.quantile(means, [0.025, 0.975])
    return (float(lo), float(hi))


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts.

    ``b`` = pairs where only policy A succeeded, ``c`` = only policy B. Under H0 each discordant pair
    is a fair coin, so p = binomial test of b out of b + c at 0.5 (statsmodels ``mcnemar(exact=True)``).
    No discordant pairs → p = 1.
    """
    if b + c == 0:
        return 1.0
    from scipy import stats as _st

    return float(_st.binomtest(int(b), int(b + c), 0.5).pvalue)


def _rate(k: float, n: int) -> dict:
    lo, hi = wilson(k, n)
    return {"k": k, "n": n, "rate": (k / n) if n else math.nan, "ci": [lo, hi]}


def summarize_outcomes(outcomes, scheme) -> dict:
    """Counts, the scheme's rates and intervals for a list of outcome strings (``None`` = crashed episode)."""
    outcomes = list(outcomes)
    weights = scheme.weights
    valid = [o for o in outcomes if o in weights]
    unknown = [o for o in outcomes if o is not None and o not in weights]
    if unknown:
        raise ValueError(f"unknown outcomes {sorted(set(map(str, unknown)))}; expected {tuple(scheme.names)}")
    n = len(valid)
    counts = {o: valid.count(o) for o in scheme.names}
    scores = [weights[o] for o in valid]
    weighted = float(np.mean(scores)) if n else math.nan
    return {
        "n": n,
        "errors": len(outcomes) - n,
        "counts": counts,
        **{key: _rate(sum(counts[o] for o in counted), n) for key, counted in scheme.rates.items()},
        "weighted": {
            "score": weighted,
            "n": n,
            "ci": list(weighted_interval(scores)),
            "ci_method": "wilson-form score interval with the [0,1] variance bound (conservative)",
            "ci_bootstrap": list(bootstrap_interval(scores)),
        },
    }


def paired_mcnemar(a: dict, b: dict, scheme) -> dict:
    """Exact McNemar on success between two policies' episodes keyed by pairing key
    (:func:`pxp.core.results.pair_key`).

    ``a`` and ``b`` map a key (same cell/offset, view and seed) to an outcome; only keys present in
    both with a valid outcome count. Returns the discordant counts, n pairs and the p-value.
    """
    ok, win = scheme.weights, scheme.success
    keys = sorted(k for k in set(a) & set(b) if a[k] in ok and b[k] in ok)
    only_a = sum(1 for k in keys if a[k] == win and b[k] != win)
    only_b = sum(1 for k in keys if b[k] == win and a[k] != win)
    return {"pairs": len(keys), "only_a": only_a, "only_b": only_b, "p_value": mcnemar_exact(only_a, only_b)}


def all_paired_tests(by_policy: dict[str, dict], scheme, kind: dict | None = None) -> list[dict]:
    """McNemar for every pair of policies that share at least one paired episode (and, given ``kind``,
    policy → a value, only between policies of the same kind)."""
    tests = []
    for pa, pb in combinations(sorted(by_policy), 2):
        if kind is not None and kind.get(pa) != kind.get(pb):
            continue
        t = paired_mcnemar(by_policy[pa], by_policy[pb], scheme)
        if t["pairs"]:
            tests.append({"a": pa, "b": pb, **t})
    return tests


# ---------------------------------------------------------------- the one way a rate is written

def pct(rate: dict) -> str:
    """'54% [44–63] (n=100)' from a rate dict: a rate never appears without its interval and n."""
    if not rate or not rate.get("n"):
        return "n/a (n=0)"
    lo, hi = rate["ci"]
    return f"{100 * rate['rate']:.0f}% [{100 * lo:.0f}–{100 * hi:.0f}] (n={rate['n']})"


def wpct(w: dict) -> str:
    """'54% [44–63]' from a weighted-score dict."""
    if not w or not w.get("n") or w.get("score") is None or math.isnan(w["score"]):
        return "n/a"
    lo, hi = w["ci"]
    return f"{100 * w['score']:.0f}% [{100 * lo:.0f}–{100 * hi:.0f}]"
