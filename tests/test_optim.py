"""Optimizers against the published update rules, written out element by element here,
over several steps; state round trips; no allocation per step; bad hyper-parameters;
agreement with PyTorch. Every test runs on each available backend (tests/conftest.py)."""
import math
import tracemalloc

import numpy as np
import pytest

import minigan as mg

STEPS = 6


def reference_sgd(p, grads, lr, momentum):
    p, buf = list(p), [0.0] * len(p)
    for g in grads:
        for i in range(len(p)):
            buf[i] = momentum * buf[i] + g[i] if momentum else g[i]
            p[i] -= lr * buf[i]
    return p


def reference_adam(p, grads, lr, beta1, beta2, eps):
    p, m, v = list(p), [0.0] * len(p), [0.0] * len(p)
    for t, g in enumerate(grads, start=1):
        for i in range(len(p)):
            m[i] = beta1 * m[i] + (1 - beta1) * g[i]
            v[i] = beta2 * v[i] + (1 - beta2) * g[i] ** 2
            m_hat, v_hat = m[i] / (1 - beta1 ** t), v[i] / (1 - beta2 ** t)
            p[i] -= lr * m_hat / (math.sqrt(v_hat) + eps)
    return p


def reference_rmsprop(p, grads, lr, alpha, eps):
    p, v = list(p), [0.0] * len(p)
    for g in grads:
        for i in range(len(p)):
            v[i] = alpha * v[i] + (1 - alpha) * g[i] ** 2
            p[i] -= lr * g[i] / (math.sqrt(v[i]) + eps)
    return p


OPTIMIZERS = {
    "sgd": (lambda m: mg.SGD(m, lr=0.1), lambda p, g: reference_sgd(p, g, 0.1, 0.0)),
    "sgd_momentum": (lambda m: mg.SGD(m, lr=0.05, momentum=0.9),
                     lambda p, g: reference_sgd(p, g, 0.05, 0.9)),
    "adam": (lambda m: mg.Adam(m, lr=2e-2, betas=(0.5, 0.999), eps=1e-8),
             lambda p, g: reference_adam(p, g, 2e-2, 0.5, 0.999, 1e-8)),
    "adam_large_eps": (lambda m: mg.Adam(m, lr=1e-1, betas=(0.9, 0.99), eps=0.3),
                       lambda p, g: reference_adam(p, g, 1e-1, 0.9, 0.99, 0.3)),
    "rmsprop": (lambda m: mg.RMSProp(m, lr=1e-2, alpha=0.9, eps=1e-8),
                lambda p, g: reference_rmsprop(p, g, 1e-2, 0.9, 1e-8)),
}


def model_and_gradients(backend, seed=0):
    """A small model (initialised from a fresh copy of the backend's seed) and gradients."""
    fresh = mg.get_backend(backend.name, backend.dtype, seed=backend.seed)
    model = mg.Sequential([mg.Dense(3, 4), mg.Tanh(), mg.Dense(4, 2)], backend=fresh)
    rng = np.random.default_rng(seed)
    grads = [rng.standard_normal(model.num_params) for _ in range(STEPS)]
    grads[2][:5] = 0.0  # zero gradients must be handled too
    return model, grads


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_update_matches_published_rule(backend, name):
    """Six steps (one with zero gradients) give the published rule's parameters, to 1e-12."""
    make, reference = OPTIMIZERS[name]
    model, grads = model_and_gradients(backend)
    start = backend.to_numpy(model.params).copy()
    optimizer = make(model)
    for g in grads:
        model.grads[...] = backend.asarray(g)
        optimizer.step()
    expected = reference(start.tolist(), [g.tolist() for g in grads])
    np.testing.assert_allclose(backend.to_numpy(model.params), expected, rtol=1e-12, atol=1e-14)
    assert optimizer.steps == STEPS


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_state_round_trip_resumes_exactly(backend, name):
    """Saving model and optimizer state after 3 steps and resuming gives the same bits as 6 steps."""
    make, _ = OPTIMIZERS[name]
    straight, grads = model_and_gradients(backend)
    optimizer = make(straight)
    for g in grads:
        straight.grads[...] = backend.asarray(g)
        optimizer.step()

    first, _ = model_and_gradients(backend)
    first_optimizer = make(first)
    for g in grads[:3]:
        first.grads[...] = backend.asarray(g)
        first_optimizer.step()
    resumed, _ = model_and_gradients(mg.get_backend(backend.name, "float64", seed=5))
    resumed.load_state_dict(first.state_dict())
    resumed_optimizer = make(resumed)
    resumed_optimizer.load_state_dict(first_optimizer.state_dict())
    for g in grads[3:]:
        resumed.grads[...] = backend.asarray(g)
        resumed_optimizer.step()
    assert np.array_equal(backend.to_numpy(resumed.params), backend.to_numpy(straight.params))


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_step_allocates_no_temporaries(backend32, name):
    """A step allocates (almost) no host memory, and on CuPy takes nothing from the device pool."""
    backend = backend32
    model = mg.Sequential([mg.Dense(256, 512), mg.ReLU(), mg.Dense(512, 256)], backend=backend)
    optimizer = OPTIMIZERS[name][0](model)
    model.grads[...] = backend.standard_normal(model.grads.shape)
    optimizer.step()  # the first step may set things up (CuPy compiles the fused kernel)
    backend.synchronize()
    tracemalloc.start()
    optimizer.step()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 0.01 * model.params.nbytes, f"step allocated {peak} bytes"
    if backend.name == "cupy":  # device temporaries would come from CuPy's memory pool
        requests = []

        class PoolRequests(backend.xp.cuda.MemoryHook):
            name = "minigan_test_pool_requests"

            def malloc_preprocess(self, **kwargs):
                requests.append(kwargs["size"])

        with PoolRequests():
            optimizer.step()
            backend.synchronize()
        assert requests == [], f"step took {requests} bytes from the device memory pool"


def test_updates_stay_float32(backend32):
    """Parameters and optimizer state stay float32 on a float32 backend."""
    backend = backend32
    for name, (make, _) in OPTIMIZERS.items():
        model, grads = model_and_gradients(backend)
        optimizer = make(model)
        model.grads[...] = backend.asarray(grads[0])
        optimizer.step()
        assert model.params.dtype == np.float32, name
        assert all(getattr(optimizer, s).dtype == np.float32 for s in optimizer.state_names)


@pytest.mark.parametrize("make, words", [
    (lambda m: mg.SGD(m, lr=0), "lr must be in"),
    (lambda m: mg.SGD(m, lr=float("nan")), "lr must be in"),
    (lambda m: mg.SGD(m, lr=0.1, momentum=1.0), "momentum must be in"),
    (lambda m: mg.Adam(m, lr=-1e-3), "lr must be in"),
    (lambda m: mg.Adam(m, betas=(0.5, 1.0)), r"betas\[1\] must be in"),
    (lambda m: mg.Adam(m, betas=(-0.1, 0.9)), r"betas\[0\] must be in"),
    (lambda m: mg.Adam(m, eps=-1.0), "eps must be in"),
    (lambda m: mg.RMSProp(m, alpha=1.5), "alpha must be in"),
])
def test_bad_hyper_parameters(backend, make, words):
    """Each out-of-range hyper-parameter is refused with a message naming it."""
    model = mg.Sequential([mg.Dense(2, 2)], backend=backend)
    with pytest.raises(ValueError, match=words):
        make(model)


def test_load_state_dict_errors(backend):
    """A state without a buffer, or with a misshapen one, is refused with a message naming it."""
    model = mg.Sequential([mg.Dense(2, 2)], backend=backend)
    adam = mg.Adam(model)
    with pytest.raises(ValueError, match="missing 'v_scaled'"):
        adam.load_state_dict({"m_scaled": np.zeros(6), "steps": 1})
    with pytest.raises(ValueError, match="has shape"):
        adam.load_state_dict({"m": np.zeros(5), "v": np.zeros(6), "steps": 1})


def test_adam_accepts_torch_convention_moments(backend):
    """State saved as torch's m and v (e.g. by earlier minigan checkpoints) resumes the same run."""
    straight, grads = model_and_gradients(backend)
    adam = mg.Adam(straight, lr=2e-2, betas=(0.8, 0.99))
    for g in grads:
        straight.grads[...] = backend.asarray(g)
        adam.step()
    first, _ = model_and_gradients(backend)
    first_adam = mg.Adam(first, lr=2e-2, betas=(0.8, 0.99))
    for g in grads[:3]:
        first.grads[...] = backend.asarray(g)
        first_adam.step()
    m, v = (backend.to_numpy(moment) for moment in first_adam.moments())  # saved: host arrays
    resumed, _ = model_and_gradients(mg.get_backend(backend.name, "float64", seed=5))
    resumed.load_state_dict(first.state_dict())
    resumed_adam = mg.Adam(resumed, lr=2e-2, betas=(0.8, 0.99))
    resumed_adam.load_state_dict({"m": m, "v": v, "steps": np.array(3)})
    for g in grads[3:]:
        resumed.grads[...] = backend.asarray(g)
        resumed_adam.step()
    np.testing.assert_allclose(backend.to_numpy(resumed.params), backend.to_numpy(straight.params),
                               rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("name", ["sgd_momentum", "adam", "rmsprop"])
def test_matches_torch(backend, name):
    """Six steps give torch.optim's parameters (1e-12), and Adam's buffers torch's moments."""
    torch = pytest.importorskip("torch")
    model, grads = model_and_gradients(backend)
    tp = torch.tensor(backend.to_numpy(model.params).copy(), requires_grad=True)
    torch_optimizer = {"sgd_momentum": lambda: torch.optim.SGD([tp], lr=0.05, momentum=0.9),
                       "adam": lambda: torch.optim.Adam([tp], lr=2e-2, betas=(0.5, 0.999), eps=1e-8),
                       "rmsprop": lambda: torch.optim.RMSprop([tp], lr=1e-2, alpha=0.9, eps=1e-8)}[name]()
    optimizer = OPTIMIZERS[name][0](model)
    for g in grads:
        model.grads[...] = backend.asarray(g)
        optimizer.step()
        tp.grad = torch.tensor(g)
        torch_optimizer.step()
    np.testing.assert_allclose(backend.to_numpy(model.params), tp.detach().numpy(), rtol=1e-12, atol=1e-14)
    if name == "adam":  # the rescaled buffers give back torch's moments
        state = torch_optimizer.state[tp]
        for ours, theirs in zip(optimizer.moments(), (state["exp_avg"], state["exp_avg_sq"])):
            np.testing.assert_allclose(backend.to_numpy(ours), theirs.numpy(), rtol=1e-13, atol=1e-300)


@pytest.mark.skipif(not mg.cuda_available(), reason="needs CuPy and a CUDA device")
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_fused_kernel_matches_the_array_path(name, dtype):
    """Bit for bit, state included (SGD without momentum leaves its buffer untouched on both)."""
    make, _ = OPTIMIZERS[name]
    backend = mg.get_backend("cupy", dtype, seed=0)
    fused_model, grads = model_and_gradients(backend)
    plain_model, _ = model_and_gradients(backend)
    fused, plain = make(fused_model), make(plain_model)
    plain.fused = False
    assert fused.fused
    for g in grads:
        fused_model.grads[...] = backend.asarray(g)
        plain_model.grads[...] = backend.asarray(g)
        fused.step()
        plain.step()
    np.testing.assert_array_equal(backend.to_numpy(fused_model.params), backend.to_numpy(plain_model.params))
    for state in fused.state_names:
        np.testing.assert_array_equal(backend.to_numpy(getattr(fused, state)),
                                      backend.to_numpy(getattr(plain, state)), err_msg=state)
