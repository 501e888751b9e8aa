"""Parameter importances of a sweep (Optuna's fANOVA) from every trial that reached a common rung.

An ASHA sweep completes few trials (most are stopped early), so importances over completed trials alone are
rarely computable. Every trial, stopped or not, reports its objective after each epoch: at the deepest epoch
(rung) that enough trials reached, their values there are comparable, and fANOVA runs on those.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MIN_TRIALS = 8  # below this fANOVA's forest fits noise, and importances of 0 or 1 mean nothing


@dataclass(frozen=True)
class Importances:
    values: dict[str, float]  # parameter -> importance, largest first (empty: not computed)
    rung: int | None  # the epoch the values were compared at
    trials: int  # how many trials reached it
    note: str  # why there are none, or which parameters never varied


def rung_importances(storage: Path, name: str, direction: str, minimum: int = MIN_TRIALS) -> Importances:
    """fANOVA over the objective at the deepest epoch that at least `minimum` trials (completed or stopped early)
    reported; parameters that never varied among them are left out (fANOVA would give them 0, which reads as
    'does not matter' when it was never tried)."""
    import optuna

    study = optuna.load_study(study_name=name, storage=f"sqlite:///{storage}")
    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    trials = [t for t in study.trials if t.state in done and t.intermediate_values]
    reached: dict[int, int] = {}
    for t in trials:
        for step in t.intermediate_values:
            reached[step] = reached.get(step, 0) + 1
    rungs = [step for step, n in reached.items() if n >= minimum]
    if not rungs:
        most = max(reached.values(), default=0)
        return Importances({}, None, most, f"Not computed: fANOVA needs {minimum} trials at a common epoch; the most "
                                           f"that reached any one epoch is {most}.")
    rung = max(rungs)
    at = [t for t in trials if rung in t.intermediate_values]
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # "A new study created in memory" is not news here
    proxy = optuna.create_study(direction=direction)
    for t in at:  # the value at the rung stands in for the objective
        proxy.add_trial(optuna.trial.create_trial(params=t.params, distributions=t.distributions, value=t.intermediate_values[rung]))
    seen: dict[str, set[str]] = {}
    for t in at:
        for k, v in t.params.items():
            seen.setdefault(k, set()).add(repr(v))
    # fANOVA needs every trial to have every parameter: a family's own parameters (sampled only for its trials)
    # are left out, and the family itself stands for them.
    shared = [k for k in seen if all(k in t.params for t in at)]
    own = sorted(k for k in seen if k not in shared)
    fixed = sorted(k for k in shared if len(seen[k]) == 1)
    varied = [k for k in shared if k not in fixed]
    notes = [f"Never varied among these trials (no importance): {', '.join(fixed)}." if fixed else "",
             f"Only some trials have (a family's own; its family stands for them): {', '.join(own)}." if own else ""]
    note = " ".join(n for n in notes if n)
    if not varied:
        return Importances({}, rung, len(at), "Not computed: no parameter varied among the trials at that epoch.")
    try:
        values = optuna.importance.get_param_importances(proxy, params=varied, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    except (ValueError, RuntimeError) as exc:
        return Importances({}, rung, len(at), f"Not available: {str(exc)[:120]}")
    return Importances(dict(values), rung, len(at), note)
