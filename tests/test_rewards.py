"""Rewards, returns and the hybrid loss on small rollouts built by hand, with the expected
numbers worked out in the comments."""

from __future__ import annotations

import dataclasses
import math
import re

import pytest
import torch

from ramlab.errors import RamlabError
from ramlab.losses import hybrid_loss
from ramlab.models.ram import RAMConfig, Rollout
from ramlab.rewards import (
    bbox_reward,
    combined_reward,
    discounted_returns,
    infogain_reward,
    parse_discounts,
    parse_reward,
    reward_and_returns,
    sparse_reward,
)


def make_rollout(
    *,
    step_logits: torch.Tensor,
    locations: torch.Tensor | None = None,
    image_size: tuple[int, int] = (40, 60),
    log_probs: torch.Tensor | None = None,
    baselines: torch.Tensor | None = None,
) -> Rollout:
    batch, steps, _ = step_logits.shape
    return Rollout(
        locations=torch.zeros(batch, steps, 2) if locations is None else locations,
        log_probs=torch.zeros(batch, steps) if log_probs is None else log_probs,
        baselines=torch.zeros(batch, steps) if baselines is None else baselines,
        step_logits=step_logits,
        entropy=torch.zeros(batch, steps),
        acted=torch.tensor([False] + [True] * (steps - 1)),
        image_size=image_size,
    )


def one_hot_logits(classes: list[list[int]], num_classes: int = 4) -> torch.Tensor:
    """(B, T, C) logits whose argmax at (b, t) is classes[b][t]."""
    return torch.nn.functional.one_hot(torch.tensor(classes), num_classes).float() * 5.0


# ---- sparse ---------------------------------------------------------------------------------


def test_sparse_rewards_only_a_right_final_prediction() -> None:
    # Sample 0 ends right (after being wrong), sample 1 ends wrong (after being right).
    rollout = make_rollout(step_logits=one_hot_logits([[1, 1, 2], [0, 3, 1]]))
    labels = torch.tensor([2, 3])
    reward = sparse_reward(rollout, labels, torch.zeros(2, 4))
    assert torch.equal(reward, torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 0.0]]))


# ---- information gain -----------------------------------------------------------------------


def test_infogain_is_the_change_in_log_probability_of_the_label() -> None:
    probs = torch.tensor(
        [
            [0.25, 0.25, 0.25, 0.25],  # t = 0
            [0.5, 0.25, 0.125, 0.125],  # t = 1
            [0.125, 0.125, 0.5, 0.25],  # t = 2
        ]
    )
    # Logits are log-probabilities up to a constant per step: the reward must not see it.
    logits = (probs.log() + torch.tensor([[3.0], [-7.0], [0.5]])).expand(2, -1, -1).clone()
    logits.requires_grad_(True)
    labels = torch.tensor([0, 2])
    reward = infogain_reward(make_rollout(step_logits=logits), labels, torch.zeros(2, 4))
    log2 = math.log(2.0)
    expected = torch.tensor(
        [
            # label 0: 1/4 (prior 1/4) -> 1/2 -> 1/8
            [0.0, log2, -2 * log2],
            # label 2: 1/4 (prior 1/4) -> 1/8 -> 1/2
            [0.0, -log2, 2 * log2],
        ]
    )
    torch.testing.assert_close(reward, expected, atol=1e-6, rtol=0)
    assert not reward.requires_grad  # a reward is a constant for the policy gradient


def test_infogain_first_step_is_against_the_uniform_prior() -> None:
    # C = 5; p(y | h_0) = e^2 / (e^2 + 4); rewards telescope to log p(y | h_T) + log C.
    logits = torch.tensor([[[2.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0]]])
    reward = infogain_reward(make_rollout(step_logits=logits), torch.tensor([0]), torch.zeros(1, 4))
    p0 = math.e**2 / (math.e**2 + 4)
    expected = torch.tensor([[math.log(p0) + math.log(5), math.log(0.2) - math.log(p0)]])
    torch.testing.assert_close(reward, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(reward.sum(), torch.tensor(0.0), atol=1e-6, rtol=0)


# ---- bounding box ---------------------------------------------------------------------------

# A 40-high, 60-wide canvas (non-square, so x and y cannot be swapped unnoticed); the box is
# x in [20, 40], y in [10, 30] pixels. One location unit is 30 px in x and 20 px in y.
BOX = torch.tensor([[20.0, 10.0, 40.0, 30.0]])
BOX_LOCATIONS = torch.tensor(
    [
        [
            [0.0, 0.0],  # (30, 20) px: inside -> 0
            [-1.0, -1.0],  # (0, 0): 20 px left = 2/3, 10 px above = 1/2 -> sqrt(4/9 + 1/4) = 5/6
            [1.0, 0.0],  # (60, 20): 20 px right -> 2/3
            [0.0, 1.0],  # (30, 40): 10 px below -> 1/2
            [0.25, -0.25],  # (37.5, 15): inside -> 0
            [2.0, 2.0],  # (90, 60): 50 px right = 5/3, 30 px below = 3/2 -> sqrt(181)/6
        ]
    ]
)
BOX_REWARD = torch.tensor([[0.0, -5 / 6, -2 / 3, -1 / 2, 0.0, -math.sqrt(181) / 6]])


def test_bbox_is_minus_the_distance_to_the_box_in_location_units() -> None:
    rollout = make_rollout(step_logits=torch.zeros(1, 6, 10), locations=BOX_LOCATIONS, image_size=(40, 60))
    reward = bbox_reward(rollout, torch.tensor([3]), BOX)
    torch.testing.assert_close(reward, BOX_REWARD, atol=1e-6, rtol=0)


# ---- weighted sums --------------------------------------------------------------------------


def test_parse_reward_reads_weighted_sums() -> None:
    assert parse_reward("sparse") == {"sparse": 1.0}
    assert parse_reward("sparse+0.5*bbox") == {"sparse": 1.0, "bbox": 0.5}
    assert parse_reward(" 2 * infogain + sparse ") == {"infogain": 2.0, "sparse": 1.0}
    assert parse_reward("bbox+0.25*bbox") == {"bbox": 1.25}
    assert parse_reward("1e-2*bbox") == {"bbox": 0.01}
    # an exponent's '+' is not a '+' between terms
    assert parse_reward("sparse+1e+0*bbox") == {"sparse": 1.0, "bbox": 1.0}
    assert parse_reward("2.5E+1*infogain+sparse") == {"infogain": 25.0, "sparse": 1.0}


@pytest.mark.parametrize(
    "spec",
    ["sparse+foo", "accuracy", "sparse+Bbox", "", "sparse+", "sparse+*bbox", "0.5*", "sparse bbox"],
)
def test_parse_reward_errors_list_the_valid_names(spec: str) -> None:
    with pytest.raises(RamlabError, match="valid: sparse, infogain, bbox") as info:
        parse_reward(spec)
    assert repr(spec) in str(info.value)


def test_parse_reward_bad_weight() -> None:
    with pytest.raises(RamlabError, match=r"bad weight '1\.2\.3'"):
        parse_reward("sparse+1.2.3*bbox")


def test_combined_reward_is_the_weighted_sum() -> None:
    # Final predictions: sample 0 right (class 3), sample 1 wrong; both see BOX's locations.
    logits = torch.zeros(2, 6, 10)
    logits[:, -1, 3] = 1.0
    rollout = make_rollout(step_logits=logits, locations=BOX_LOCATIONS.expand(2, -1, -1), image_size=(40, 60))
    labels = torch.tensor([3, 4])
    total = combined_reward(parse_reward("sparse+0.5*bbox"), rollout, labels, BOX.expand(2, -1))
    expected = 0.5 * BOX_REWARD.expand(2, -1).clone()
    expected[0, -1] += 1.0
    torch.testing.assert_close(total, expected, atol=1e-6, rtol=0)


# ---- returns --------------------------------------------------------------------------------


def test_discounted_returns_are_the_reward_to_go() -> None:
    rewards = torch.tensor([[0.0, 0.0, 1.0], [1.0, 2.0, 3.0], [4.0, -2.0, 0.0]])
    torch.testing.assert_close(
        discounted_returns(rewards, 1.0),
        torch.tensor([[1.0, 1.0, 1.0], [6.0, 5.0, 3.0], [2.0, -2.0, 0.0]]),
    )
    torch.testing.assert_close(
        discounted_returns(rewards, 0.5),
        # G_2 = r_2; G_1 = r_1 + G_2 / 2; G_0 = r_0 + G_1 / 2
        torch.tensor([[0.25, 0.5, 1.0], [2.75, 3.5, 3.0], [3.0, -2.0, 0.0]]),
    )
    torch.testing.assert_close(discounted_returns(rewards, 0.0), rewards)


# ---- the hybrid loss ------------------------------------------------------------------------


def test_hybrid_loss_by_hand() -> None:
    # B = 2, T = 3, C = 2; sparse reward: sample 0 ends right, sample 1 wrong.
    logits = torch.tensor(
        [
            [[0.0, 0.0], [0.0, 0.0], [0.0, math.log(3.0)]],  # final p(1) = 3/4
            [[0.0, 0.0], [0.0, 0.0], [0.0, math.log(3.0)]],
        ]
    )
    labels = torch.tensor([1, 0])
    log_probs = torch.tensor([[0.0, -1.0, -2.0], [0.0, -0.5, -4.0]])
    baselines = torch.tensor([[9.0, 0.5, 0.25], [9.0, 0.0, 1.0]])  # b_0 is never trained
    rollout = make_rollout(step_logits=logits, log_probs=log_probs, baselines=baselines)
    config = RAMConfig(reward="sparse", gamma=0.5, reinforce_weight=2.0, baseline_weight=3.0)
    objective = hybrid_loss(rollout, labels, torch.zeros(2, 4), config=config, reward_weights={"sparse": 1.0})
    # returns, gamma = 1/2: sample 0 (1/4, 1/2, 1), sample 1 (0, 0, 0)
    classification = -(math.log(0.75) + math.log(0.25)) / 2
    # over acted steps 1, 2: (0.5 - 0.5)^2, (0.25 - 1)^2, (0 - 0)^2, (1 - 0)^2; mean of 4
    baseline = (0.0 + 0.5625 + 0.0 + 1.0) / 4
    # -mean_B sum_t (G_t - b_t) log pi: sample 0: 0 * -1 + 0.75 * -2; sample 1: 0 * -0.5 + -1 * -4
    reinforce = -((-1.5) + 4.0) / 2
    metrics = objective.metrics
    assert metrics["loss/classification"].item() == pytest.approx(classification, abs=1e-6)
    assert metrics["loss/baseline"].item() == pytest.approx(baseline, abs=1e-6)
    assert metrics["loss/reinforce"].item() == pytest.approx(reinforce, abs=1e-6)
    assert metrics["policy/reward"].item() == pytest.approx(0.5, abs=1e-6)
    assert objective.loss.item() == pytest.approx(classification + 3.0 * baseline + 2.0 * reinforce, abs=1e-6)

    # Cross-entropy on every step: steps 0 and 1 have p = 1/2 for either label.
    every = dataclasses.replace(config, ce_all_steps=True)
    objective = hybrid_loss(rollout, labels, torch.zeros(2, 4), config=every, reward_weights={"sparse": 1.0})
    expected = (4 * math.log(2.0) - math.log(0.75) - math.log(0.25)) / 6
    assert objective.metrics["loss/classification"].item() == pytest.approx(expected, abs=1e-6)


def test_the_location_spread_by_hand_and_for_one_rollout() -> None:
    # x over the batch: 0 and 0.5 (sample std 0.3536); y: 0 and 0 (0). Mean over (T, 2).
    locations = torch.tensor([[[0.0, 0.0]], [[0.5, 0.0]]])
    rollout = make_rollout(step_logits=torch.zeros(2, 1, 2), locations=locations)
    objective = hybrid_loss(
        rollout, torch.tensor([0, 1]), torch.zeros(2, 4), config=RAMConfig(), reward_weights={"sparse": 1.0}
    )
    assert objective.metrics["policy/location_spread"].item() == pytest.approx(math.sqrt(0.125) / 2)
    one = make_rollout(step_logits=torch.zeros(1, 1, 2), locations=locations[:1])
    objective = hybrid_loss(
        one, torch.tensor([0]), torch.zeros(1, 4), config=RAMConfig(), reward_weights={"sparse": 1.0}
    )
    assert all(bool(torch.isfinite(torch.as_tensor(v)).all()) for v in objective.metrics.values())
    assert objective.metrics["policy/location_spread"].item() == 0.0


def test_label_smoothing_moves_e_of_the_target_to_the_uniform_by_hand() -> None:
    # B = 2, C = 2, e = 0.2: the target is 0.9 on the label and 0.1 on the other class.
    # Final p(1) = 3/4 in both rows; labels 1 and 0.
    logits = torch.tensor([[[0.0, 0.0], [0.0, math.log(3.0)]]] * 2)
    rollout = make_rollout(step_logits=logits)
    labels = torch.tensor([1, 0])
    smoothed = RAMConfig(label_smoothing=0.2)
    objective = hybrid_loss(
        rollout, labels, torch.zeros(2, 4), config=smoothed, reward_weights={"sparse": 1.0}
    )
    row0 = -(0.9 * math.log(0.75) + 0.1 * math.log(0.25))
    row1 = -(0.9 * math.log(0.25) + 0.1 * math.log(0.75))
    assert objective.metrics["loss/classification"].item() == pytest.approx((row0 + row1) / 2, abs=1e-6)
    # The reward still counts the unsmoothed prediction: row 0 right, row 1 wrong.
    assert objective.metrics["policy/reward"].item() == pytest.approx(0.5, abs=1e-6)

    # Over every step: step 0 has p = 1/2 for either class, so its term is log 2 whatever e.
    every = dataclasses.replace(smoothed, ce_all_steps=True)
    objective = hybrid_loss(rollout, labels, torch.zeros(2, 4), config=every, reward_weights={"sparse": 1.0})
    expected = (2 * math.log(2.0) + row0 + row1) / 4
    assert objective.metrics["loss/classification"].item() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("rate", [-0.1, 1.0])
def test_a_label_smoothing_outside_zero_to_one_is_refused(rate: float) -> None:
    with pytest.raises(RamlabError, match=r"label_smoothing must be in \[0, 1\)"):
        RAMConfig(label_smoothing=rate)


# ---- a term's own discount ---------------------------------------------------------------------


def test_a_terms_own_discount_by_hand() -> None:
    # label 1, p(1) after each glimpse 1/2, 3/4, 7/8 (prior 1/2): infogain 0, log 3/2, log 7/6;
    # the final prediction is right: sparse 0, 0, 1
    logits = torch.tensor([[[0.0, 0.0], [0.0, math.log(3.0)], [0.0, math.log(7.0)]]])
    rollout = make_rollout(step_logits=logits)
    labels, boxes = torch.tensor([1]), torch.zeros(1, 4)
    weights = parse_reward("sparse+infogain@0")
    assert weights == {"sparse": 1.0, "infogain": 1.0}
    assert parse_discounts("sparse+infogain@0") == {"infogain": 0.0}
    reward, returns = reward_and_returns(weights, {"infogain": 0.0}, 1.0, rollout, labels, boxes)
    ig = [0.0, math.log(1.5), math.log(7 / 6)]
    assert reward[0].tolist() == pytest.approx([ig[0], ig[1], 1 + ig[2]], abs=1e-6)
    # sparse at gamma 1: 1 at every step; information gain at 0: its own glimpse's only
    assert returns[0].tolist() == pytest.approx([1 + ig[0], 1 + ig[1], 1 + ig[2]], abs=1e-6)
    # at one gamma for both: the rewards as above, discounted together, by hand
    r = [ig[0], ig[1], 1 + ig[2]]
    by_gamma = {
        0.0: r,
        0.5: [r[0] + 0.5 * r[1] + 0.25 * r[2], r[1] + 0.5 * r[2], r[2]],
        1.0: [sum(r), r[1] + r[2], r[2]],
    }
    for gamma, expected in by_gamma.items():
        reward, returns = reward_and_returns(weights, {}, gamma, rollout, labels, boxes)
        assert reward[0].tolist() == pytest.approx(r, abs=1e-6)
        assert returns[0].tolist() == pytest.approx(expected, abs=1e-6), gamma
    config = RAMConfig(reward="sparse+infogain@0", gamma=1.0)
    objective = hybrid_loss(
        rollout, labels, boxes, config=config, reward_weights=weights, reward_discounts={"infogain": 0.0}
    )
    assert objective.metrics["policy/reward"].item() == pytest.approx(1 + math.log(7 / 4), abs=1e-6)


def test_own_discounts_reach_the_reinforce_and_baseline_losses_by_hand() -> None:
    # The rollout above (infogain 0, log 3/2, log 7/6; sparse 0, 0, 1) with log pi(l_t) of
    # -, -1, -2 and a zero baseline, at gamma 1.
    logits = torch.tensor([[[0.0, 0.0], [0.0, math.log(3.0)], [0.0, math.log(7.0)]]])
    rollout = make_rollout(step_logits=logits, log_probs=torch.tensor([[0.0, -1.0, -2.0]]))
    labels, boxes = torch.tensor([1]), torch.zeros(1, 4)
    ig1, ig2 = math.log(1.5), math.log(7 / 6)
    cases = {
        # infogain@0: G_1 = 1 + ig1, G_2 = 1 + ig2
        "sparse+infogain@0": (1 + ig1, 1 + ig2),
        # one discount (1): G_1 = 1 + ig1 + ig2, G_2 = 1 + ig2
        "sparse+infogain": (1 + ig1 + ig2, 1 + ig2),
        # sparse's own 0.5: G_1 = 0.5 + ig1 + ig2 (infogain at gamma 1), G_2 = 1 + ig2
        "sparse@0.5+infogain": (0.5 + ig1 + ig2, 1 + ig2),
    }
    for spec, (g1, g2) in cases.items():
        config = RAMConfig(reward=spec, gamma=1.0)
        objective = hybrid_loss(
            rollout,
            labels,
            boxes,
            config=config,
            reward_weights=parse_reward(spec),
            reward_discounts=parse_discounts(spec),
        )
        # REINFORCE: -sum_t (G_t - b_t) log pi(l_t) = -(g1 * -1 + g2 * -2); baseline: the mean
        # over the two acted steps of (b_t - G_t)^2
        assert objective.metrics["loss/reinforce"].item() == pytest.approx(g1 + 2 * g2, abs=1e-6), spec
        assert objective.metrics["loss/baseline"].item() == pytest.approx((g1**2 + g2**2) / 2, abs=1e-6), spec


def test_the_ram_objective_passes_its_rewards_own_discounts() -> None:
    from ramlab.models.base import ModelOutput
    from ramlab.models.ram import RAM

    logits = torch.tensor([[[0.0, 0.0], [0.0, math.log(3.0)], [0.0, math.log(7.0)]]])
    rollout = make_rollout(step_logits=logits, log_probs=torch.tensor([[0.0, -1.0, -2.0]]))
    out = ModelOutput(logits=logits[:, -1], step_logits=logits, rollout=rollout)
    labels, boxes = torch.tensor([1]), torch.zeros(1, 4)
    sizes = {
        "glimpses": 3,
        "glimpse_size": 4,
        "scales": 1,
        "hidden": 8,
        "glimpse_hidden": 4,
        "location_hidden": 4,
    }
    reinforce = {}
    for spec in ("sparse+infogain@0", "sparse+infogain"):
        model = RAM(config=RAMConfig(reward=spec, gamma=1.0, **sizes), image_size=(16, 16), num_classes=2)
        reinforce[spec] = model.objective(out, labels, boxes).metrics["loss/reinforce"].item()
    ig1, ig2 = math.log(1.5), math.log(7 / 6)
    assert reinforce["sparse+infogain@0"] == pytest.approx((1 + ig1) + 2 * (1 + ig2), abs=1e-6)
    assert reinforce["sparse+infogain"] == pytest.approx((1 + ig1 + ig2) + 2 * (1 + ig2), abs=1e-6)


def test_the_entropy_bonus_lowers_the_loss_and_its_metric_is_per_acted_step() -> None:
    # Entropies -, 1, 2 (the first location is not the policy's); weight 0.1.
    logits = torch.zeros(1, 3, 2)
    rollout = dataclasses.replace(make_rollout(step_logits=logits), entropy=torch.tensor([[5.0, 1.0, 2.0]]))
    labels, boxes = torch.tensor([1]), torch.zeros(1, 4)
    plain = hybrid_loss(
        rollout, labels, boxes, config=RAMConfig(reward="sparse"), reward_weights={"sparse": 1.0}
    )
    bonus = hybrid_loss(
        rollout,
        labels,
        boxes,
        config=RAMConfig(reward="sparse", learn_std=True, entropy_weight=0.1),
        reward_weights={"sparse": 1.0},
    )
    assert bonus.loss.item() == pytest.approx(plain.loss.item() - 0.1 * (1.0 + 2.0), abs=1e-6)
    assert bonus.metrics["policy/entropy"].item() == pytest.approx(1.5)  # (1 + 2) / 2 acted steps


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("infogain@2", "the discount of infogain must be in [0, 1], got 2"),
        ("infogain@x", "cannot read term"),
        ("infogain@0+infogain", "infogain is given twice with different discounts"),
    ],
)
def test_a_bad_discount_is_named(spec, message) -> None:
    with pytest.raises(RamlabError, match=re.escape(message)):
        parse_reward(spec)
    assert parse_reward("0.1*infogain@0+0.2*infogain@0") == {"infogain": pytest.approx(0.3)}
