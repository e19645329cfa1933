"""The RAM's random-policy control (`policy: random`): where it looks, what it has and what
trains it (the CLI end to end: test_cli_train.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_ram import IMAGE_SIZE, gen, images, make_ram

from ramlab.data.loader import SceneLoader
from ramlab.data.scenes import Scenes
from ramlab.errors import RamlabError
from ramlab.evaluate import check_sampling, evaluate
from ramlab.models.ram import RAMConfig
from ramlab.runconfig import RunConfig

# ---- the random-policy control (`policy: random`) ----------------------------------------------


@pytest.mark.parametrize("sample", [True, False])
def test_a_random_policy_looks_where_its_draws_say_and_has_no_policy(sample: bool) -> None:
    ram = make_ram(policy="random", first_location="centre")  # first_location is not read
    assert ram.looks_at_random and not make_ram().looks_at_random
    assert ram.policy is None and ram.baseline is None
    assert {name for name, _ in ram.named_children()} == {"glimpse", "core", "classifier"}
    learned = make_ram()
    assert ram.num_parameters() == learned.num_parameters() - sum(
        p.numel() for part in (learned.policy, learned.baseline) for p in part.parameters()
    )
    first, places, masks = ram.draw_randomness(images(), sample=sample, generator=gen(3))
    assert places.shape == (5, 3, 2) and masks is None  # T - 1 places, sampling or not
    assert (places.abs() <= 1).all() and places.std() > 0.3  # uniform on [-1, 1]: std 0.577
    rollout = ram.rollout(images(), sample=sample, randomness=(first, places, masks))
    assert torch.equal(rollout.locations, torch.cat([first[:, None], places], dim=1))
    assert not rollout.acted.any() and not rollout.log_probs.any() and not rollout.baselines.any()
    # A scene's places do not depend on how many scenes were drawn after it (a subset's are
    # the whole split's rows: test_evaluation_subset.py).
    few = ram.draw_randomness(images(3), sample=sample, generator=gen(3))
    assert torch.equal(few[0], first[:3]) and torch.equal(few[1], places[:3])
    # Two passes with the same generator: the same places (an evaluation repeats itself).
    assert torch.equal(ram.rollout(images(), sample=sample, generator=gen(4)).locations,
                       ram.rollout(images(), sample=sample, generator=gen(4)).locations)  # fmt: skip


def test_a_random_policy_trains_on_the_cross_entropy_alone() -> None:
    ram = make_ram(policy="random", reward="sparse+bbox", ce_all_steps=False)
    out = ram(images(), sample=True, generator=gen())
    labels = torch.arange(5) % 10
    objective = ram.objective(out, labels, torch.zeros(5, 4, dtype=torch.long))
    ce = torch.nn.functional.cross_entropy(out.logits, labels)
    assert torch.allclose(objective.loss, ce)
    # No reward is read and no policy's figures are logged (a reward logged beside learned
    # runs' would read as this run's policy's).
    assert set(objective.metrics) == {"loss/classification", "policy/location_spread"}
    assert objective.metrics["policy/location_spread"] > 0.3  # uniform on [-1, 1]: std 0.577
    objective.loss.backward()
    for part in (ram.glimpse, ram.core, ram.classifier):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())
    assert ram.parameter_groups()[0]["params"] == list(ram.parameters())  # no policy group
    with pytest.raises(RamlabError, match=r"ram policy must be one of learned, random; got .nowhere."):
        RAMConfig(policy="nowhere")


def test_a_random_policy_refuses_a_sampled_evaluation_and_averages_several_rollouts() -> None:
    ram = make_ram(policy="random")
    scenes = Scenes(
        np.zeros((4, *IMAGE_SIZE), dtype=np.uint8), np.arange(4), np.zeros((4, 4), dtype=np.int32)
    )
    loader = SceneLoader(scenes, batch_size=3)
    with pytest.raises(RamlabError, match=r"no policy to sample.*drop --sample"):
        evaluate(ram, loader, sample=True)  # the same numbers as the mean's, labelled sampled
    with pytest.raises(RamlabError, match="no policy to sample"):
        check_sampling(ram, sample=True, rollouts=1)
    assert evaluate(ram, loader).protocol == "random glimpse locations, one rollout"
    # A random RAM's validation with eval_sample would fail after its first epoch: refused before.
    random = {"model": "ram", "data": "mnist", "model_config": {"policy": "random"}}
    with pytest.raises(RamlabError, match=r"eval_sample is for a learned policy.*none to sample"):
        RunConfig.from_dict({**random, "train": {"eval_sample": True}})
    RunConfig.from_dict({**random, "train": {"eval_rollouts": 3}})  # M random placements averaged
    averaged = evaluate(ram, loader, rollouts=2)
    assert averaged.protocol.startswith("random glimpse locations, class probabilities averaged over 2")
