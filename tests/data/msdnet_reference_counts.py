"""Runs the BoostNet reference MSDNet (models/msdnet_ge.py) through its own op_counter.

Produced tests/data/msdnet_reference_counts.json: needs torch and a checkout of
SHI-Labs/Boosted-Dynamic-Networks (run from its root: python msdnet_reference_counts.py).
exit_ops: op_counter's per-exit count (conv and linear multiply-adds, plus ReLU and pooling
elements); exit_conv_dense_macs: the conv and linear multiply-adds alone; exit_params: parameters
of the blocks and classifiers up to each exit.
"""
import argparse, json, sys
sys.path.insert(0, '.')
from models.msdnet_ge import MSDNet
import op_counter

conv_dense = {"mac": 0, "cls": []}
_measure = op_counter.measure_layer
def measure(layer, x):
    before = op_counter.count_ops
    _measure(layer, x)
    kind = op_counter.get_layer_info(layer)
    if kind in ("Conv2d", "Linear"):
        conv_dense["mac"] += op_counter.count_ops - before - (layer.bias.numel() if kind == "Linear" else 0)
    if kind == "Linear":
        conv_dense["cls"].append(conv_dense["mac"])
op_counter.measure_layer = measure

def run(dataset, H, **kw):
    a = argparse.Namespace(dataset=dataset, nBlocks=10, stepmode='even', step=2, base=4, nChannels=16,
        growthRate=6, grFactor=[1,2,4], bnFactor=[1,2,4], bottleneck=True, prune='max', reduction=0.5)
    for k, v in kw.items(): setattr(a, k, v)
    a.nScales = len(a.grFactor)
    m = MSDNet(a).eval()
    op_counter.count_ops = op_counter.count_params = 0
    op_counter.cls_ops, op_counter.cls_params = [], []
    conv_dense["mac"], conv_dense["cls"] = 0, []
    ops, params = op_counter.measure_model(m, H, H)
    return {"exit_ops": [float(o) for o in ops], "exit_conv_dense_macs": list(map(float, conv_dense["cls"])),
            "exit_params": [int(p) for p in params], "total_params": sum(p.numel() for p in m.parameters())}

out = {"cifar100_boostnet": run('cifar100', 32),
       "imagenet_5x4": run('imagenet', 224, nBlocks=5, step=4, base=4, nChannels=32, growthRate=16,
                           grFactor=[1,2,4,4], bnFactor=[1,2,4,4]),
       "cifar10_lin_grow_prune_min": run('cifar10', 32, nBlocks=5, stepmode='lin_grow', step=1,
                                         base=1, prune='min', nChannels=8, growthRate=4)}
sys.stdout = sys.__stdout__
print("RESULT " + json.dumps(out))
