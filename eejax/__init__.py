"""eejax: early-exit (multi-exit) neural networks in JAX/Flax.

    net = eejax.models.get("resnet_ee", num_classes=10)
    variables = net.init(rng, x)
    logits = net.apply_all(variables, x)                        # [K, B, C]
    policy = eejax.policies.max_prob([0.9, 0.9, 0.9])
    res = eejax.infer(net, variables, x, policy, engine="compact")
"""

from eejax import engines, evaluation, models, objectives, policies, readout
from eejax.engines import InferenceResult, infer
from eejax.network import EarlyExitNet, ExitCosts

__all__ = ["EarlyExitNet", "ExitCosts", "InferenceResult", "engines", "evaluation", "infer",
           "models", "objectives", "policies", "readout"]
__version__ = "0.1.0"
