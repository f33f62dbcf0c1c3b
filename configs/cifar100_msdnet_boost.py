"""BoostNet on CIFAR-100 (Yu et al., AAAI 2023): the MSDNet and schedule of
`cifar100_msdnet_joint`, trained with the boosted objective (reweight 0.5) and gradient
rescaling, as the official `msdnet_scripts/train_cifar100_any.sh` does.

`python train.py --config configs/cifar100_msdnet_boost.py --workdir DIR
 --config.data.data_dir=~/tensorflow_datasets`
"""

import ml_collections

from configs import cifar100_msdnet_joint


def get_config():
    config = cifar100_msdnet_joint.get_config()
    config.objective = ml_collections.ConfigDict()
    config.objective.name = "boosted"
    config.objective.reweight = 0.5
    config.objective.gradient_rescale = True
    return config
