"""Rules of the ``scheduler`` group: warm-up fraction, milestones, decay factors and the cosine floor.
"""

from __future__ import annotations

from omegaconf import DictConfig, ListConfig, OmegaConf

from experiments.validation.checks import is_number, require
from experiments.validation.registry import rule


@rule("scheduler")
def _check_warm_up(cfg: DictConfig) -> None:
    """One-cycle's warm-up is a fraction of the run strictly inside (0, 1)."""
    pct = OmegaConf.select(cfg, "scheduler.pct_start", default=0.5)
    require(isinstance(pct, (int, float)) and 0 < pct < 1, "scheduler.pct_start", pct,
            "the warm-up fraction must lie strictly between 0 and 1", "use e.g. scheduler.pct_start=0.25")


@rule("scheduler")
def _check_scheduler(cfg: DictConfig) -> None:
    """Milestones are fractions of the run; factors keep the rate positive and below its peak."""
    sched = cfg.get("scheduler")
    if not isinstance(sched, DictConfig):
        return
    if "milestones" in sched:
        m = list(sched.milestones) if isinstance(sched.milestones, ListConfig) else None
        ok = bool(m) and all(is_number(f) and 0 < f < 1 for f in m) and all(m[i] < m[i + 1] for i in range(len(m) - 1))
        require(ok, "scheduler.milestones", sched.milestones,
                "milestones are fractions of the run strictly between 0 and 1, in increasing order",
                "use e.g. scheduler.milestones=[0.5,0.75]")
    if "gamma" in sched:
        g = sched.gamma
        require(is_number(g) and 0 < g <= 1, "scheduler.gamma", g,
                "the rate is multiplied by gamma at each milestone, so it must lie in (0, 1]",
                "use e.g. scheduler.gamma=0.1")
    if "eta_min" in sched:
        eta, lr = sched.eta_min, OmegaConf.select(cfg, "optimizer.lr")
        require(is_number(eta) and 0 <= eta < lr, "scheduler.eta_min", eta,
                f"the cosine floor must lie in [0, optimizer.lr={lr})", "use e.g. scheduler.eta_min=0")
    if "div_factor" in sched:
        d = sched.div_factor
        require(is_number(d) and d >= 1, "scheduler.div_factor", d,
                "one-cycle warms up from optimizer.lr/div_factor, so a factor below 1 would start above the peak",
                "use e.g. scheduler.div_factor=25")
