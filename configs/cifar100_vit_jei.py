"""JEI-DNN on CIFAR-100 from tensorflow-datasets: `cifar10_vit_jei` with 100 classes.

`python train.py --config configs/cifar100_vit_jei.py --workdir DIR
 --config.data.data_dir=~/tensorflow_datasets`
"""

from configs import cifar10_vit_jei


def get_config():
    config = cifar10_vit_jei.get_config()
    config.data.name = "cifar100"
    return config
