"""The RAM's dropout: on the glimpse feature into the core and on the state into the
classifier, in training only, with masks drawn by `draw_randomness` (so the compiled fast
path sees the same ones); the policy and the baseline read the undropped state."""

from __future__ import annotations

import pytest
import torch
from test_ram import gen, images, make_ram

from ramlab.errors import RamlabError
from ramlab.models.ram import RAMConfig


def test_masks_are_drawn_in_training_only_and_scale_the_kept_units() -> None:
    ram = make_ram(dropout=0.25)
    _location, _noise, masks = ram.draw_randomness(images(400), sample=True, generator=gen(1))
    assert masks.shape == (2, 400, 4, 16)  # (g and h, B, T, hidden)
    # Kept units are scaled by 1 / (1 - 0.25), so that the expectation is unchanged.
    assert masks.unique().tolist() == pytest.approx([0.0, 4 / 3])
    dropped = (masks == 0).float().mean().item()
    assert dropped == pytest.approx(0.25, abs=0.01)  # 51,200 draws: the std is 0.002
    assert make_ram().draw_randomness(images(), sample=True, generator=gen(1))[2] is None
    assert ram.eval().draw_randomness(images(), sample=True, generator=gen(1))[2] is None


def test_evaluation_is_the_same_network_without_dropout() -> None:
    with_dropout, without = make_ram(dropout=0.5).eval(), make_ram().eval()
    a = with_dropout(images(), sample=False, generator=gen(2))
    b = without(images(), sample=False, generator=gen(2))
    torch.testing.assert_close(a.step_logits, b.step_logits, rtol=0, atol=0)


def test_the_core_and_the_classifier_see_the_masked_inputs_and_the_policy_does_not() -> None:
    ram = make_ram(dropout=0.5, policy_trains_core=True).train()
    seen = {"glimpse": [], "core": [], "policy": []}
    ram.glimpse.register_forward_hook(lambda m, args, out: seen["glimpse"].append(out.detach()))
    ram.core.register_forward_hook(lambda m, args, out: seen["core"].append(args[0].detach()))
    ram.policy.register_forward_hook(lambda m, args, out: seen["policy"].append(args[0].detach()))
    drawn = ram.draw_randomness(images(), sample=True, generator=gen(3))
    masks = drawn[2]
    out = ram(images(), sample=True, randomness=drawn)
    states = out.rollout.states.detach()
    for t in range(4):
        torch.testing.assert_close(seen["core"][t], seen["glimpse"][t] * masks[0, :, t])
    for t in range(3):  # the policy acts after glimpses 0..T-2, on the undropped state
        torch.testing.assert_close(seen["policy"][t], states[:, t])
    # and the baseline too: b_{t+1} = baseline(h_t), undropped (index t is glimpse t)
    torch.testing.assert_close(out.rollout.baselines[:, 1:], ram.baseline.fc(states[:, :-1])[..., 0])
    expected = ram.classifier(states * masks[1])
    torch.testing.assert_close(out.step_logits, expected)
    # Some of each mask is zero, so the masks did change what the core and classifier saw.
    assert (masks == 0).any(dim=-1).all()


def test_a_pass_with_dropout_repeats_from_the_same_generator() -> None:
    ram = make_ram(dropout=0.3).train()
    a = ram(images(), sample=True, generator=gen(4)).step_logits
    b = ram(images(), sample=True, generator=gen(4)).step_logits
    c = ram(images(), sample=True, generator=gen(5)).step_logits
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5])
def test_a_dropout_outside_zero_to_one_is_refused(rate: float) -> None:
    with pytest.raises(RamlabError, match=r"dropout must be in \[0, 1\)"):
        RAMConfig(dropout=rate)
