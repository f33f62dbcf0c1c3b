"""JEI-DNN on the embedded MNIST digits: resnet_ee with learned uncertainty gates.

Warm-up on the early-exit-weighted loss for the first third of training, then gates and
classifiers jointly (the paper's weighted classifier loss). Sweep the cost trade-off lam with
`--config.objective.cost_tradeoff=...`; the gates policy exits when a gate's probability >= 0.5.

`python train.py --config configs/mnist5k_resnet_jei.py`
"""

import ml_collections

from configs import default


def get_config():
    config = default.get_config()
    config.model.gates = "uncertainty"  # or "hidden"
    config.objective = ml_collections.ConfigDict()
    config.objective.name = "jei"
    config.objective.cost_tradeoff = 0.1
    config.objective.gate_objective = "ce"
    config.objective.positive_weights = None
    config.objective.classifier_loss = "weighted"  # or "released"
    config.objective.warmup_steps = config.train.steps // 3
    config.objective.schedule = "joint"
    config.optimizer.gate_learning_rate_scale = 10.0
    config.policy.name = "gates"
    config.policy.threshold = 0.5
    return config
