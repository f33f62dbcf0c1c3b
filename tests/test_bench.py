"""The benchmark program runs end to end on a tiny model and writes consistent JSON.

Speed targets live in the benchmark's output, not here: CPU timings in tests are noise.
"""

import json

import numpy as np
import pytest

from eejax import bench


def test_oracle_exits_hit_the_requested_fractions_exactly():
    exits = bench.oracle_exits([0.5, 0.25, 0.15, 0.1], 512, seed=0)
    np.testing.assert_array_equal(np.bincount(exits), [256, 128, 76, 52])


@pytest.mark.slow
def test_bench_writes_every_engine(tmp_path):
    path = tmp_path / "bench.json"
    report = bench.main(["--input-shape", "8,8,1", "--width", "4", "--num-exits", "3",
                         "--batch-size", "24", "--splits", "0.5,0.3,0.2", "0,0,1",
                         "--repeats", "1", "--stream-batches", "2", "--json", str(path)])
    saved = json.loads(path.read_text())
    assert saved["engines"].keys() == {"dense", "masked", "compact", "stream"}
    for split in report["splits"]:
        costs = np.cumsum(np.add(report["stage_flops"], report["head_flops"]))
        exits = bench.oracle_exits(split["exit_fractions"], 24, seed=0)
        assert split["ideal_speedup"] == pytest.approx(costs[-1] / costs[exits].mean())
        for result in split["engines"].values():
            assert result["throughput"] > 0
            assert result["efficiency"] == pytest.approx(
                result["speedup_vs_dense"] / result["ideal_speedup"])
    assert report["splits"][1]["ideal_speedup"] == pytest.approx(1.0)  # nobody exits early


@pytest.mark.slow
def test_bench_on_a_trained_model_with_calibrated_thresholds():
    """--trained: thresholds calibrated on the validation digits; the ideals follow the exits the
    engines really took, and every engine took the same ones."""
    report = bench.main(["--trained", "3", "--width", "4", "--num-exits", "3", "--batch-size",
                         "32", "--splits", "0.5,0.3,0.2", "--repeats", "1",
                         "--stream-batches", "2"])
    assert report["workload"].startswith("trained 3 steps")
    split = report["splits"][0]
    fractions = [r["measured_exit_fractions"] for r in split["engines"].values()]
    assert fractions[0] == fractions[1] == fractions[2]  # dense, masked, compact: one batch
    assert sum(split["measured_exit_fractions"]) == pytest.approx(1.0)
    assert split["ideal_speedup"] >= 1.0
