"""resnet_ee on the full Fashion-MNIST from Debian's `dataset-fashion-mnist` (offline, real).

`apt-get install dataset-fashion-mnist`, then
`python train.py --config configs/fashion_mnist_resnet_joint.py --workdir /tmp/fmnist`.
"""

from configs import default


def get_config():
    config = default.get_config()
    config.data.name = "fashion_mnist_local"
    config.data.calibration_split = ""  # the Debian files have train and test only
    config.train.steps = 2000  # ~4 epochs of 60k at batch 128
    config.train.eval_every = 500
    config.train.checkpoint_every = 500
    return config
