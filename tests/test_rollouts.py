"""M rollouts per image: the batch layout, the leave-one-out baseline and the hybrid loss
over M rollouts on a hand-computed case; Monte Carlo evaluation and where glimpses land."""

from __future__ import annotations

import math

import pytest
import tiny
import torch
from test_rewards import make_rollout

from ramlab.data.loader import Batch, SceneLoader
from ramlab.data.scenes import Scenes
from ramlab.errors import RamlabError
from ramlab.evaluate import evaluate, glimpse_distance
from ramlab.losses import hybrid_loss, leave_one_out_mean, rollout_consistency
from ramlab.models.ram import RAM, RAMConfig
from ramlab.rewards import box_distance


def test_batch_repeat_puts_the_copies_of_a_scene_in_a_row() -> None:
    batch = Batch(
        images=torch.arange(2.0).view(2, 1, 1, 1),
        labels=torch.tensor([3, 7]),
        bboxes=torch.tensor([[0.0, 0, 1, 1], [2, 2, 3, 3]]),
    )
    copies = batch.repeat(3)
    assert copies.images.flatten().tolist() == [0, 0, 0, 1, 1, 1]
    assert copies.labels.tolist() == [3, 3, 3, 7, 7, 7]
    assert copies.bboxes[:, 0].tolist() == [0, 0, 0, 2, 2, 2]


def test_leave_one_out_mean_by_hand() -> None:
    # Image 0's three rollouts return 1, 0, 1 at the last step; image 1's 0, 0, 1.
    values = torch.tensor([[0.0, 1.0], [0.0, 0.0], [0.0, 1.0], [3.0, 0.0], [6.0, 0.0], [9.0, 1.0]])
    expected = torch.tensor([[0.0, 0.5], [0.0, 1.0], [0.0, 0.5], [7.5, 0.5], [6.0, 0.5], [4.5, 0.0]])
    assert torch.allclose(leave_one_out_mean(values, 3), expected)


def test_hybrid_loss_over_m_rollouts_by_hand() -> None:
    # B = 2 images x M = 2 rollouts = 4 rows, T = 2, C = 2. Final p(1) = 3/4 in every row.
    # Image 0 (label 1): both rollouts right; image 1 (label 0): both wrong, except that
    # row 3's final logits favour class 0 (p(0) = 3/4), so row 3 is right.
    right, wrong = [0.0, math.log(3.0)], [math.log(3.0), 0.0]
    logits = torch.tensor(
        [[[0.0, 0.0], right], [[0.0, 0.0], right], [[0.0, 0.0], right], [[0.0, 0.0], wrong]]
    )
    labels = torch.tensor([1, 1, 0, 0])
    log_probs = torch.tensor([[0.0, -1.0], [0.0, -2.0], [0.0, -3.0], [0.0, -4.0]])
    baselines = torch.tensor([[0.0, 0.5], [0.0, 0.5], [0.0, 0.5], [0.0, 0.5]])
    rollout = make_rollout(step_logits=logits, log_probs=log_probs, baselines=baselines)
    # Sparse rewards = returns at step 1: rows 1, 1, 0, 1.
    # Rows 0, 1, 3 give their label p = 3/4, row 2 gives it 1/4.
    classification = -(3 * math.log(0.75) + math.log(0.25)) / 4
    baseline_mse = (0.25 + 0.25 + 0.25 + 0.25) / 4  # (0.5 - G)^2 on the one acted step

    learned = RAMConfig(rollouts=2, baseline="learned")
    objective = hybrid_loss(
        rollout, labels, torch.zeros(4, 4), config=learned, reward_weights={"sparse": 1.0}
    )
    # advantages G - b: 0.5, 0.5, -0.5, 0.5; -mean of A * log pi:
    reinforce = -(0.5 * -1 + 0.5 * -2 + -0.5 * -3 + 0.5 * -4) / 4
    assert objective.metrics["loss/classification"].item() == pytest.approx(classification, abs=1e-6)
    assert objective.metrics["loss/baseline"].item() == pytest.approx(baseline_mse, abs=1e-6)
    assert objective.metrics["loss/reinforce"].item() == pytest.approx(reinforce, abs=1e-6)

    loo = RAMConfig(rollouts=2, baseline="rollouts")
    objective = hybrid_loss(rollout, labels, torch.zeros(4, 4), config=loo, reward_weights={"sparse": 1.0})
    # The other rollout's return is each row's baseline: 1, 1, 1, 0 -> advantages 0, 0, -1, 1.
    reinforce = -(0 * -1 + 0 * -2 + -1 * -3 + 1 * -4) / 4
    assert objective.metrics["loss/reinforce"].item() == pytest.approx(reinforce, abs=1e-6)
    # The learned baseline is still regressed on the returns.
    assert objective.metrics["loss/baseline"].item() == pytest.approx(baseline_mse, abs=1e-6)
    assert objective.loss.item() == pytest.approx(classification + baseline_mse + reinforce, abs=1e-6)


def test_rollout_consistency_by_hand_with_the_average_held_fixed() -> None:
    # B = 2 images x M = 2 rollouts, C = 2. Image 0: p = (1/2, 1/2) and (4/5, 1/5), so
    # p_bar = (0.65, 0.35); image 1: two equal rollouts, p_bar = p, no divergence.
    logits = torch.tensor([[0.0, 0.0], [math.log(4.0), 0.0], [math.log(3.0), 0.0], [math.log(3.0), 0.0]])
    logits.requires_grad_(True)
    term = rollout_consistency(logits, 2)
    kl_a = 0.65 * math.log(0.65 / 0.5) + 0.35 * math.log(0.35 / 0.5)
    kl_b = 0.65 * math.log(0.65 / 0.8) + 0.35 * math.log(0.35 / 0.2)
    assert term.item() == pytest.approx((kl_a + kl_b) / 4, abs=1e-6)
    # With p_bar held fixed, d KL(p_bar || softmax(z)) / dz = softmax(z) - p_bar, over 4 rows.
    term.backward()
    expected = torch.tensor([[-0.15, 0.15], [0.15, -0.15], [0.0, 0.0], [0.0, 0.0]]) / 4
    assert torch.allclose(logits.grad, expected, atol=1e-6)


def test_hybrid_loss_adds_the_weighted_consistency_of_an_images_rollouts() -> None:
    right, wrong = [0.0, math.log(3.0)], [math.log(3.0), 0.0]
    logits = torch.tensor(
        [[[0.0, 0.0], right], [[0.0, 0.0], right], [[0.0, 0.0], right], [[0.0, 0.0], wrong]]
    )
    rollout = make_rollout(step_logits=logits)
    labels, boxes = torch.tensor([1, 1, 0, 0]), torch.zeros(4, 4)
    plain = hybrid_loss(rollout, labels, boxes, config=RAMConfig(rollouts=2), reward_weights={"sparse": 1.0})
    assert "loss/consistency" not in plain.metrics
    weighted = RAMConfig(rollouts=2, consistency_weight=0.5)
    objective = hybrid_loss(rollout, labels, boxes, config=weighted, reward_weights={"sparse": 1.0})
    # Image 0's rollouts agree; image 1's give (1/4, 3/4) and (3/4, 1/4), p_bar = (1/2, 1/2):
    # each row's KL is (ln 2 + ln 2/3) / 2, and the mean over 4 rows is ln(4/3) / 4.
    expected = math.log(4.0 / 3.0) / 4
    assert objective.metrics["loss/consistency"].item() == pytest.approx(expected, abs=1e-6)
    assert objective.loss.item() == pytest.approx(plain.loss.item() + 0.5 * expected, abs=1e-6)


def test_rollout_options_are_checked() -> None:
    with pytest.raises(RamlabError, match="consistency_weight needs rollouts >= 2"):
        RAMConfig(consistency_weight=1.0)
    with pytest.raises(RamlabError, match="consistency_weight must be >= 0"):
        RAMConfig(rollouts=2, consistency_weight=-1.0)
    with pytest.raises(RamlabError, match="rollouts >= 2"):
        RAMConfig(baseline="rollouts")
    with pytest.raises(RamlabError, match="baseline must be one of learned, rollouts"):
        RAMConfig(rollouts=2, baseline="mean")
    with pytest.raises(RamlabError, match="rollouts must be >= 1"):
        RAMConfig(rollouts=0)
    assert RAM(config=RAMConfig(rollouts=4), image_size=(60, 60)).training_copies == 4


def test_box_distance_by_hand() -> None:
    # 40 (high) x 60 (wide) canvas: location units are 30 px in x and 20 px in y.
    # Box x 30..36, y 20..30. Centres: (0, 0) = pixel (30, 20), on the box's corner: inside;
    # (0.5, 0) = (45, 20): 9 px right -> 0.3; (-1, -1) = (0, 0): 30 px left, 20 px up -> sqrt(2).
    locations = torch.tensor([[[0.0, 0.0], [0.5, 0.0], [-1.0, -1.0]]])
    bboxes = torch.tensor([[30.0, 20.0, 36.0, 30.0]])
    distance = box_distance(locations, bboxes, (40, 60))
    assert torch.allclose(distance, torch.tensor([[0.0, 0.3, math.sqrt(2.0)]]))


def test_glimpse_distance_by_hand() -> None:
    # 20 (high) x 24 (wide) canvas. Image 0: (-1, -1), (1, -1), (1, 1) = pixels (0, 0), (24, 0),
    # (24, 20): pairs 24, 20 and sqrt(24^2 + 20^2) apart. Image 1: three glimpses on one spot.
    locations = torch.tensor([[[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0]], [[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]]])
    expected = (24.0 + 20.0 + math.hypot(24.0, 20.0)) / 3
    torch.testing.assert_close(glimpse_distance(locations, (20, 24)), torch.tensor([expected, 0.0]))
    assert glimpse_distance(locations[:, :1], (20, 24)).tolist() == [0.0, 0.0]  # one glimpse


def tiny_loader(bboxes: list[list[float]], labels: list[int]) -> SceneLoader:
    count = len(labels)
    images = (torch.rand(count, 60, 60, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    scenes = Scenes(
        images=images.numpy(),
        labels=torch.tensor(labels).numpy(),
        bboxes=torch.tensor(bboxes, dtype=torch.int32).numpy(),
    )
    return SceneLoader(scenes, batch_size=count)


def test_evaluation_counts_glimpses_inside_the_box() -> None:
    # One glimpse at the centre (pixel 30, 30): inside the first box, not the second.
    torch.manual_seed(0)
    model = RAM(config=RAMConfig(**tiny.TINY_RAM, glimpses=1, first_location="centre"), image_size=(60, 60))
    loader = tiny_loader([[20, 20, 40, 40], [0, 0, 10, 10]], [1, 2])
    result = evaluate(model, loader)
    assert result.in_box == [50.0]
    assert result.glimpse_distance == 0.0  # one glimpse: no pair
    assert result.protocol == "policy mean, one rollout"
    # Three rollouts an image, each at the centre: the shares are of all 6 rollouts, not 2 images.
    several = evaluate(model, loader, rollouts=3)
    assert several.in_box == [50.0] and several.glimpse_distance == 0.0


def test_the_error_after_each_glimpse_by_hand_over_batches() -> None:
    # A fixed rule: scene i (every pixel 10 i) predicts at glimpse t the class in row t of
    # PREDICTED. 5 scenes in batches of 2, 2 and 1; labels 0-4. Wrong: 4, 2, then 0 of 5.
    import numpy as np

    from ramlab.models.base import Model, ModelOutput

    predicted = torch.tensor([[9, 9, 9, 9, 4], [0, 1, 9, 9, 4], [0, 1, 2, 3, 4]])

    class Rule(Model):
        def forward(self, images, **_) -> ModelOutput:
            scene = (images[:, 0, 0, 0] * 255 / 10).round().long()
            step_logits = 10 * torch.nn.functional.one_hot(predicted[:, scene].T, 10).float()
            return ModelOutput(logits=step_logits[:, -1], step_logits=step_logits)

    images = np.stack([np.full((60, 60), 10 * i, np.uint8) for i in range(5)])
    scenes = Scenes(images=images, labels=np.arange(5), bboxes=np.zeros((5, 4), np.int32))
    result = evaluate(
        Rule(config=None, image_size=(60, 60), num_classes=10), SceneLoader(scenes, batch_size=2)
    )
    assert result.per_step_error == [80.0, 40.0, 0.0] and result.error == 0.0 and result.count == 5
    # -log softmax of 10 against nine 0s, in float32
    assert result.loss == pytest.approx(math.log(1 + 9 * math.exp(-10)), rel=1e-3)


def test_a_model_without_glimpses_is_measured_in_one_pass() -> None:
    # Not "policy mean, one rollout": a CNN has no policy and no rollout.
    from ramlab.models.registry import build_model

    torch.manual_seed(0)
    model = build_model("fc", None, image_size=(60, 60))
    result = evaluate(model, tiny_loader([[20, 20, 40, 40]], [1]))
    assert result.protocol == "one forward pass" and len(result.per_step_error) == 1


def test_monte_carlo_evaluation_averages_probabilities_and_says_so() -> None:
    torch.manual_seed(0)
    model = RAM(config=RAMConfig(**tiny.TINY_RAM, glimpses=3, std=0.5), image_size=(60, 60))
    loader = tiny_loader([[20, 20, 40, 40]] * 6, [0, 1, 2, 3, 4, 5])
    result = evaluate(model, loader, rollouts=4)
    assert "averaged over 4 rollouts" in result.protocol and "Monte Carlo" in result.protocol

    # The same number by hand: 4 sampled rollouts of each image with the evaluation's generator.
    from ramlab.evaluate import EVAL_SEED

    generator = torch.Generator().manual_seed(EVAL_SEED)
    with torch.no_grad():
        images = next(iter(loader)).images.repeat_interleave(4, dim=0)
        out = model(images, sample=True, generator=generator)
        probs = out.logits.softmax(1).view(6, 4, -1).mean(1)
        step_probs = out.step_logits.softmax(2).view(6, 4, 3, -1).mean(1)  # (image, glimpse, class)
    labels = torch.arange(6)
    expected_steps = [(step_probs[:, t].argmax(1) != labels).double().mean().item() * 100 for t in range(3)]
    assert result.per_step_error == pytest.approx(expected_steps)
    expected_error = (probs.argmax(1) != labels).double().mean().item() * 100
    expected_loss = -probs[torch.arange(6), labels].log().mean().item()
    assert result.error == pytest.approx(expected_error)
    assert result.loss == pytest.approx(expected_loss, abs=1e-5)
