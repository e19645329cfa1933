"""The Recurrent Attention Model (Mnih et al. 2014) and its one rollout.

    for t in 0..T-1:
        g_t = glimpse_net(retina(x, l_t), l_t)          # what and where
        h_t = core(h_{t-1}, drop(g_t))                   # recurrent state
        logits_t = classifier(drop(h_t))                 # anytime prediction
        l_{t+1} ~ policy(h_t.detach())                   # where to look next (h_t, undetached, with policy_trains_core)
    b_t = baseline(h_{t-1}.detach())                     # expected return of action l_t
drop is dropout (in training, with `dropout` > 0) on the core's two non-recurrent connections;
the policy and the baseline read the state undropped. With `policy: random` every l_t is drawn
uniformly over the canvas instead, in evaluation too, and there is no policy or baseline.

`rollout` is the only implementation of this loop; training, evaluation, robustness and
visualisation all call it (through `forward`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from ramlab.errors import RamlabError
from ramlab.losses import hybrid_loss
from ramlab.models.base import Model, ModelOutput, Objective
from ramlab.models.core import build_core
from ramlab.models.glimpse import GlimpseNetwork
from ramlab.models.heads import Baseline, Classifier
from ramlab.models.policy import LocationPolicy
from ramlab.models.ram_config import RAMConfig
from ramlab.models.registry import register_model
from ramlab.models.retina import Pyramid, Retina
from ramlab.rewards import parse_discounts, parse_reward


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
    sized_fields = ("scales",)  # enough for the widest patch to span 80% of each side

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
        # The random-policy control has neither: nothing chooses where it looks. The policy is
        # built all the same, so that for a seed the layers both have start as the learned RAM's.
        policy = LocationPolicy(
            hidden=config.hidden,
            std=config.std,
            learn_std=config.learn_std,
            mean=config.policy_mean,
            layer=config.policy_hidden,
        )
        self.policy = None if self.looks_at_random else policy
        self.classifier = Classifier(hidden=config.hidden, num_classes=num_classes)
        self.baseline = None if self.looks_at_random else Baseline(hidden=config.hidden)

    @property
    def looks_at_random(self) -> bool:
        return self.config.policy == "random"

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
        sampling (the random policy: the other T-1 places, uniform in [-1, 1], sampling or
        not), the dropout masks (2, B, T, hidden) in training with dropout), in the order
        `rollout` draws them; None for what this pass does not use."""
        batch, device, config = images.shape[0], images.device, self.config
        dtype = images.dtype  # the model's (a float64 or bfloat16 model is fed its own dtype)
        noise = None
        if self.looks_at_random:  # in one draw, row by row: a scene's places are the same in any batch
            places = torch.rand(batch, config.glimpses, 2, generator=generator, device=device, dtype=dtype)
            location, noise = places[:, 0] * 2.0 - 1.0, places[:, 1:] * 2.0 - 1.0
        else:
            location = self.first_location(batch, device, generator, dtype)
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
        places = noise if self.looks_at_random else None  # the random policy's, drawn
        noise = noise if sample and places is None else None
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
            if t + 1 == steps:
                break
            if places is not None:
                location = places[:, t]
            else:
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
        acted = torch.full((steps,), places is None, dtype=torch.bool, device=device)
        acted[0] = False  # the first location is not the policy's (nor any, drawn at random)
        baselines = (
            images.new_zeros(batch, steps) if self.baseline is None else self.baseline(h[:, :-1].detach())
        )
        return Rollout(
            locations=torch.stack(locations, dim=1),
            log_probs=log_probs,
            baselines=baselines,
            step_logits=self.classifier(h[:, 1:] if masks is None else h[:, 1:] * masks[1]),
            entropy=entropy,
            acted=acted,
            image_size=self.image_size,
            states=h[:, 1:],
        )

    def parameter_groups(self) -> list[dict]:
        """The location policy in a group of its own when its learning rate is scaled. At the
        default scale one group, as before the option: older runs' optimiser state resumes."""
        if self.config.policy_lr == 1.0 or self.policy is None:
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
