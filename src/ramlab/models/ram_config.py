"""The RAM's configuration: its architecture and its reinforcement-learning objective, each
field with its default and help text (`ramlab train ram --help` lists them), checked when made."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ramlab.config import check_finite, choice, param
from ramlab.errors import RamlabError
from ramlab.models.core import CORES
from ramlab.models.glimpse import COMBINES
from ramlab.models.policy import MAX_LOG_STD, MIN_STD, POLICY_MEANS
from ramlab.rewards import parse_reward

FIRST_LOCATIONS = ("random", "centre")
POLICIES = ("learned", "random")
BASELINES = ("learned", "rollouts")


@dataclass(frozen=True)
class RAMConfig:
    """The RAM's architecture and its reinforcement-learning objective."""

    glimpses: int = param(6, "number of glimpses T")
    glimpse_size: int = param(12, "side g of the smallest glimpse patch in pixels")
    scales: int = param(3, "number of patches k per glimpse, each twice as wide as the last")
    glimpse_hidden: int = param(128, "units of the glimpse network's 'what' layer (h_g)")
    glimpse_conv: int = param(
        0,
        "channels of a 3x3 convolution (ReLU, then a 2x2 max-pool) over the glimpse, its k "
        "patches as channels, that the 'what' layer reads instead of the pixels; needs an even "
        "glimpse_size. 0: none, the paper's fully connected glimpse network",
    )
    glimpse_combine: str = param(
        "sum",
        "how the glimpse network joins what and where: sum (the paper's g = relu(W_hg h_g + "
        "W_hl h_l + b)) or product (relu(W_hg h_g + b) * relu(W_hl h_l + b'), the deep recurrent "
        "attention model's multiplicative form, Ba et al. 2015)",
    )
    location_hidden: int = param(128, "units of the glimpse network's 'where' layer (h_l)")
    hidden: int = param(256, "units of the glimpse feature g_t and of the core state h_t")
    core: str = param("rnn", "core network: rnn (the paper's ReLU RNN) or lstm")
    std: float = param(0.1, "std of the Gaussian location policy (initial std if learned)")
    learn_std: bool = param(False, "learn the std: the policy outputs a mean and a log-std")
    policy_mean: str = param(
        "tanh",
        "the policy's mean: tanh of a linear layer (bounded; its gradient vanishes near the edge) "
        "or linear (the paper's; clamped to the canvas for the retina)",
    )
    policy_hidden: int = param(
        0,
        "units of a ReLU layer between the state and the policy's mean (a deeper location "
        "network, as in a later version of a public PyTorch RAM). 0: none, the paper's single "
        "affine map",
    )
    first_location: str = param("random", "first glimpse location: random (the paper) or centre")
    policy: str = param(
        "learned",
        "where the glimpses go: learned (the location policy, trained by REINFORCE) or random "
        "(every glimpse at a place drawn uniformly over the canvas, in training and evaluation "
        "alike: the paper's 'random glimpses' control, what a learned policy adds; no policy or "
        "baseline is built, and the reward, the policy's settings and first_location are not read)",
    )
    policy_trains_core: bool = param(
        False,
        "let the REINFORCE gradient reach the core and glimpse network through the policy's input "
        "(the paper writes its policy gradient over all the agent's parameters; the Torch7 RAM "
        "example does this; the policy itself still learns from REINFORCE only; a learned std's "
        "entropy bonus, part of the policy's objective, reaches the core too). Off (the "
        "default, as in most PyTorch versions): the policy reads a detached state, and the core "
        "learns from the classification loss alone, so nothing asks it to keep where the digit "
        "is. On in the translated60 and cluttered recipes, with the sparse reward at a tenth (on "
        "cluttered100 it sent far more glimpses to the digit; on mnist worse at weight 1 and no "
        "better at a tenth; results/recipes/TUNING.md)",
    )
    policy_lr: float = param(
        1.0,
        "multiplier of the learning rate for the location policy alone. It learns from REINFORCE "
        "only, and Adam makes its step size follow the learning rate whatever the REINFORCE "
        "weight, so this, not reinforce_weight, sets how fast (and how far on noise) it moves",
    )
    reward: str = param(
        "sparse", "reward, e.g. sparse, sparse+0.5*bbox, 0.1*sparse+0.1*infogain@0 (@G: own discount)"
    )
    gamma: float = param(1.0, "discount of the reward-to-go (a reward term's own NAME@G keeps G)")
    ce_all_steps: bool = param(False, "cross-entropy on every step's logits, not only the last")
    label_smoothing: float = param(
        0.0,
        "label smoothing of the training cross-entropy (Szegedy et al. 2016): the target puts "
        "1 - e on the label and e/C on every class. The reward and the evaluation loss are "
        "unchanged. 0: none",
    )
    reinforce_weight: float = param(1.0, "weight of the REINFORCE term in the hybrid loss")
    baseline_weight: float = param(1.0, "weight of the baseline's MSE in the hybrid loss")
    entropy_weight: float = param(0.0, "entropy bonus for a learned std (0: none)")
    dropout: float = param(
        0.0,
        "dropout rate in training on the core's non-recurrent connections (Zaremba et al. "
        "2014): the glimpse feature g_t into the core and the state h_t into the classifier. "
        "The policy and the baseline read the state undropped. 0: none",
    )
    rollouts: int = param(
        1,
        "M: in training, each image is seen by M rollouts in the same batch (batch_size images "
        "become batch_size x M rollouts), each with its own reward, baseline and advantage",
    )
    consistency_weight: float = param(
        0.0,
        "weight of a consistency loss between an image's M rollouts (needs rollouts >= 2): the "
        "mean KL divergence from the image's average final class distribution, held fixed, to "
        "each rollout's. It asks one rollout to predict what the average of several would (on "
        "translated60 ten sampled rollouts averaged read 0.84% validation against 1.14% for one "
        "with the policy mean), in the spirit of R-Drop (Liang et al. 2021), which compares two "
        "dropout passes. 0: none",
    )
    baseline: str = param(
        "learned",
        "baseline of the REINFORCE advantage: learned (the paper's b_t, regressed on the return) "
        "or rollouts (the mean return of the image's other M-1 rollouts; needs rollouts >= 2)",
    )

    def __post_init__(self) -> None:
        check_finite(self)
        for name in (
            "glimpses",
            "glimpse_size",
            "scales",
            "glimpse_hidden",
            "location_hidden",
            "hidden",
        ):
            if getattr(self, name) < 1:
                raise RamlabError(f"ram {name} must be a positive integer, got {getattr(self, name)}")
        choice("ram core", self.core, CORES)
        choice("ram first_location", self.first_location, FIRST_LOCATIONS)
        choice("ram policy", self.policy, POLICIES)
        choice("ram policy_mean", self.policy_mean, POLICY_MEANS)
        choice("ram baseline", self.baseline, BASELINES)
        choice("ram glimpse_combine", self.glimpse_combine, COMBINES)
        if self.glimpse_conv < 0:
            raise RamlabError(f"ram glimpse_conv must be >= 0 (0: no convolution), got {self.glimpse_conv}")
        if self.glimpse_conv and self.glimpse_size % 2:
            raise RamlabError(
                f"ram glimpse_conv needs an even glimpse_size (its 2x2 pooling), got {self.glimpse_size}"
            )
        if self.policy_hidden < 0:
            raise RamlabError(
                f"ram policy_hidden must be >= 0 (0: no hidden layer), got {self.policy_hidden}"
            )
        if self.rollouts < 1:
            raise RamlabError(f"ram rollouts must be >= 1, got {self.rollouts}")
        if not self.consistency_weight >= 0 or not math.isfinite(self.consistency_weight):
            raise RamlabError(f"ram consistency_weight must be >= 0, got {self.consistency_weight}")
        if self.consistency_weight and self.rollouts < 2:
            raise RamlabError(
                "ram consistency_weight needs rollouts >= 2 (it compares an image's rollouts); "
                "add --rollouts M"
            )
        if self.baseline == "rollouts" and self.rollouts < 2:
            raise RamlabError("ram baseline rollouts needs rollouts >= 2 (the mean of the other rollouts)")
        if not 0 < self.std <= math.exp(MAX_LOG_STD):
            raise RamlabError(
                f"ram std must be in (0, e] ({math.exp(MAX_LOG_STD):.4g}: locations span -1..1, and a wider "
                f"policy puts most glimpses on the canvas's edge), got {self.std}"
            )
        if self.learn_std and not MIN_STD < self.std < math.exp(MAX_LOG_STD):
            raise RamlabError(
                f"ram std {self.std} with learn_std: a learned std is kept strictly inside {MIN_STD:g}..e "
                f"({math.exp(MAX_LOG_STD):.4g}), so it must start there"
            )
        if not self.policy_lr > 0:
            raise RamlabError(
                f"ram policy_lr must be > 0 (a multiplier of the learning rate), got {self.policy_lr}"
            )
        for name in ("reinforce_weight", "baseline_weight", "entropy_weight"):
            if getattr(self, name) < 0:
                raise RamlabError(f"ram {name} must be >= 0 (0: no such term), got {getattr(self, name)}")
        if self.entropy_weight and not self.learn_std:
            raise RamlabError(
                "ram entropy_weight needs learn_std true: a fixed std's entropy is a constant, "
                "with no gradient, so the bonus would do nothing"
            )
        if not 0 <= self.gamma <= 1:
            raise RamlabError(f"ram gamma must be in [0, 1], got {self.gamma}")
        if not 0 <= self.dropout < 1:
            raise RamlabError(f"ram dropout must be in [0, 1), got {self.dropout}")
        if not 0 <= self.label_smoothing < 1:
            raise RamlabError(f"ram label_smoothing must be in [0, 1), got {self.label_smoothing}")
        parse_reward(self.reward)

    @property
    def widest_patch(self) -> int:
        return self.glimpse_size * 2 ** (self.scales - 1)
