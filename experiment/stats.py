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


def newcombe_paired(both: int, only_a: int, only_b: int, neither: int, z: float = Z95) -> tuple[float, float]:
    """95% interval for p_A − p_B from paired binary outcomes: Newcombe's (1998, Stat Med 17:2635) method 10,
    the square-and-add of the two Wilson intervals with his correlation correction phi (Fagerland, Lydersen &
    Laake's "Newcombe square-and-add" for the paired 2×2 table). No pairs gives (nan, nan)."""
    n = both + only_a + only_b + neither
    if n <= 0:
        return (math.nan, math.nan)
    p1, p2 = (both + only_a) / n, (both + only_b) / n
    l1, u1 = wilson(both + only_a, n, z)
    l2, u2 = wilson(both + only_b, n, z)
    margins = (both + only_a) * (only_b + neither) * (both + only_b) * (only_a + neither)
    cross = both * neither - only_a * only_b
    corrected = cross - n / 2 if cross > n / 2 else (0.0 if cross >= 0 else cross)
    phi = corrected / math.sqrt(margins) if margins else 0.0
    d = p1 - p2
    lower = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    upper = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return (max(-1.0, d - lower), min(1.0, d + upper))


# ---------------------------------------------------------------- replicates × positions

def _t_quantile(df: float) -> float:
    from scipy import stats as _st

    return float(_st.t.ppf(0.975, df)) if math.isfinite(df) else Z95


def _cell_table(records) -> tuple[np.ndarray, list, list]:
    """(replicate, cluster, value) records → the replicate × cluster table of cell means; clusters missing
    from some replicate are dropped (every replicate is evaluated on the same clusters)."""
    cells: dict[tuple, list] = {}
    for rep, cluster, value in records:
        cells.setdefault((rep, cluster), []).append(float(value))
    reps = sorted({r for r, _ in cells}, key=str)
    clusters = sorted({c for _, c in cells if all((r, c) in cells for r in reps)}, key=str)
    table = np.array([[np.mean(cells[(r, c)]) for c in clusters] for r in reps], dtype=float).reshape(len(reps), len(clusters))
    return table, reps, clusters


def crossed_mean(table) -> dict:
    """Mean of a replicates × clusters table of cell means with a 95% t interval under the crossed random-effects
    model y_rc = mu + a_r + b_c + e_rc (training seed r, position c; docs/evaluation.md, "Replicates").

    Var(mean) is estimated by (MS_rep + MS_cluster) / (K m) from the two-way ANOVA mean squares (conservative:
    it counts the residual term twice, as Owen's pigeonhole bootstrap does, and can never go negative), with
    Satterthwaite's degrees of freedom: with K = 3 replicates and a large seed effect they fall towards 2, and
    the interval widens accordingly. K = 1 is the one-way case (clusters only); one cluster, replicates only."""
    y = np.asarray(table, dtype=float)
    k, m = y.shape
    if y.size == 0:
        return {"estimate": math.nan, "se": math.nan, "df": math.nan, "ci": [math.nan, math.nan], "replicates": k, "clusters": m}
    grand = float(y.mean())
    parts = []  # (mean square / (K m), its degrees of freedom)
    if k > 1:
        parts.append((m * float(((y.mean(axis=1) - grand) ** 2).sum()) / (k - 1) / (k * m), k - 1))
    if m > 1:
        parts.append((k * float(((y.mean(axis=0) - grand) ** 2).sum()) / (m - 1) / (k * m), m - 1))
    var = sum(v for v, _ in parts)
    if not parts or var <= 0:
        return {"estimate": grand, "se": 0.0 if parts else math.nan, "df": math.nan,
                "ci": [grand, grand] if parts else [math.nan, math.nan], "replicates": k, "clusters": m}
    df = var ** 2 / sum(v ** 2 / d for v, d in parts)
    half = _t_quantile(df) * math.sqrt(var)
    return {"estimate": grand, "se": math.sqrt(var), "df": df, "ci": [grand - half, grand + half],
            "replicates": k, "clusters": m}


def pooled_difference(records) -> dict:
    """PARA − ACT (any A − B) success over replicates and positions: ``records`` are (replicate, cluster,
    a_success, b_success) of paired episodes. The interval is :func:`crossed_mean`'s on the per-cell
    differences (Newcombe's over the pooled pairs when every cell is the same, so there is no spread to
    estimate); ``pairs`` counts the episodes and ``a``/``b`` the pooled rates."""
    records = list(records)
    table, reps, clusters = _cell_table((r, c, a - b) for r, c, a, b in records)
    out = crossed_mean(table)
    kept = [(a, b) for r, c, a, b in records if c in set(clusters)]
    if kept and not out["se"] and all(v in (0.0, 1.0) for pair in kept for v in pair):
        # every cell the same: no spread to estimate, so the paired interval over the pooled pairs (not a point)
        both, only_a, only_b = (sum(1 for a, b in kept if (a, b) == ab) for ab in ((1, 1), (1, 0), (0, 1)))
        out["ci"] = list(newcombe_paired(both, only_a, only_b, len(kept) - both - only_a - only_b))
    out["ci"] = [max(-1.0, out["ci"][0]), min(1.0, out["ci"][1])]
    return {**out, "pairs": len(kept), "a": float(np.mean([a for a, _ in kept])) if kept else math.nan,
            "b": float(np.mean([b for _, b in kept])) if kept else math.nan}


def clustered_rate(records, z: float = Z95) -> dict:
    """A success rate over (replicate, cluster, success) records with a design-effect-adjusted Wilson interval:
    deff = the crossed model's Var(mean) / the binomial p(1 − p)/n (at least 1), Wilson on n / deff episodes.
    Not degenerate at 0 or 1, and the plain Wilson interval when episodes are independent; z becomes the t
    quantile of the crossed model's degrees of freedom when clustering widens it."""
    records = list(records)
    table, reps, clusters = _cell_table(records)
    kept = [y for r, c, y in records if c in set(clusters)]
    n = len(kept)
    if not n:
        return {"rate": math.nan, "n": 0, "clusters": 0, "replicates": 0, "deff": math.nan, "ci": [math.nan, math.nan]}
    p = float(np.mean(kept))
    crossed = crossed_mean(table)
    binomial = p * (1 - p) / n
    deff = max(1.0, crossed["se"] ** 2 / binomial) if binomial > 0 and math.isfinite(crossed["se"]) else 1.0
    df = crossed["df"] if deff > 1 else math.inf  # few replicates: their t quantile, as for the difference
    lo, hi = wilson(p * n / deff, n / deff, _t_quantile(df) if math.isfinite(df) else z)
    return {"rate": p, "n": n, "clusters": len(clusters), "replicates": len(reps), "deff": deff, "ci": [lo, hi]}


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
    both = sum(1 for k in keys if a[k] == win and b[k] == win)
    diff = (only_a - only_b) / len(keys) if keys else math.nan
    return {"pairs": len(keys), "only_a": only_a, "only_b": only_b, "p_value": mcnemar_exact(only_a, only_b),
            "diff": diff, "diff_ci": list(newcombe_paired(both, only_a, only_b, len(keys) - both - only_a - only_b))}


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
