"""A small MSDNet (4 exits, 3 scales) trained jointly on the embedded MNIST digits.

The joint half of the BoostNet comparison on the embedded data (same steps and seed as
`mnist5k_msdnet_boost`): `python train.py --config configs/mnist5k_msdnet_joint.py`.
"""

import ml_collections

from configs import default


def get_config():
    config = default.get_config()
    config.model = ml_collections.ConfigDict()
    config.model.name = "msdnet"
    config.model.num_blocks = 4
    config.model.step_mode = "even"
    config.model.step = 2
    config.model.base = 2
    config.model.channels = 8
    config.model.growth_rate = 4
    config.model.gr_factor = (1, 2, 4)
    config.model.bn_factor = (1, 2, 4)
    config.model.layout = "cifar"
    config.objective.name = "joint"
    config.objective.weights = "uniform"
    return config
