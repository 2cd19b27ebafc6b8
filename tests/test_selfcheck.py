"""`vjepa2-selfcheck` (the interim `make demo`): runs offline, prints the plan and exits 0; failures exit 1."""

from __future__ import annotations

import json
import time

import numpy as np

from vjepa2_core.selfcheck import main, scene


def test_selfcheck_plans_and_passes_its_checks(capsys):
    start = time.perf_counter()
    rc = main(["--json", "--samples", "40", "--iterations", "3", "--device", "cpu"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    report = json.loads(out.out)
    assert report["ok"] and all(report["checks"].values())
    plan = report["plan"]
    assert np.asarray(plan["actions"]).shape == (2, 7) and len(plan["energy_history"]) == 3
    assert plan["samples_evaluated"] == 120 and np.isfinite(plan["energy"])
    assert time.perf_counter() - start < 60


def test_selfcheck_text_output(capsys):
    assert main(["--samples", "20", "--topk", "4", "--iterations", "1", "--horizon", "1", "--device", "cpu"]) == 0
    out = capsys.readouterr()
    assert "plan (dx dy dz" in out.out and "[ok] cached_matches_full_rollout" in out.out
    assert "vjepa2-selfcheck: OK" in out.err


def test_selfcheck_reports_a_bad_checkpoint(tmp_path, capsys):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    assert main(["--checkpoint", str(bad), "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "FAILED" in err and "broken.pt" in err


def test_generated_scenes_differ_where_the_block_moved():
    a, b = scene((20, 40)), scene((50, 30))
    assert a.dtype == np.uint8 and a.shape == (96, 96, 3)
    assert (a != b).any(axis=-1).sum() > 2 * 16 * 16 - 10
