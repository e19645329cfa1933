"""--init-from: a run starts from another run's weights (fine-tuning, branching)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from test_trainer import assert_same_weights, tiny_config, weights

from ramlab.checkpoint import init_weights
from ramlab.errors import RamlabError
from ramlab.runconfig import RunConfig, build_run_model
from ramlab.trainer import Trainer


def test_a_run_starts_from_the_weights_it_is_given(fake_mnist, tmp_path) -> None:
    Trainer(tiny_config(epochs=1), tmp_path / "a").fit()
    source = weights(tmp_path / "a" / "best.pt")
    # SGD with a learning rate far below float32's resolution leaves every weight unchanged,
    # so the branched run ends with exactly the weights it started from.
    config = tiny_config(
        epochs=1, optimizer="sgd", momentum=0.0, lr=1e-30, init_from=str(tmp_path / "a"), seed=5
    )
    Trainer(config, tmp_path / "b").fit()
    assert_same_weights(weights(tmp_path / "b" / "best.pt"), source)
    # ... and without init_from the same run starts elsewhere.
    Trainer(
        dataclasses.replace(config, train=dataclasses.replace(config.train, init_from=None)), tmp_path / "c"
    ).fit()
    assert not torch.equal(
        weights(tmp_path / "c" / "best.pt")["classifier.fc.weight"], source["classifier.fc.weight"]
    )


def test_weights_of_another_shape_are_refused_with_the_settings_to_give(fake_mnist, tmp_path) -> None:
    Trainer(tiny_config(epochs=1), tmp_path / "a").fit()
    config = tiny_config()
    wider = RunConfig.from_dict(
        {**config.to_dict(), "model_config": {**config.to_dict()["model_config"], "hidden": 20}}
    )
    with pytest.raises(
        RamlabError, match=r"best\.pt: its weights do not fit this model \(.*other shape: .*hidden"
    ):
        init_weights(build_run_model(wider), tmp_path / "a" / "best.pt")
    with pytest.raises(RamlabError, match="no checkpoint there"):
        init_weights(build_run_model(config), tmp_path / "nowhere")


def test_a_runs_config_given_for_its_weights_is_named_not_called_damaged(fake_mnist, tmp_path) -> None:
    Trainer(tiny_config(epochs=1), tmp_path / "a").fit()
    model = build_run_model(tiny_config(epochs=1))
    for name in ("config.yaml", "result.json"):
        with pytest.raises(RamlabError) as caught:
            init_weights(model, tmp_path / "a" / name)
        said = str(caught.value)
        assert "not a checkpoint but a" in said and "best.pt" in said and "damaged" not in said
