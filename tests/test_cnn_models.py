"""The ResNet and the paper's FC and conv nets: sizes, shapes and config validation."""

from __future__ import annotations

import pytest
import torch

from ramlab.config import from_dict, to_dict
from ramlab.errors import RamlabError
from ramlab.models.baselines import ConvNetConfig, FCConfig
from ramlab.models.registry import build_model
from ramlab.models.resnet import ResNetConfig
from ramlab.runconfig import RunConfig


def test_default_resnet_is_low_parameter_and_takes_any_image_size():
    torch.manual_seed(0)
    model = build_model("resnet", image_size=(60, 60)).eval()
    assert 100_000 <= model.num_parameters() <= 300_000
    with torch.no_grad():
        for height, width in ((28, 28), (60, 60), (100, 37)):
            out = model(torch.rand(2, 1, height, width))
            assert out.logits.shape == (2, 10)
            assert out.step_logits.shape == (2, 1, 10)


def test_resnet_widths_depths_and_strides_shape_the_network():
    model = build_model(
        "resnet", {"widths": [8, 12], "depths": [1, 3], "strides": [1, 2]}, image_size=(28, 28)
    )
    assert [len(stage) for stage in model.stages] == [1, 3]
    assert model.head.in_features == 12
    assert model.forward_features(torch.rand(3, 1, 28, 28)).shape == (3, 12)


def test_resnet_config_lists_become_tuples_so_a_saved_config_compares_equal():
    # The CLI hands lists (--widths 16 32 64); the YAML round trip gives tuples back.
    config = RunConfig.from_dict({"model": "resnet", "data": "translated60"})
    overridden = config.with_overrides(train={}, model_config={"widths": [8, 16, 32]})
    assert overridden.model_config.widths == (8, 16, 32)
    assert RunConfig.from_dict(overridden.to_dict()) == overridden


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"widths": (16, 32), "depths": (1, 1, 1)}, "one entry per stage"),
        ({"widths": (16, 0, 64)}, "must be positive"),
        ({"stem_kernel": 2, "stem_stride": 4}, "skips pixels"),
    ],
)
def test_resnet_config_rejects_bad_values(fields, message):
    with pytest.raises(RamlabError, match=message):
        ResNetConfig(**fields)


def test_convnet_follows_the_paper_on_60x60():
    model = build_model("convnet", image_size=(60, 60))
    assert model.conv.out_channels == 8 and model.conv.kernel_size == (10, 10) and model.conv.stride == (5, 5)
    assert model.hidden.in_features == 8 * 11 * 11  # (60 - 10) / 5 + 1 = 11
    assert model.hidden.out_features == 256
    out = model(torch.rand(2, 1, 60, 60))
    assert out.logits.shape == (2, 10)


def test_fc_has_the_configured_hidden_layers():
    model = build_model("fc", {"hidden": 64}, image_size=(28, 28))
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 64), (64, 64), (64, 10)]
    assert to_dict(from_dict(FCConfig, {"hidden": 64}, where="test")) == {"hidden": 64, "layers": 2}


def test_baseline_configs_reject_bad_values():
    with pytest.raises(RamlabError, match="hidden"):
        FCConfig(hidden=0)
    with pytest.raises(RamlabError, match="filters"):
        ConvNetConfig(filters=0)
    with pytest.raises(RamlabError, match="larger than"):
        build_model("convnet", {"kernel": 30}, image_size=(28, 28))
    with pytest.raises(
        RamlabError, match=r"convnet kernel \(2\) must be >= stride \(5\), or the convolution skips"
    ):
        ConvNetConfig(kernel=2, stride=5)  # 3 of every 5 rows and columns unseen
    assert ConvNetConfig(kernel=5, stride=5).stride == 5  # tiling the image exactly is fine
