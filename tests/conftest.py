"""Shared fixtures: a tiny resnet_ee and references written in plain NumPy."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Tests may build an 8-device CPU mesh; the flag must be set before jax is imported.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # train.py and configs/

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import eejax  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_net():
    """A 3-exit resnet_ee on 12x12x1 inputs with random (untrained) weights."""
    net = eejax.models.get("resnet_ee", num_classes=5, input_shape=(12, 12, 1), num_exits=3,
                           width=4)
    variables = net.init(jax.random.key(0), np.zeros((1, 12, 12, 1), np.float32))
    return net, variables


def images(batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(batch, 12, 12, 1)).astype(np.float32)


def np_softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def np_first_exit(exit_logits: np.ndarray, rule: str, thresholds=(), patience: int = 0,
                  targets=None) -> np.ndarray:
    """Reference exit selection, one sample at a time. exit_logits: [K, B, C] -> exits [B]."""
    num_exits, batch, _ = exit_logits.shape
    exits = np.full(batch, num_exits - 1)
    for i in range(batch):
        previous, count = -1, 0
        for k in range(num_exits - 1):
            p = np_softmax(exit_logits[k, i])
            if rule == "max_prob":
                fire = p.max() >= thresholds[k]
            elif rule == "entropy":
                fire = -(p * np.log(p)).sum() <= thresholds[k]
            elif rule == "margin":
                top = np.sort(p)[::-1]
                fire = top[0] - top[1] >= thresholds[k]
            elif rule == "patience":
                prediction = int(np.argmax(p))
                count = count + 1 if prediction == previous else 0
                previous = prediction
                fire = count >= patience
            elif rule == "oracle":
                fire = targets[i] <= k
            if fire:
                exits[i] = k
                break
    return exits


def np_boosted(raw: np.ndarray, reweight) -> np.ndarray:
    """Reference BoostNet ensemble, exit by exit: G_0 = f_0, G_k = f_k + r_{k-1} G_{k-1}."""
    raw = raw.astype(np.float64)
    reweight = np.broadcast_to(np.asarray(reweight, np.float64), (raw.shape[0] - 1,))
    out = [raw[0]]
    for k in range(1, raw.shape[0]):
        out.append(raw[k] + reweight[k - 1] * out[-1])
    return np.stack(out)


@pytest.fixture(scope="session")
def tiny_msdnet():
    """A 3-exit MSDNet (3 scales, prune "max" drops two of them) on 12x12x1 inputs."""
    net = eejax.models.get("msdnet", num_classes=5, input_shape=(12, 12, 1), num_blocks=3,
                           base=1, step=1, channels=4, growth_rate=2)
    variables = net.init(jax.random.key(1), np.zeros((1, 12, 12, 1), np.float32))
    return net, variables
