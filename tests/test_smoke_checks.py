"""The GPU scripts' loss-curve checks (``benchmarks/smoke_checks.py``): what passes and what fails, since a check
that passes a broken run hides it on hardware CPU tests cannot reach."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import smoke_checks

REF = [6.0 - 0.05 * i for i in range(50)]


def off_by(gaps: dict[int, float]) -> list[float]:
    """``REF`` with the 1-based steps in ``gaps`` off by that relative gap."""
    return [x * (1 + gaps.get(i + 1, 0.0)) for i, x in enumerate(REF)]


def test_a_nan_at_any_step_fails_the_curve_check():
    assert smoke_checks.curve_parity("x", off_by({7: 1e-3}), REF, 2e-2)["status"] == "PASS"
    for step in (1, 30):
        curve = REF.copy()
        curve[step - 1] = math.nan
        assert smoke_checks.curve_parity("x", curve, REF, 2e-2)["status"] == "FAIL", step


def test_the_moe_check_holds_its_first_steps_to_fp32_and_reports_the_rest():
    """A gap past ``MOE_STEPS`` (routing's chance) passes and is reported beside the twin's; a gap within them, or
    a NaN anywhere, fails."""
    later = smoke_checks.MOE_STEPS + 5
    twin = off_by({later: 3e-2})
    ok = smoke_checks.moe_parity("x", off_by({later: 5e-2}), REF, twin)
    assert ok["status"] == "PASS" and "twin: max rel gap 3.00e-02" in ok["figure"]
    assert ok["twin_later_max_rel_gap"] == pytest.approx(ok["max_rel_gap"] * 3 / 5)
    early = smoke_checks.moe_parity("x", off_by({smoke_checks.MOE_STEPS: 1e-3}), REF, twin)
    assert early["status"] == "FAIL"
    nan = REF.copy()
    nan[-1] = math.nan
    assert smoke_checks.moe_parity("x", nan, REF, twin)["status"] == "FAIL"
