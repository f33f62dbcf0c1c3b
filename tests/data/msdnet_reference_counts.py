"""Runs the BoostNet reference MSDNet (models/msdnet_ge.py) through its own op_counter.

Produced tests/data/msdnet_reference_counts.json. Needs torch and a checkout of
SHI-Labs/Boosted-Dynamic-Networks; run it from that checkout's root:
`python msdnet_reference_counts.py`. Per configuration:
  exit_ops: op_counter's per-exit count (conv and linear multiply-adds, plus ReLU and pooling
    elements), as the reference's flops.pth holds it;
  exit_conv_dense_macs: the conv and linear multiply-adds alone;
  exit_params: parameters of the blocks and classifiers up to each exit.
"""

import argparse
import json
import sys

sys.path.insert(0, ".")
import op_counter  # noqa: E402
from models.msdnet_ge import MSDNet  # noqa: E402

conv_dense = {"macs": 0, "per_exit": []}
_measure_layer = op_counter.measure_layer


def measure_layer(layer, x):
    """op_counter's own count, plus a tally of conv and linear multiply-adds alone."""
    before = op_counter.count_ops
    _measure_layer(layer, x)
    kind = op_counter.get_layer_info(layer)
    if kind in ("Conv2d", "Linear"):
        bias_ops = layer.bias.numel() if kind == "Linear" else 0
        conv_dense["macs"] += op_counter.count_ops - before - bias_ops
    if kind == "Linear":
        conv_dense["per_exit"].append(conv_dense["macs"])


op_counter.measure_layer = measure_layer


def count(dataset, size, **options):
    args = argparse.Namespace(
        dataset=dataset, nBlocks=10, stepmode="even", step=2, base=4, nChannels=16, growthRate=6,
        grFactor=[1, 2, 4], bnFactor=[1, 2, 4], bottleneck=True, prune="max", reduction=0.5)
    vars(args).update(options)
    args.nScales = len(args.grFactor)
    model = MSDNet(args).eval()
    op_counter.count_ops = op_counter.count_params = 0
    op_counter.cls_ops, op_counter.cls_params = [], []
    conv_dense.update(macs=0, per_exit=[])
    ops, params = op_counter.measure_model(model, size, size)
    return {"exit_ops": [float(o) for o in ops],
            "exit_conv_dense_macs": [float(m) for m in conv_dense["per_exit"]],
            "exit_params": [int(p) for p in params],
            "total_params": sum(p.numel() for p in model.parameters())}


results = {
    "cifar100_boostnet": count("cifar100", 32),
    "imagenet_5x4": count("imagenet", 224, nBlocks=5, step=4, base=4, nChannels=32,
                          growthRate=16, grFactor=[1, 2, 4, 4], bnFactor=[1, 2, 4, 4]),
    "cifar10_lin_grow_prune_min": count("cifar10", 32, nBlocks=5, stepmode="lin_grow", step=1,
                                        base=1, prune="min", nChannels=8, growthRate=4),
}
print("RESULT " + json.dumps(results))
