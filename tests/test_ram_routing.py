"""Gradient routing in the RAM: which rollout output and which loss term reach which
parameters (the classifier's cross-entropy, the baseline's MSE, REINFORCE into the policy, and
into the core only with policy_trains_core)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from test_ram import SMALL, gen, images, make_ram

from ramlab.models.ram import RAM

GROUPS = ("glimpse", "core", "classifier", "policy", "baseline")


def gradients(ram: RAM, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every parameter's gradient of `loss` (zeros where it does not reach), by name."""
    names, params = zip(*ram.named_parameters(), strict=True)
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return {
        name: torch.zeros_like(p) if g is None else g for name, p, g in zip(names, params, grads, strict=True)
    }


def reached(grads: dict[str, torch.Tensor]) -> set[str]:
    """Parameter groups (top-level modules) with a non-zero gradient."""
    return {name.split(".")[0] for name, g in grads.items() if g.abs().sum() > 0}


@pytest.fixture
def routed():
    """A learned-std RAM, one sampled rollout of it, and the labels."""
    ram = make_ram(learn_std=True, entropy_weight=0.0)
    with torch.no_grad():
        ram.policy.std_logit.weight.normal_(0.0, 0.1, generator=gen(5))
    out = ram(images(8), sample=True, generator=gen(1))
    labels = torch.arange(8) % 10
    return ram, out, labels


def test_each_rollout_output_reaches_only_its_own_module(routed) -> None:
    ram, out, labels = routed
    rollout = out.rollout
    ce = torch.nn.functional.cross_entropy(rollout.step_logits[:, -1], labels)
    assert reached(gradients(ram, ce)) == {"glimpse", "core", "classifier"}
    assert reached(gradients(ram, rollout.log_probs.sum())) == {"policy"}
    assert reached(gradients(ram, rollout.baselines.sum())) == {"baseline"}
    assert set(GROUPS) == {name.split(".")[0] for name, _ in ram.named_parameters()}


def test_hybrid_loss_routing(routed) -> None:
    ram, out, labels = routed
    bboxes = torch.tensor([[8.0, 6.0, 16.0, 14.0]]).expand(8, -1)

    def loss_grads(reinforce_weight: float, baseline_weight: float) -> dict[str, torch.Tensor]:
        ram.config = dataclasses.replace(
            SMALL, learn_std=True, reinforce_weight=reinforce_weight, baseline_weight=baseline_weight
        )
        return gradients(ram, ram.objective(out, labels, bboxes).loss)

    classification_only = loss_grads(0.0, 0.0)
    reinforce_added = loss_grads(1.0, 0.0)
    baseline_added = loss_grads(0.0, 1.0)
    full = loss_grads(1.0, 1.0)

    # Classification reaches glimpse net, core and classifier only.
    assert reached(classification_only) == {"glimpse", "core", "classifier"}
    # REINFORCE adds the policy (mean and log-std) and nothing else: the baseline is detached.
    assert reached(reinforce_added) == {"glimpse", "core", "classifier", "policy"}
    assert classification_only["policy.std_logit.weight"].abs().sum() == 0
    assert reinforce_added["policy.std_logit.weight"].abs().sum() > 0
    assert reinforce_added["policy.mean.weight"].abs().sum() > 0
    # The baseline's MSE adds the baseline and nothing else.
    assert reached(baseline_added) == {"glimpse", "core", "classifier", "baseline"}
    assert reached(full) == set(GROUPS)
    for name, grad in full.items():
        group = name.split(".")[0]
        if group in ("glimpse", "core", "classifier"):
            # The other two terms leave these gradients exactly as classification makes them.
            torch.testing.assert_close(grad, classification_only[name], rtol=0, atol=0, msg=name)
        elif group == "policy":
            torch.testing.assert_close(grad, reinforce_added[name], rtol=0, atol=1e-7, msg=name)
        else:
            torch.testing.assert_close(grad, baseline_added[name], rtol=0, atol=1e-7, msg=name)


def test_policy_trains_core_sends_reinforce_into_the_core_and_glimpse_net_only() -> None:
    """Off (the default), REINFORCE (and a learned std's entropy bonus) reaches the policy alone;
    on, also the core and the glimpse network through the policy's input, and still neither the
    classifier nor the baseline. The
    rollout itself is unchanged: same locations, same log-probabilities."""
    rollouts = {}
    for on in (False, True):
        ram = make_ram(policy_trains_core=on, learn_std=True, entropy_weight=0.01)
        with torch.no_grad():  # a log-std that depends on the state
            ram.policy.std_logit.weight.normal_(0.0, 0.1, generator=gen(5))
        out = ram(images(8), sample=True, generator=gen(1))
        rollouts[on] = out.rollout
        routes = {"policy", "core", "glimpse"} if on else {"policy"}
        assert reached(gradients(ram, out.rollout.log_probs.sum())) == routes
        # A learned std's entropy bonus is part of the policy's objective: it goes where REINFORCE goes.
        assert reached(gradients(ram, out.rollout.entropy.sum())) == routes
    torch.testing.assert_close(rollouts[True].locations, rollouts[False].locations, rtol=0, atol=0)
    torch.testing.assert_close(rollouts[True].log_probs, rollouts[False].log_probs, rtol=0, atol=0)


# ---- the convolutional glimpse network ------------------------------------------------------
