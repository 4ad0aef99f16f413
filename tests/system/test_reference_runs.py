"""The pictures the CLI writes, checked against short reference runs with tolerances that hold on any CPU,
and byte for byte where bytes can be promised: the same run twice on one machine."""
import hashlib

import numpy as np
import pytest

from reference import OTHER_CPUS, RUNS, differences, load_reference, run



@pytest.mark.parametrize("name", sorted(RUNS))
def test_a_short_run_matches_the_reference_within_tolerance(name, tmp_path):
    assert differences(name, run(name, tmp_path / name), load_reference()) == []


def test_the_same_run_twice_on_one_machine_is_byte_identical(tmp_path):
    digests = set()
    for attempt in ("first", "second"):
        arrays = run("classes", tmp_path / attempt)
        digests.add(hashlib.sha256(b"".join(np.ascontiguousarray(arrays[k]).tobytes() for k in sorted(arrays))).digest())
    assert len(digests) == 1


def test_the_comparison_catches_a_changed_picture(tmp_path):
    reference = load_reference()
    arrays = {"images": reference["classes/images"].copy(), "scores": reference["classes/scores"],
              "probabilities": reference["classes/probabilities"]}
    assert differences("classes", arrays, reference) == []
    arrays["images"][:2] = 255 - arrays["images"][:2]  # two of ten classes drawn differently
    arrays["scores"] = arrays["scores"] * 1.01
    problems = differences("classes", arrays, reference)
    assert len(problems) == 2 and "pixels within" in problems[0] and "largest magnitude" in problems[1]


@pytest.mark.parametrize("cpu", ["scalar kernels, 1 thread",
                                 pytest.param("avx2 kernels, 2 threads", marks=pytest.mark.slow)])
def test_the_tolerance_holds_on_a_simulated_other_cpu(cpu, tmp_path):
    reference = load_reference()
    problems = [line for name in sorted(RUNS)
                for line in differences(name, run(name, tmp_path / name, env=OTHER_CPUS[cpu]), reference)]
    assert problems == []
