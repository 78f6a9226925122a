"""Samples as attnviz keeps them: inputs, targets and ground-truth masks (a run's probe.npz
and heldout.npz, a task's draw, `attnviz data`'s files)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TaskBatch:
    x: np.ndarray  # (n, L, 1) float32 inputs (a user's model: its own shapes)
    y: np.ndarray  # (n, 1) float32 targets
    masks: dict[str, np.ndarray]  # mask name -> (n, L) bool
