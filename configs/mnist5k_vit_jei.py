"""JEI-DNN on the embedded MNIST digits with a small ViT (vit_ee: 7x7 patches of 4x4 pixels,
width 64, exits after blocks 2, 4 and 6).

`python train.py --config configs/mnist5k_vit_jei.py`
"""

import ml_collections

from configs import mnist5k_resnet_jei


def get_config():
    config = mnist5k_resnet_jei.get_config()
    config.model = ml_collections.ConfigDict()
    config.model.name = "vit_ee"
    config.model.patch_size = 4
    config.model.dim = 64
    config.model.num_heads = 4
    config.model.mlp_ratio = 2
    config.model.exit_blocks = (2, 4, 6)
    config.model.gates = "uncertainty"
    config.data.augment = "none"
    config.optimizer.learning_rate = 1e-3
    return config
