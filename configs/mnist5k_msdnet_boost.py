"""BoostNet on the embedded MNIST digits: the small MSDNet of `mnist5k_msdnet_joint`, trained
with the boosted objective (reweight 0.5, gradient rescaling), same steps and seed.

`python train.py --config configs/mnist5k_msdnet_boost.py`
"""

import ml_collections

from configs import mnist5k_msdnet_joint


def get_config():
    config = mnist5k_msdnet_joint.get_config()
    config.objective = ml_collections.ConfigDict()
    config.objective.name = "boosted"
    config.objective.reweight = 0.5
    config.objective.gradient_rescale = True
    return config
