"""GAN objectives in isolation (values against the papers' formulas, gradients against
central differences), their paper defaults, weight clipping, critic steps and packing.
Every test runs on each available backend; the Hypothesis tests take it as a parameter
(`BACKENDS`), since Hypothesis refuses function-scoped fixtures."""
import numpy as np
import pytest
from conftest import BACKENDS
from hypothesis import given
from hypothesis import strategies as st

import minigan as mg
from minigan.gradcheck import compare, numerical_gradient
from minigan.objectives import OBJECTIVES

TERMS = ("discriminator_real", "discriminator_fake", "generator")
FORMULAS = {  # (D real term, D fake term, G term) as functions of the host logits
    "non_saturating": (lambda x: np.mean(np.logaddexp(0, -x)), lambda x: np.mean(np.logaddexp(0, x)),
                       lambda x: np.mean(np.logaddexp(0, -x))),
    "minimax": (lambda x: np.mean(np.logaddexp(0, -x)), lambda x: np.mean(np.logaddexp(0, x)),
                lambda x: -np.mean(np.logaddexp(0, x))),
    "lsgan": (lambda x: 0.5 * np.mean((x - 1) ** 2), lambda x: 0.5 * np.mean(x ** 2),
              lambda x: 0.5 * np.mean((x - 1) ** 2)),
    "hinge": (lambda x: np.mean(np.maximum(0, 1 - x)), lambda x: np.mean(np.maximum(0, 1 + x)),
              lambda x: -np.mean(x)),
    "wgan": (lambda x: -np.mean(x), lambda x: np.mean(x), lambda x: -np.mean(x)),
    "wgan-gp": (lambda x: -np.mean(x), lambda x: np.mean(x), lambda x: -np.mean(x)),
}


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize("name", sorted(OBJECTIVES))
@given(batch=st.integers(1, 16), seed=st.integers(0, 2**16))
def test_terms_match_formulas_and_gradients(backend_name, name, batch, seed):
    """Each term's value is its formula's; its gradient matches central differences."""
    be = mg.get_backend(backend_name, "float64")
    objective = OBJECTIVES[name]()
    host = np.random.default_rng(seed).uniform(-3, 3, (batch, 1))
    host[np.abs(np.abs(host) - 1) < 1e-2] += 0.05  # off the hinge's kinks at +-1
    logits = be.asarray(host)
    for term, formula in zip(TERMS, FORMULAS[name]):
        value, grad = getattr(objective, term)(logits)
        assert float(value) == pytest.approx(formula(host), rel=1e-12, abs=1e-15), term
        numeric = numerical_gradient(lambda: formula(be.to_numpy(logits)), logits)
        assert compare(term, grad, numeric).passed(), term


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize("name", sorted(OBJECTIVES))
@given(n_real=st.integers(1, 9), n_fake=st.integers(1, 9), seed=st.integers(0, 2**16),
       smoothing=st.sampled_from([0.0, 0.1]))
def test_concatenated_discriminator_loss(backend_name, name, n_real, n_fake, seed, smoothing):
    """`discriminator` on [real; fake] logits: the two terms' formulas, their gradient,
    and the summaries of each half (the BCE objectives compute these in one fused pass)."""
    be = mg.get_backend(backend_name, "float64")
    options = {"label_smoothing": smoothing} if name in ("non_saturating", "minimax") else {}
    objective = OBJECTIVES[name](**options)
    host = np.random.default_rng(seed).uniform(-3, 3, (n_real + n_fake, 1))
    host[np.abs(np.abs(host) - 1) < 1e-2] += 0.05  # off the hinge's kinks at +-1
    logits = be.asarray(host)
    real_term, fake_term, _ = FORMULAS[name]
    target = 1.0 - smoothing

    def formula():
        both = be.to_numpy(logits)
        real, fake = both[:n_real], both[n_real:]
        if options:  # BCE against the smoothed target t: softplus(x) - t x
            return np.mean(np.logaddexp(0, real) - target * real) + fake_term(fake)
        return real_term(real) + fake_term(fake)

    loss, grad, d_real, d_fake = objective.discriminator(logits, n_real)
    assert loss == pytest.approx(formula(), rel=1e-12, abs=1e-15)
    assert grad.shape == logits.shape
    assert compare("L_D", grad, numerical_gradient(formula, logits)).passed()
    assert d_real == pytest.approx(objective.summary(logits[:n_real]), rel=1e-12)
    assert d_fake == pytest.approx(objective.summary(logits[n_real:]), rel=1e-12)


@pytest.mark.parametrize("name, optimizer, lr, d_steps", [
    ("non_saturating", mg.Adam, 2e-4, 1), ("lsgan", mg.Adam, 2e-4, 1), ("hinge", mg.Adam, 2e-4, 1),
    ("wgan", mg.RMSProp, 5e-5, 5), ("wgan-gp", mg.Adam, 1e-4, 5),
])
def test_paper_defaults(backend32, name, optimizer, lr, d_steps):
    """Without optimizers or d_steps, each loss gets its paper's optimizer, rate and critic steps."""
    be = backend32
    G = mg.Sequential([mg.Dense(2, 3)], backend=be)
    D = mg.Sequential([mg.Dense(3, 4), mg.ReLU(), mg.Dense(4, 1)], backend=be)
    gan = mg.GAN(G, D, loss=name)
    assert type(gan.d_opt) is optimizer and type(gan.g_opt) is optimizer
    assert gan.d_opt.lr == lr and gan.d_steps == d_steps
    if name == "wgan-gp":
        assert (gan.d_opt.beta1, gan.d_opt.beta2) == (0.5, 0.9) and gan.objective.gp_weight == 10.0
    if name == "wgan":
        assert gan.objective.clip_value == 0.01


def counting_gan(backend_name, loss, d_steps=None, pack=1, **options):
    """A GAN (G: 2 -> 3, D: 3 * pack -> 1) on a float64 backend seeded with 0, D's weights
    scaled by 50."""
    be = mg.get_backend(backend_name, "float64", seed=0)
    G = mg.Sequential([mg.Dense(2, 8), mg.ReLU(), mg.Dense(8, 3)], backend=be)
    D = mg.Sequential([mg.Dense(3 * pack, 8), mg.LeakyReLU(0.2), mg.Dense(8, 1)], backend=be)
    gan = mg.GAN(G, D, loss=loss, d_steps=d_steps, pack=pack, **options)
    gan.d_opt.params[...] *= 50  # weights well outside any clipping range
    return gan


def test_wgan_clips_every_critic_parameter_after_each_critic_step(backend_name):
    """Every critic step ends with D's parameters clipped to +-clip_value; G is never clipped."""
    gan = counting_gan(backend_name, "wgan", clip_value=0.05)
    backend = gan.backend

    def largest(array):  # max |array| on the host
        return float(np.abs(backend.to_numpy(array)).max())

    clipped_after = []
    original = gan.objective.after_discriminator_step

    def record(D):
        original(D)
        clipped_after.append(largest(D.params))

    gan.objective.after_discriminator_step = record
    generator_before = gan.generator.params.copy()
    gan.train_step([backend.asarray(np.ones((4, 3)))] * 5)
    assert clipped_after == [0.05] * 5
    assert largest(gan.discriminator.params) <= 0.05
    assert largest(generator_before) > 0.05  # the generator is never clipped
    assert largest(gan.generator.params) > 0.05


def test_critic_steps_and_fresh_batches(backend_name):
    """wgan-gp: five critic steps, each on its own real batch, then one generator step."""
    gan = counting_gan(backend_name, "wgan-gp")
    backend = gan.backend
    seen = []  # host copies of every discriminator input
    original_forward = gan.discriminator.forward
    gan.discriminator.forward = lambda x: (seen.append(backend.to_numpy(x).copy()), original_forward(x))[1]
    reals = [backend.asarray(np.full((4, 3), float(i))) for i in range(5)]
    gan.train_step(reals)
    # Per critic step: the [real; fake] batch, then the penalty's forward on the
    # interpolates; then one forward in the generator step.
    assert [x.shape[0] for x in seen] == [8, 4] * 5 + [4]
    assert [float(x.flat[0]) for x in seen[0:10:2]] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert all(np.all(x[:4] == x.flat[0]) for x in seen[0:10:2])  # each step's own real batch


def test_packing_shapes(backend_name):
    """pack=3: D reads (N / 3, 9); a batch not divisible by 3 is refused; sampling is unpacked."""
    gan = counting_gan(backend_name, "non_saturating", pack=3)
    shapes = []
    original_forward = gan.discriminator.forward
    gan.discriminator.forward = lambda x: (shapes.append(x.shape), original_forward(x))[1]
    real = gan.backend.asarray(np.arange(18.0).reshape(6, 3))
    gan.train_step(real)
    assert shapes == [(4, 9), (2, 9)]  # [real; fake] in the D step, fake in the G step
    with pytest.raises(ValueError, match="batch size 5 is not a multiple of pack=3"):
        gan.train_step(real[:5])
    assert gan.sample(7).shape == (7, 3)  # sampling is unaffected by packing


def test_summaries(backend):
    """The BCE objectives report the mean probability, the critics the mean score."""
    host = np.array([[0.0], [2.0], [-2.0], [4.0]])
    logits = backend.asarray(host)
    assert OBJECTIVES["non_saturating"]().summary(logits) == pytest.approx(np.mean(1 / (1 + np.exp(-host))))
    assert OBJECTIVES["wgan"]().summary(logits) == pytest.approx(1.0)


@pytest.mark.parametrize("loss, options, words", [
    ("wgan", {"clip_value": 0}, "clip_value must be positive"),
    ("wgan-gp", {"gp_weight": -1}, "gp_weight must be positive"),
    ("hinge", {"gp_weight": 1}, "takes no options"),
])
def test_bad_loss_options(backend_name, loss, options, words):
    """Out-of-range or foreign loss options are refused with a message naming them."""
    with pytest.raises(ValueError, match=words):
        counting_gan(backend_name, loss, **options)
