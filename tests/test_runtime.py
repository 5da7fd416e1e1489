"""bertforge.runtime: the allocator keeps freed pages; OpenMP spins only when asked for.

Each case runs in a fresh interpreter: both settings are process-wide and must be made
before the work (or before torch loads)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

FAULTS = """
import resource, sys
import torch
from bertforge.runtime import tune_allocator
tuned = tune_allocator() if sys.argv[1] == "tuned" else False
from bertforge.config import preset
from bertforge.model import BertForPreTraining
torch.manual_seed(0)
config = preset("tiny", vocab_size=8000, max_position_embeddings=64)
model = BertForPreTraining(config)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
ids = torch.randint(0, 8000, (32, 64))
positions = torch.randint(0, 64, (32, 20))
labels = torch.randint(0, 8000, (32, 20))
def step():
    out = model(ids, masked_positions=positions, labels=labels)
    out.loss.backward()
    opt.step()
    opt.zero_grad()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    step()
start = faults()
for _ in range(10):
    step()
print(int(tuned), faults() - start)
"""

SPIN = """
import os, sys
if sys.argv[1] == "torch-first":
    import torch
from bertforge.runtime import spin_openmp_threads
print(spin_openmp_threads(), os.environ.get("OMP_WAIT_POLICY"), os.environ.get("GOMP_SPINCOUNT"))
"""


def _run(code: str, arg: str, env: dict[str, str]) -> list[str]:
    out = subprocess.run([sys.executable, "-c", code, arg], env=env, capture_output=True,
                         text=True, timeout=120, check=True)
    return out.stdout.split()


def _env(**changes: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith("MALLOC_") and k.endswith("_"))}
    for key, value in changes.items():
        env.pop(key, None)
        if value is not None:
            env[key] = value
    return env


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_tuned_allocator_reuses_freed_pages() -> None:
    env = _env(OMP_NUM_THREADS="1")
    tuned, tuned_faults = map(int, _run(FAULTS, "tuned", env))
    if not tuned:
        pytest.skip("this C library has no mallopt (not glibc)")
    _, plain_faults = map(int, _run(FAULTS, "plain", env))
    # ten pre-training steps of a tiny BERT (vocabulary 8,000, batch 32 x 64): glibc
    # hands the large activations back to the kernel and maps and zeroes them again
    # (95,527 minor faults measured) ...
    assert plain_faults > 30_000
    # ... unless freed blocks stay in the heap for the next step (11,007 measured)
    assert tuned_faults < plain_faults / 4


def test_allocator_left_alone_when_the_user_tuned_it() -> None:
    env = _env(MALLOC_TRIM_THRESHOLD_="1000000")
    code = "from bertforge.runtime import tune_allocator; print(tune_allocator())"
    assert _run(code, "", env) == ["False"]


def test_spinning_only_before_torch_and_unless_the_user_chose() -> None:
    assert _run(SPIN, "", _env(OMP_WAIT_POLICY=None, GOMP_SPINCOUNT=None)) == [
        "True", "ACTIVE", "10000"]
    # too late once torch (and with it libgomp) has loaded: bertforge's PASSIVE stays
    assert _run(SPIN, "torch-first", _env(OMP_WAIT_POLICY=None, GOMP_SPINCOUNT=None)) == [
        "False", "PASSIVE", "None"]
    # the user's own policy wins
    assert _run(SPIN, "", _env(OMP_WAIT_POLICY="PASSIVE", GOMP_SPINCOUNT=None)) == [
        "False", "PASSIVE", "None"]
