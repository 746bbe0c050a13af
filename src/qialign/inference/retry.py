"""One automatic retry when a fit's diagnostics fail, matched to what failed.

When diagnostics fail and ``diagnostics.retry`` is true, the model is sampled once more (same
compiled model, seed + 1) with twice the tuning and, when the draws are set by the ESS target
(nutpie, ``draws_min`` < ``draws``), twice the most draws: a chain that mixes slowly gets longer
chains, a fast one still stops at the first checkpoint that passes. Fixed-length sampling (the
refits of ``propagation: draws``, pooled as chains of one trace) keeps its length.

Only a problem of the sampler's geometry (divergent transitions, low E-BFMI) also raises
target_accept to min(0.99, max(0.95, target_accept + 0.05)): smaller steps are what a divergence
needs, and they cost about twice the leapfrog steps per draw. R-hat or ESS just short of their
thresholds need more (and better adapted) draws, not smaller steps (Stan's advice: run longer).
"""

from __future__ import annotations

from qialign.inference.diagnostics import diagnose
from qialign.progress import say


def _retry_settings(s: dict, details: dict) -> dict:
    """Twice the tuning, twice the most draws when they are ESS-targeted, and, when the failed
    attempt's geometry did not pass (``details['geometry_ok']``, from ``diagnose``), target_accept
    = min(0.99, max(0.95, target_accept + 0.05))."""
    out = {**s, "tune": 2 * int(s["tune"])}
    if not details["geometry_ok"]:
        out["target_accept"] = min(0.99, max(0.95, float(s["target_accept"]) + 0.05))
    if s.get("engine") == "nutpie" and int(s.get("draws_min", s["draws"])) < int(s["draws"]):
        out["draws"] = 2 * int(s["draws"])
    return out


def _attempt(s: dict, idata, problems: list[str]) -> dict:
    """What one sampling did: its settings and the draws per chain it kept (the ESS target may
    stop before ``draws``)."""
    draws = int(idata["posterior"].sizes["draw"])
    return {"target_accept": s["target_accept"], "tune": s["tune"], "draws": draws, "problems": problems}


def sample_with_retry(sample, s: dict, th: dict, seed: int, label: str = "") -> dict:
    """``sample(settings, seed) -> (idata, compile_s, sample_s)``, diagnosed against thresholds
    ``th``, retried once (``_retry_settings``, seed + 1) if they fail and ``th['retry']``."""
    idata, compile_s, sample_s = sample(s, seed)
    ok, problems, details = diagnose(idata, th)
    say(f"{label}diagnostics pass" if ok else f"{label}diagnostics fail: {'; '.join(problems)}")
    attempts = [_attempt(s, idata, problems)]
    retried = False
    if not ok and th["retry"]:
        retried = True
        s = _retry_settings(s, details)
        idata, c2, t2 = sample(s, seed + 1)
        compile_s += c2
        sample_s += t2
        ok, problems, details = diagnose(idata, th)
        say(
            f"{label}retry: diagnostics pass"
            if ok
            else f"{label}retry: still failing, marked unreliable: {'; '.join(problems)}"
        )
        attempts.append(_attempt(s, idata, problems))
    details["attempts"] = attempts
    return {
        "idata": idata,
        "ok": ok,
        "problems": list(problems),
        "details": details,
        "retried": retried,
        "timings": {"compile_s": compile_s, "sample_s": sample_s},
        "sampler": s,
    }
