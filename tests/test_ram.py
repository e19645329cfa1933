"""The RAM: its rollout's shapes and conventions and its config checks (which loss term
reaches which parameters: test_ram_routing.py)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from ramlab.errors import RamlabError
from ramlab.evaluate import split_randomness
from ramlab.models.ram import RAM, RAMConfig
from ramlab.models.registry import build_model

IMAGE_SIZE = (20, 24)  # (H, W), non-square on purpose
SMALL = RAMConfig(
    glimpses=4,
    glimpse_size=4,
    scales=2,
    glimpse_hidden=8,
    location_hidden=6,
    hidden=16,
    reward="sparse+infogain",
)


def make_ram(**changes) -> RAM:
    torch.manual_seed(0)
    return RAM(config=dataclasses.replace(SMALL, **changes), image_size=IMAGE_SIZE, num_classes=10)


def images(batch: int = 5, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 1, *IMAGE_SIZE, generator=torch.Generator().manual_seed(seed))


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- the rollout ----------------------------------------------------------------------------


@pytest.mark.parametrize("core", ["rnn", "lstm"])
@pytest.mark.parametrize("sample", [True, False])
def test_rollout_shapes_and_conventions(core: str, sample: bool) -> None:
    ram = make_ram(core=core)
    rollout = ram.rollout(images(), sample=sample, generator=gen())
    assert rollout.locations.shape == (5, 4, 2)
    assert rollout.log_probs.shape == (5, 4)
    assert rollout.baselines.shape == (5, 4)
    assert rollout.step_logits.shape == (5, 4, 10)
    assert rollout.entropy.shape == (5, 4)
    assert rollout.acted.tolist() == [False, True, True, True]
    assert rollout.image_size == IMAGE_SIZE
    assert rollout.locations.abs().max() <= 1.0
    # The first location is not the policy's: no log-probability, no entropy.
    assert torch.equal(rollout.log_probs[:, 0], torch.zeros(5))
    assert torch.equal(rollout.entropy[:, 0], torch.zeros(5))
    if sample:
        assert (rollout.log_probs[:, 1:] != 0).all()
    else:
        assert torch.equal(rollout.log_probs, torch.zeros(5, 4))
    for tensor in (rollout.locations, rollout.log_probs, rollout.baselines, rollout.step_logits):
        assert torch.isfinite(tensor).all()

    out = ram(images(), sample=sample, generator=gen())
    assert out.step_logits.shape == (5, 4, 10)
    torch.testing.assert_close(out.logits, out.step_logits[:, -1])


def test_rollout_indices_line_up() -> None:
    """Index t is glimpse t: l_t was drawn from the policy on h_{t-1}, b_t = baseline(h_{t-1}),
    step_logits[:, t] = classifier(h_t). The policy's inputs are the states h_0..h_{T-2}."""
    std = 0.1
    ram = make_ram(std=std)
    states = []
    ram.policy.register_forward_hook(lambda module, args, output: states.append(args[0].detach()))
    rollout = ram.rollout(images(), sample=True, generator=gen(2))
    assert len(states) == 3
    with torch.no_grad():
        # h_{-1} is the zero state: b_0 is the baseline's bias alone.
        torch.testing.assert_close(rollout.baselines[:, 0], ram.baseline.fc.bias.expand(5))
        for t, h in enumerate(states):  # h = h_t, t = 0..T-2
            torch.testing.assert_close(rollout.step_logits[:, t], ram.classifier.fc(h))
            torch.testing.assert_close(rollout.baselines[:, t + 1], ram.baseline.fc(h)[:, 0])
            mean = torch.tanh(ram.policy.mean(h))
            location = rollout.locations[:, t + 1]
            inside = (location.abs() < 1).all(dim=1)  # not clamped: the drawn action itself
            assert inside.sum() >= 3
            # log N(l; mu, std^2) summed over x and y
            log_density = (
                -0.5 * ((location - mean) / std) ** 2 - math.log(std * math.sqrt(2 * math.pi))
            ).sum(1)
            torch.testing.assert_close(rollout.log_probs[inside, t + 1], log_density[inside])


def test_policy_hidden_layer_sits_between_the_state_and_the_mean() -> None:
    """policy_hidden k: mu = tanh(W_mu ReLU(W_f h + b_f) + b_mu), set by hand so the answer
    is known: W_f picks h[0] and -h[0], W_mu maps them to (x, y) = (0.5 ReLU(h0), -ReLU(-h0))."""
    ram = make_ram(policy_hidden=2)
    assert ram.policy.features[0].weight.shape == (2, 16) and ram.policy.mean.weight.shape == (2, 2)
    with torch.no_grad():
        ram.policy.features[0].weight.zero_()
        ram.policy.features[0].weight[0, 0] = 1.0
        ram.policy.features[0].weight[1, 0] = -1.0
        ram.policy.features[0].bias.zero_()
        ram.policy.mean.weight.copy_(torch.tensor([[0.5, 0.0], [0.0, -1.0]]))
        ram.policy.mean.bias.zero_()
        h = torch.zeros(2, 16)
        h[0, 0], h[1, 0] = 0.8, -0.6
        mu, log_std = ram.policy(h)
    expected = torch.tensor([[math.tanh(0.4), 0.0], [0.0, math.tanh(-0.6)]])
    torch.testing.assert_close(mu, expected)
    assert log_std == math.log(SMALL.std)
    # Only REINFORCE trains it: the hidden layer gets the log-probability's gradient.
    ram.rollout(images(), sample=True, generator=gen(3)).log_probs.sum().backward()
    assert ram.policy.features[0].weight.grad.abs().sum() > 0
    assert make_ram().policy.features is None  # 0, the default: the paper's single affine map


def test_linear_policy_mean_is_clamped_for_the_retina_but_not_for_the_log_prob() -> None:
    """policy_mean linear: mu = W h unbounded; the retina and the policy-mean evaluation see it
    clamped to [-1, 1]; the log-probability is of the unclamped action around the unbounded mu."""
    std = 0.1
    ram = make_ram(std=std, policy_mean="linear")
    with torch.no_grad():  # push the means past the canvas's edge
        ram.policy.mean.bias.copy_(torch.tensor([3.0, -0.2]))
    states = []
    ram.policy.register_forward_hook(lambda module, args, output: states.append(args[0].detach()))
    mean_run = ram.rollout(images(), sample=False, generator=gen(2))
    with torch.no_grad():
        for t, h in enumerate(states):
            mu = ram.policy.mean(h)
            assert (mu[:, 0] > 1).all()
            torch.testing.assert_close(mean_run.locations[:, t + 1], mu.clamp(-1, 1))
    assert torch.equal(mean_run.locations[:, 1:, 0], torch.ones(5, 3))

    states.clear()
    sampled = ram.rollout(images(), sample=True, generator=gen(2))
    noise = ram.draw_randomness(images(), sample=True, generator=gen(2))[1]
    with torch.no_grad():
        for t, h in enumerate(states):
            action = ram.policy.mean(h) + std * noise[:, t]
            torch.testing.assert_close(sampled.locations[:, t + 1], action.clamp(-1, 1))
            # z = noise: log N(a; mu, std^2) = sum over x, y of -z^2/2 - log(std sqrt(2 pi))
            expected = (-0.5 * noise[:, t] ** 2 - math.log(std * math.sqrt(2 * math.pi))).sum(1)
            torch.testing.assert_close(sampled.log_probs[:, t + 1], expected)


def test_a_saturated_tanh_mean_loses_its_gradient_and_a_linear_one_keeps_it() -> None:
    grads = {}
    for kind in ("tanh", "linear"):
        ram = make_ram(policy_mean=kind)
        with torch.no_grad():
            ram.policy.mean.bias.fill_(6.0)  # tanh(6) = 0.99998: at the edge
        ram.rollout(images(), sample=True, generator=gen(3)).log_probs.sum().backward()
        grads[kind] = ram.policy.mean.bias.grad.abs().sum().item()
    assert grads["tanh"] < 1e-2 * grads["linear"]
    assert grads["linear"] > 1.0


def test_policy_lr_puts_the_policy_in_a_scaled_group_of_its_own() -> None:
    ram = make_ram()
    (group,) = ram.parameter_groups()
    assert len(group["params"]) == len(list(ram.parameters())) and "lr_scale" not in group
    ram = make_ram(policy_lr=0.1)
    rest, policy = ram.parameter_groups()
    assert policy["lr_scale"] == 0.1
    assert {id(p) for p in policy["params"]} == {id(p) for p in ram.policy.parameters()}
    assert {id(p) for p in rest["params"]} | {id(p) for p in policy["params"]} == {
        id(p) for p in ram.parameters()
    }
    assert not {id(p) for p in rest["params"]} & {id(p) for p in policy["params"]}


def test_a_single_glimpse() -> None:
    ram = make_ram(glimpses=1)
    out = ram(images(), sample=True, generator=gen())
    assert out.rollout.locations.shape == (5, 1, 2)
    assert out.rollout.acted.tolist() == [False]
    objective = ram.objective(out, torch.arange(5), torch.zeros(5, 4))
    assert objective.metrics["loss/reinforce"] == 0
    assert objective.metrics["loss/baseline"] == 0
    assert torch.isfinite(objective.loss)


def test_first_location_random_or_centre() -> None:
    random_first = make_ram().rollout(images(), sample=False, generator=gen())
    assert random_first.locations[:, 0].std(dim=0).min() > 0.1  # spread over the canvas
    centre_first = make_ram(first_location="centre").rollout(images(), sample=False, generator=gen())
    assert torch.equal(centre_first.locations[:, 0], torch.zeros(5, 2))


@pytest.mark.parametrize("first", ["random", "centre"])
def test_a_float64_ram_draws_and_rolls_out_in_float64(first: str) -> None:
    # its first location and policy noise were drawn in float32: "mat1 and mat2 must have the
    # same dtype" in float64 (gradcheck) and bfloat16 (half-precision cost)
    wide = make_ram(first_location=first, dropout=0.2).train().double()
    out = wide.rollout(images().double(), sample=True, generator=gen())
    assert out.locations.dtype == torch.float64 and out.step_logits.dtype == torch.float64
    draws = split_randomness(wide, 5, sample=True, seed=0, device=torch.device("cpu"))
    assert all(d.dtype == torch.float64 for d in draws if d is not None)
    # with nothing drawn (the centre, the policy mean) it is its float32 twin, to float32's precision
    narrow, wide = make_ram(first_location="centre").eval(), make_ram(first_location="centre").eval()
    wide = wide.double()
    a = narrow.rollout(images(), sample=False, generator=gen()).step_logits
    b = wide.rollout(images().double(), sample=False, generator=gen()).step_logits
    assert torch.allclose(a.double(), b, atol=1e-5)


def test_deterministic_mode_repeats_and_sampling_varies() -> None:
    ram = make_ram()
    first = ram.rollout(images(), sample=False, generator=gen(7))
    again = ram.rollout(images(), sample=False, generator=gen(7))
    assert torch.equal(first.locations, again.locations)
    assert torch.equal(first.step_logits, again.step_logits)

    # With sample=False only the (random) first location draws from the generator.
    other_seed = ram.rollout(images(), sample=False, generator=gen(8))
    assert not torch.equal(first.locations[:, 0], other_seed.locations[:, 0])

    # Sampling with the same seed repeats too, and differs from the policy mean.
    sampled = ram.rollout(images(), sample=True, generator=gen(7))
    sampled_again = ram.rollout(images(), sample=True, generator=gen(7))
    assert torch.equal(sampled.locations, sampled_again.locations)
    assert torch.equal(sampled.locations[:, 0], first.locations[:, 0])
    assert not torch.equal(sampled.locations[:, 1:], first.locations[:, 1:])


def test_fixed_std_entropy_is_the_gaussian_entropy() -> None:
    rollout = make_ram(std=0.2).rollout(images(), sample=True, generator=gen())
    # Two independent coordinates: 2 * (log sigma + 1/2 + log sqrt(2 pi)).
    expected = 2 * (math.log(0.2) + 0.5 + 0.5 * math.log(2 * math.pi))
    torch.testing.assert_close(rollout.entropy[:, 1:], torch.full((5, 3), expected))


def test_learned_std_starts_at_the_configured_std_and_varies_with_the_state() -> None:
    ram = make_ram(std=0.2, learn_std=True)
    rollout = ram.rollout(images(), sample=True, generator=gen())
    expected = 2 * (math.log(0.2) + 0.5 + 0.5 * math.log(2 * math.pi))
    torch.testing.assert_close(rollout.entropy[:, 1:], torch.full((5, 3), expected))

    with torch.no_grad():  # as after some training: the log-std depends on h_t
        ram.policy.std_logit.weight.normal_(0.0, 0.5, generator=gen(3))
    rollout = ram.rollout(images(), sample=True, generator=gen())
    entropy = rollout.entropy[:, 1:]
    assert entropy.std() > 1e-3
    assert len(torch.unique(entropy)) > 1
    assert entropy.requires_grad  # the entropy bonus can train the log-std

    out = ram(images(), sample=True, generator=gen())
    objective = ram.objective(out, torch.arange(5), torch.zeros(5, 4))
    # logged per chosen location (glimpses 2-4; the first is not the policy's), mean over rows
    by_hand = sum(out.rollout.entropy[i, 1:].sum().item() for i in range(5)) / 5 / 3
    assert objective.metrics["policy/entropy"].item() == pytest.approx(by_hand, rel=1e-5)
    assert len(torch.unique(out.rollout.entropy[:, 1:])) > 1  # the state-dependent std, logged


def test_build_model_by_name() -> None:
    model = build_model(
        "ram", {"glimpses": 2, "glimpse_size": 4, "scales": 2, "hidden": 8}, image_size=(28, 28)
    )
    assert isinstance(model, RAM)
    assert model(torch.rand(3, 1, 28, 28)).step_logits.shape == (3, 2, 10)


# ---- config checks --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"std": 0.0}, r"std must be in \(0, e\]"),
        ({"std": -0.1}, r"std must be in \(0, e\]"),
        ({"std": 2.72}, r"std must be in \(0, e\] \(2.718: locations span -1..1"),  # just above e
        ({"std": float("nan")}, "std must be a finite number"),
        ({"core": "gru"}, "core must be one of rnn, lstm; got 'gru'"),
        ({"reward": "accuracy"}, "unknown reward 'accuracy'; valid: sparse, infogain, bbox"),
        ({"reward": "sparse+0.5*box"}, "unknown reward 'box'"),
        ({"first_location": "corner"}, "first_location must be one of random, centre"),
        ({"policy_lr": 0.0}, "policy_lr must be > 0"),
        ({"policy_hidden": -1}, r"policy_hidden must be >= 0 \(0: no hidden layer\), got -1"),
        ({"policy_mean": "sigmoid"}, "policy_mean must be one of tanh, linear; got 'sigmoid'"),
        ({"gamma": 1.5}, r"gamma must be in \[0, 1\]"),
        ({"hidden": 0}, "hidden must be a positive integer"),
        ({"glimpse_hidden": -3}, "glimpse_hidden must be a positive integer"),
        ({"glimpses": 0}, "glimpses must be a positive integer"),
        ({"glimpse_conv": -1}, r"glimpse_conv must be >= 0 \(0: no convolution\), got -1"),
        ({"glimpse_conv": 4, "glimpse_size": 5}, "glimpse_conv needs an even glimpse_size .*got 5"),
        ({"glimpse_combine": "prod"}, "glimpse_combine must be one of sum, product; got 'prod'"),
        ({"reinforce_weight": -1.0}, r"reinforce_weight must be >= 0 \(0: no such term\), got -1.0"),
        ({"baseline_weight": -0.5}, "baseline_weight must be >= 0"),
        ({"entropy_weight": -0.01, "learn_std": True}, "entropy_weight must be >= 0"),
        (
            {"std": 1e-4, "learn_std": True},
            r"ram std 0.0001 with learn_std: a learned std is kept strictly inside 0.001..e",
        ),
        ({"std": 1e-3, "learn_std": True}, r"ram std 0.001 with learn_std: .*must start there"),
        ({"std": math.e, "learn_std": True}, r"ram std 2.718\d* with learn_std: .*must start there"),
        (
            {"entropy_weight": 0.01},
            "entropy_weight needs learn_std true: a fixed std's entropy is a constant",
        ),
    ],
)
def test_config_errors(changes: dict, message: str) -> None:
    with pytest.raises(RamlabError, match=message):
        dataclasses.replace(SMALL, **changes)


def test_the_std_bounds_themselves() -> None:
    assert dataclasses.replace(SMALL, std=math.e).std == math.e  # a fixed std may be e itself
    for std in (1.01e-3, 2.7):  # a learned one starts strictly inside, and there it starts
        ram = make_ram(std=std, learn_std=True)
        torch.testing.assert_close(
            ram.policy(torch.randn(2, SMALL.hidden))[1], torch.full((2, 2), math.log(std))
        )


def test_glimpse_wider_than_the_canvas_is_refused() -> None:
    with pytest.raises(RamlabError, match="glimpse_size 21 is wider than the 20x24 canvas"):
        make_ram(glimpse_size=21, scales=1)
    # 4 * 2^4 = 64 px > twice the canvas's longer side (48 px)
    with pytest.raises(RamlabError, match=r"widest patch .* 64 px"):
        make_ram(scales=5)
    make_ram(glimpse_size=12, scales=3)  # 48 px: allowed


def test_glimpse_conv_sizes_the_what_layer_and_runs_the_rollout() -> None:
    """SMALL: k = 2 patches of 4x4; 3 channels pool to 3 x 2 x 2 = 12 inputs of the 'what' layer."""
    ram = make_ram(glimpse_conv=3)
    assert tuple(ram.glimpse.conv.weight.shape) == (3, 2, 3, 3)
    assert ram.glimpse.what.in_features == 12
    plain = make_ram()
    assert ram.num_parameters() - plain.num_parameters() == (3 * 2 * 9 + 3) + (12 - 2 * 16) * 8
    out = ram(images(), sample=True, generator=gen())
    assert out.step_logits.shape == (5, 4, 10)
    out.step_logits.sum().backward()
    assert ram.glimpse.conv.weight.grad.abs().sum() > 0


def test_a_learned_std_starts_as_configured_and_stays_inside_its_bounds_smoothly() -> None:
    # log sigma = log 1e-3 + (1 - log 1e-3) * sigmoid(z): a plain clamp left a std pushed past
    # a bound there for good (no gradient); a straight-through clamp let z run on past it.
    ram = make_ram(std=0.2, learn_std=True)
    h = torch.randn(4, SMALL.hidden)
    low = math.log(1e-3)
    slopes = []
    for z in (-60.0, -3.0, 3.0, 6.0, 60.0):
        ram.policy.zero_grad()
        with torch.no_grad():
            ram.policy.std_logit.bias.fill_(z)
        _, log_std = ram.policy(h)
        expected = low + (1 - low) / (1 + math.exp(-z))  # by hand
        torch.testing.assert_close(log_std, torch.full((4, 2), expected))
        assert torch.all(log_std >= low) and torch.all(log_std <= 1.0)
        log_std.sum().backward()
        slopes.append(ram.policy.std_logit.bias.grad[0].item())
    # d log sigma / dz = (1 - log 1e-3) s (1 - s), per sample: 4 samples, summed.
    s = 1 / (1 + math.exp(-3.0))
    assert slopes[2] == pytest.approx(4 * (1 - low) * s * (1 - s), rel=1e-5)
    assert slopes[1] == pytest.approx(slopes[2], rel=1e-5)  # symmetric about the middle
    # Nearer a bound a push moves the std less (no running on past it), yet it is never stuck.
    assert 0 < slopes[3] < slopes[2]
