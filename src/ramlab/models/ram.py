"""The Recurrent Attention Model (Mnih et al. 2014) and its one rollout.

    for t in 0..T-1:
        g_t = glimpse_net(retina(x, l_t), l_t)          # what and where
        h_t = core(h_{t-1}, drop(g_t))                   # recurrent state
        logits_t = classifier(drop(h_t))                 # anytime prediction
        l_{t+1} ~ policy(h_t.detach())                   # where to look next (h_t, undetached, with policy_trains_core)
    b_t = baseline(h_{t-1}.detach())                     # expected return of action l_t
drop is dropout (in training, with `dropout` > 0) on the core's two non-recurrent connections;
the policy and the baseline read the state undropped.

`rollout` is the only implementation of this loop; training, evaluation, robustness and
visualisation all call it (through `forward`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from ramlab.config import check_finite, choice, param
from ramlab.errors import RamlabError
from ramlab.losses import hybrid_loss
from ramlab.models.base import Model, ModelOutput, Objective
from ramlab.models.core import CORES, build_core
from ramlab.models.glimpse import COMBINES, GlimpseNetwork
from ramlab.models.heads import Baseline, Classifier
from ramlab.models.policy import MAX_LOG_STD, MIN_STD, POLICY_MEANS, LocationPolicy
from ramlab.models.registry import register_model
from ramlab.models.retina import Pyramid, Retina
from ramlab.rewards import parse_discounts, parse_reward

FIRST_LOCATIONS = ("random", "centre")
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
    policy_trains_core: bool = param(
        False,
        "let the REINFORCE gradient reach the core and glimpse network through the policy's input "
        "(the paper writes its policy gradient over all the agent's parameters; the Torch7 RAM "
        "example does this; the policy itself still learns from REINFORCE only). Off (the "
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
        if not self.std > 0 or not math.isfinite(self.std):
            raise RamlabError(f"ram std must be > 0, got {self.std}")
        if self.learn_std and not MIN_STD <= self.std <= math.exp(MAX_LOG_STD):
            raise RamlabError(
                f"ram std {self.std} with learn_std: a learned std is kept in {MIN_STD:g}..e "
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


@dataclass
class Rollout:
    """What one pass of the RAM produced. Index t is glimpse t throughout."""

    locations: torch.Tensor  # (B, T, 2) where glimpse t looked, (x, y) in [-1, 1]
    log_probs: torch.Tensor  # (B, T) log pi(l_t | h_{t-1}); 0 where no policy acted
    baselines: torch.Tensor  # (B, T) b_t, the return expected before choosing l_t
    step_logits: torch.Tensor  # (B, T, C) the classifier on h_t
    entropy: torch.Tensor  # (B, T) entropy of the policy that chose l_t; 0 where none did
    acted: torch.Tensor  # (T,) bool: l_t was chosen by the policy (and is trained)
    image_size: tuple[int, int]  # (H, W), to turn locations into pixels
    states: torch.Tensor | None = None  # (B, T, hidden) h_t, the core's state after glimpse t


@register_model("ram")
class RAM(Model):
    """The Recurrent Attention Model: glimpses, a recurrent core and a location policy."""

    config_class = RAMConfig

    def __init__(self, *, config: RAMConfig, image_size: tuple[int, int], num_classes: int = 10) -> None:
        super().__init__(config=config, image_size=image_size, num_classes=num_classes)
        self.check_image_size(config, image_size)
        self.reward_weights = parse_reward(config.reward)
        self.reward_discounts = parse_discounts(config.reward)
        self.retina = Retina(glimpse_size=config.glimpse_size, scales=config.scales, image_size=image_size)
        self.glimpse = GlimpseNetwork(
            glimpse_dim=self.retina.output_size,
            what_hidden=config.glimpse_hidden,
            where_hidden=config.location_hidden,
            out_dim=config.hidden,
            patches=config.scales,
            conv_channels=config.glimpse_conv,
            combine=config.glimpse_combine,
        )
        self.core = build_core(config.core, input_dim=config.hidden, hidden=config.hidden)
        self.policy = LocationPolicy(
            hidden=config.hidden,
            std=config.std,
            learn_std=config.learn_std,
            mean=config.policy_mean,
            layer=config.policy_hidden,
        )
        self.classifier = Classifier(hidden=config.hidden, num_classes=num_classes)
        self.baseline = Baseline(hidden=config.hidden)

    def first_location(
        self, batch: int, device: torch.device, generator: torch.Generator | None, dtype: torch.dtype
    ) -> torch.Tensor:
        if self.config.first_location == "centre":
            return torch.zeros(batch, 2, device=device, dtype=dtype)
        return torch.rand(batch, 2, generator=generator, device=device, dtype=dtype) * 2.0 - 1.0

    def draw_randomness(
        self, images: torch.Tensor, *, sample: bool, generator: torch.Generator | None
    ) -> tuple[torch.Tensor | None, ...]:
        """(first location (B, 2), the policy's standard-normal noise (B, T-1, 2) when
        sampling, the dropout masks (2, B, T, hidden) in training with dropout), in the order
        `rollout` draws them; None for what this pass does not use."""
        batch, device, config = images.shape[0], images.device, self.config
        dtype = images.dtype  # the model's (a float64 or bfloat16 model is fed its own dtype)
        location = self.first_location(batch, device, generator, dtype)
        noise = None
        if sample:
            shape = (batch, config.glimpses - 1, 2)
            noise = torch.randn(shape, generator=generator, device=device, dtype=dtype)
        masks = None
        if self.training and config.dropout > 0:
            keep = 1.0 - config.dropout
            shape = (2, batch, config.glimpses, config.hidden)
            masks = (torch.rand(shape, generator=generator, device=device) < keep).to(images.dtype) / keep
        return location, noise, masks

    def sense(self, images: torch.Tensor) -> Pyramid:
        """The retina's block-sum tables of `images`, which every glimpse reads."""
        return self.retina.prepare(images)

    def rollout(
        self,
        images: torch.Tensor,
        *,
        sample: bool,
        generator: torch.Generator | None = None,
        randomness: tuple[torch.Tensor, ...] | None = None,
        pyramid: Pyramid | None = None,
    ) -> Rollout:
        """images (B, 1, H, W) -> Rollout. `sample`: draw locations (training) or use the mean.
        `randomness`: the draws of `draw_randomness`, made by the caller (the compiled fast
        path draws them outside its graph); drawn here when None. `pyramid`: the retina's
        tables of these images (`sense`), likewise; built here when None."""
        if randomness is None:
            randomness = self.draw_randomness(images, sample=sample, generator=generator)
        location, noise, masks = randomness
        noise = noise if sample else None
        batch, device, steps = images.shape[0], images.device, self.config.glimpses
        if pyramid is None:
            pyramid = self.sense(images)
        state = None  # all zeros before the first glimpse
        hiddens = [images.new_zeros(batch, self.config.hidden)]
        locations, actions, means, log_stds = [location], [], [], []
        for t in range(steps):
            g = self.glimpse(self.retina.glimpse(pyramid, location), location)
            state = self.core(g if masks is None else g * masks[0, :, t], state)
            hiddens.append(self.core.hidden(state))
            if t + 1 < steps:
                state_in = hiddens[-1] if self.config.policy_trains_core else hiddens[-1].detach()
                mu, log_std = self.policy(state_in)
                if noise is None:
                    location = self.policy.location(mu)
                else:
                    action = self.policy.sample(mu, log_std, noise[:, t])
                    location = self.policy.location(action)
                    actions.append(action)
                    means.append(mu)
                    log_stds.append(log_std)
                locations.append(location)
        h = torch.stack(hiddens, dim=1)  # (B, T+1, hidden): h_{-1} = initial state, then h_0..h_{T-1}
        log_probs = images.new_zeros(batch, steps)  # (B, T); 0 where no policy acted
        entropy = images.new_zeros(batch, steps)
        if noise is not None and steps > 1:
            mu = torch.stack(means, dim=1)  # (B, T-1, 2)
            log_std = torch.stack(log_stds, dim=1) if self.config.learn_std else log_stds[0]
            log_probs[:, 1:] = self.policy.log_prob(torch.stack(actions, dim=1), mu, log_std)
            entropy[:, 1:] = self.policy.entropy(log_std, mu)
        acted = torch.ones(steps, dtype=torch.bool, device=device)
        acted[0] = False  # the first location is not the policy's
        return Rollout(
            locations=torch.stack(locations, dim=1),
            log_probs=log_probs,
            baselines=self.baseline(h[:, :-1].detach()),
            step_logits=self.classifier(h[:, 1:] if masks is None else h[:, 1:] * masks[1]),
            entropy=entropy,
            acted=acted,
            image_size=self.image_size,
            states=h[:, 1:],
        )

    def parameter_groups(self) -> list[dict]:
        """The location policy in a group of its own when its learning rate is scaled. At the
        default scale one group, as before the option: older runs' optimiser state resumes."""
        if self.config.policy_lr == 1.0:
            return super().parameter_groups()
        policy = {id(p) for p in self.policy.parameters()}
        return [
            {"params": [p for p in self.parameters() if id(p) not in policy]},
            {"params": list(self.policy.parameters()), "lr_scale": self.config.policy_lr},
        ]

    def forward(
        self,
        images: torch.Tensor,
        *,
        sample: bool = False,
        generator: torch.Generator | None = None,
        randomness: tuple[torch.Tensor, ...] | None = None,
        sensed: Pyramid | None = None,
    ) -> ModelOutput:
        rollout = self.rollout(
            images, sample=sample, generator=generator, randomness=randomness, pyramid=sensed
        )
        return ModelOutput(
            logits=rollout.step_logits[:, -1], step_logits=rollout.step_logits, rollout=rollout
        )

    def objective(self, out: ModelOutput, labels: torch.Tensor, bboxes: torch.Tensor) -> Objective:
        return hybrid_loss(
            out.rollout,
            labels,
            bboxes,
            config=self.config,
            reward_weights=self.reward_weights,
            reward_discounts=self.reward_discounts,
        )

    @property
    def training_copies(self) -> int:
        return self.config.rollouts

    @classmethod
    def check_image_size(cls, config: RAMConfig, image_size: tuple[int, int]) -> None:
        height, width = image_size
        if config.glimpse_size > min(height, width):
            raise RamlabError(
                f"ram glimpse_size {config.glimpse_size} is wider than the {height}x{width} canvas"
            )
        if config.widest_patch > 2 * max(height, width):
            raise RamlabError(
                f"ram's widest patch ({config.glimpse_size} x 2^{config.scales - 1} = "
                f"{config.widest_patch} px) is over twice the {height}x{width} canvas; use fewer scales"
            )

    @classmethod
    def config_for_image_size(
        cls, config: RAMConfig, image_size: int, *, trained_size: int | None = None
    ) -> RAMConfig:
        """Keep the glimpse size; add scales until the widest patch spans at least 80% of
        the image (the fraction 48/60 of the paper's 60×60 set-up). A config trained on
        images of `trained_size` keeps its own scales there and gains (or loses) one for each
        doubling (halving) of the side: the mnist recipe's one scale at 28 px stays one."""
        if trained_size is not None:
            return replace(config, scales=max(1, config.scales + round(math.log2(image_size / trained_size))))
        scales = 1
        while config.glimpse_size * 2 ** (scales - 1) < 0.8 * image_size:
            scales += 1
        return replace(config, scales=scales)
