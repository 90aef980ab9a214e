"""Optimizers and learning-rate schedules built from the config."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from Training.config import OptimizerConfig, ScheduleConfig


def build_optimizer(
    parameters: Iterable[torch.nn.Parameter], config: OptimizerConfig
) -> torch.optim.Optimizer:
    """Adam, AdamW or SGD (Nesterov momentum) with the configured learning rate and decay."""
    params = list(parameters)
    if config.name == "sgd":
        return torch.optim.SGD(
            params,
            lr=config.lr,
            momentum=config.momentum,
            nesterov=config.nesterov and config.momentum > 0,
            weight_decay=config.weight_decay,
        )
    optimizer = torch.optim.AdamW if config.name == "adamw" else torch.optim.Adam
    return optimizer(params, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)


class LRSchedule:
    """The configured schedule; call ``after_step`` after every optimizer step and
    ``after_validation(dice)`` after every validation.

    ``poly`` and ``onecycle`` advance per optimizer step over ``total_steps``; ``plateau``
    lowers the rate when the validation Dice stops improving; ``constant`` does nothing.
    """

    def __init__(
        self, optimizer: torch.optim.Optimizer, config: ScheduleConfig, total_steps: int
    ) -> None:
        self.config = config
        lr_scheduler = torch.optim.lr_scheduler
        self.scheduler: Any
        if config.name == "poly":
            self.scheduler = lr_scheduler.PolynomialLR(
                optimizer, total_iters=total_steps, power=config.power
            )
        elif config.name == "onecycle":
            if total_steps < 3:
                raise ValueError(f"the onecycle schedule needs >= 3 steps, got {total_steps}")
            # Both phases need at least one step (torch divides by their length).
            pct_start = min(max(config.pct_start, 1.5 / total_steps), 1.0 - 1.5 / total_steps)
            self.scheduler = lr_scheduler.OneCycleLR(
                optimizer,
                max_lr=[group["lr"] for group in optimizer.param_groups],
                total_steps=total_steps,
                pct_start=pct_start,
                div_factor=config.div_factor,
                final_div_factor=config.final_div_factor,
            )
        elif config.name == "plateau":
            self.scheduler = lr_scheduler.ReduceLROnPlateau(
                optimizer,
                mode="max",
                factor=config.factor,
                patience=config.patience,
                min_lr=config.min_lr,
            )
        else:
            self.scheduler = None
        self.optimizer = optimizer

    def after_step(self) -> None:
        if self.config.name in ("poly", "onecycle"):
            self.scheduler.step()

    def after_validation(self, dice: float) -> None:
        if self.config.name == "plateau":
            self.scheduler.step(dice)

    @property
    def lr(self) -> float:
        """Current learning rate of the first parameter group."""
        return float(self.optimizer.param_groups[0]["lr"])

    def state_dict(self) -> dict[str, Any]:
        return {} if self.scheduler is None else self.scheduler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state)
