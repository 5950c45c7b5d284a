"""Shared fixtures: a `backend` parametrised over every available array backend, and
the Hypothesis profiles ("ci" is deterministic and is selected by $CI or
$HYPOTHESIS_PROFILE)."""
import os

import pytest
from hypothesis import HealthCheck, settings

import minigan as mg

settings.register_profile("dev", deadline=None, max_examples=30,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", deadline=None, max_examples=30, derandomize=True,
                          print_blob=True, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

BACKENDS = [
    "numpy",
    pytest.param("cupy", marks=pytest.mark.skipif(not mg.cuda_available(),
                                                  reason="needs CuPy and a CUDA device")),
]


@pytest.fixture(params=BACKENDS)
def backend_name(request):
    """Every backend this machine can run: numpy always, cupy with a CUDA device."""
    return request.param


@pytest.fixture
def backend(backend_name):
    """A float64 backend (gradient checks need float64)."""
    return mg.get_backend(backend_name, dtype="float64", seed=0)


@pytest.fixture
def backend32(backend_name):
    """A float32 backend, the training default."""
    return mg.get_backend(backend_name, dtype="float32", seed=0)
