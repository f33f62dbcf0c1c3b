"""eejax: early-exit (multi-exit) neural networks in JAX/Flax.

    net = eejax.models.get("resnet_ee", num_classes=10)
    variables = net.init(rng, x)
    logits = net.apply_all(variables, x)                        # [K, B, C]
    policy = eejax.policies.max_prob([0.9, 0.9, 0.9])
    res = eejax.infer(net, variables, x, policy, engine="compact")
"""

from eejax import (
    calibration,
    engines,
    evaluation,
    gates,
    models,
    objectives,
    parallel,
    policies,
    readout,
    uncertainty,
)
from eejax.engines import InferenceResult, infer
from eejax.network import EarlyExitNet, ExitCosts

__all__ = ["EarlyExitNet", "ExitCosts", "InferenceResult", "calibration", "engines",
           "evaluation", "gates", "infer", "models", "objectives", "parallel", "policies",
           "readout", "uncertainty"]
__version__ = "0.1.0"
