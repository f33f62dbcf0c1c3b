"""Engines against a per-sample NumPy reference, across batch sizes and exit patterns."""

import jax
import numpy as np
import pytest
from conftest import images, np_boosted, np_first_exit
from jax.sharding import Mesh

import eejax
from eejax import policies
from eejax._compat import count_compilations

ENGINES = ["dense", "masked", "compact", "stream"]


def reference(net, variables, x, rule, **kwargs):
    """Exit index, logits used and cost of every sample, from the [K, B, C] logits of
    `apply_all`, selected one sample at a time in NumPy."""
    exit_logits = np.asarray(net.apply_all(variables, x))
    if "count" in kwargs:
        kwargs = {"patience": kwargs["count"]}
    exits = np_first_exit(exit_logits, rule, **kwargs)
    logits = exit_logits[exits, np.arange(len(exits))]
    return exits, logits, net.costs.to_exit[exits]


def assert_matches(result, exits, logits, cost):
    np.testing.assert_array_equal(result.exit, exits)
    np.testing.assert_allclose(result.logits, logits, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(result.cost, cost, rtol=1e-6)


def test_apply_all_matches_stage_by_stage(tiny_net):
    net, variables = tiny_net
    x = images(5)
    h, expected = x, []
    for k in range(net.num_exits):
        h = net.stages[k].apply({c: v[f"stage_{k}"] for c, v in variables.items()}, h, False)
        expected.append(net.heads[k].apply({c: v[f"head_{k}"] for c, v in variables.items()},
                                           h, False))
    np.testing.assert_allclose(net.apply_all(variables, x), np.stack(expected), rtol=1e-5)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("batch", [1, 7, 24, 33])
@pytest.mark.parametrize("pattern", ["nobody", "all_first", "random"])
def test_engines_match_reference_on_exit_patterns(tiny_net, engine, batch, pattern):
    net, variables = tiny_net
    x = images(batch, seed=batch)
    targets = {"nobody": np.full(batch, 2), "all_first": np.zeros(batch, int),
               "random": np.random.default_rng(batch).integers(0, 3, batch)}[pattern]
    policy = policies.oracle(targets)
    result = eejax.infer(net, variables, x, policy, engine=engine)
    assert_matches(result, *reference(net, variables, x, "oracle", targets=targets))


def policy_options(net, variables, x, rule):
    """Options that make a rule send a mix of samples to every exit: each exit's threshold is
    the 60% quantile of that exit's confidence on x (so about 60%, then 24%, then 16% leave)."""
    if rule == "patience":
        return {"count": 1}
    exit_logits = net.apply_all(variables, x)[:-1]
    scores = np.asarray(policies.confidence(rule, exit_logits))  # [K-1, B], higher = exit
    quantiles = np.quantile(scores, 0.4, axis=1)
    return {"thresholds": (-quantiles if rule == "entropy" else quantiles).tolist()}


RULES = ["max_prob", "entropy", "margin", "patience"]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("rule", RULES)
def test_engines_match_reference_for_every_policy(tiny_net, engine, rule):
    net, variables = tiny_net
    x = images(40, seed=3)
    options = policy_options(net, variables, x, rule)
    result = eejax.infer(net, variables, x, policies.from_config(rule, **options), engine=engine)
    assert_matches(result, *reference(net, variables, x, rule, **options))


@pytest.mark.parametrize("rule", RULES[:3])
def test_reference_cases_exercise_a_mix_of_exits(tiny_net, rule):
    """Guards the test above: its thresholds must send samples to every exit."""
    net, variables = tiny_net
    x = images(40, seed=3)
    exits = reference(net, variables, x, rule, **policy_options(net, variables, x, rule))[0]
    assert set(exits.tolist()) == {0, 1, 2}, np.bincount(exits)


def test_stream_over_batches_of_a_dataset_matches_masked(tiny_net):
    net, variables = tiny_net
    x = images(50, seed=5)
    targets = np.random.default_rng(5).integers(0, 3, 50)
    policy = policies.oracle(targets)
    from eejax.stream import stream_infer

    batches = [x[:16], x[16:32], x[32:48], x[48:]]
    streamed = stream_infer(net, variables, batches, policy, batch_size=16)
    assert_matches(streamed, *reference(net, variables, x, "oracle", targets=targets))


def test_dense_returns_every_exit(tiny_net):
    net, variables = tiny_net
    x = images(6)
    result = eejax.infer(net, variables, x, policies.max_prob([0.5, 0.5]), engine="dense")
    np.testing.assert_allclose(result.exit_logits, net.apply_all(variables, x), rtol=1e-5)


@pytest.mark.parametrize("engine", ["dense", "masked", "compact"])
def test_sharded_over_8_devices_matches_one_device(tiny_net, engine):
    assert jax.device_count() == 8, "conftest forces 8 host devices"
    net, variables = tiny_net
    x = images(48, seed=8)
    targets = np.random.default_rng(8).integers(0, 3, 48)
    policy = policies.oracle(targets)
    mesh = Mesh(np.array(jax.devices()), ("data",))
    sharded = eejax.infer(net, variables, x, policy, engine=engine, mesh=mesh)
    single = eejax.infer(net, variables, x, policy, engine=engine)
    np.testing.assert_array_equal(sharded.exit, single.exit)
    np.testing.assert_allclose(sharded.logits, single.logits, rtol=1e-5, atol=1e-5)
    assert len(sharded.exit.sharding.device_set) == 8


def test_cost_of_exiting_everything_at_exit_0(tiny_net):
    net, variables = tiny_net
    x = images(9)
    result = eejax.infer(net, variables, x, policies.oracle(np.zeros(9, int)), engine="compact")
    report = eejax.evaluation.policy_report(result, np.zeros(9, int), net.costs)
    costs = net.costs
    assert report["ideal_speedup"] == pytest.approx(
        (costs.stage.sum() + costs.head.sum()) / (costs.stage[0] + costs.head[0]))
    assert report["exit_fractions"] == [1.0, 0.0, 0.0]


def test_costs_come_from_xla_and_match_a_hand_count(tiny_net):
    net, _ = tiny_net
    # Stage 0: a 3x3 stem conv 1->4 and a block of two 3x3 convs 4->4, all on 12x12 maps with
    # SAME padding; XLA counts the kernel taps inside the image: (3 * 12 - 2)**2 = 1156 per
    # channel pair instead of 12 * 12 * 9, at 2 FLOPs per multiply-add. Batch norm and ReLU add
    # about 10%.
    convs = (3 * 12 - 2) ** 2 * 2 * (1 * 4 + 2 * 4 * 4)
    assert convs <= net.costs.stage[0] <= 1.2 * convs
    assert np.all(net.costs.head > 0) and np.all(np.diff(net.costs.to_exit) > 0)


def test_stream_runs_ready_stages_together_and_compiles_one_program_per_plan(tiny_net):
    """Nobody exits: from the third batch on, every tick runs all three stages in one program
    (stage 0 on the new batch, stages 1 and 2 on earlier batches' survivors)."""
    from eejax import stream
    from eejax.stream import compiled_plans, stream_infer

    net, variables = tiny_net
    stream._ticks.cache_clear()  # so that the plans listed below are the ones this stream ran
    batch = 7
    x = images(5 * batch, seed=8)
    policy = policies.oracle(np.full(len(x), 2))
    streamed = stream_infer(net, variables, np.split(x, 5), policy, batch_size=batch)
    assert_matches(streamed, *reference(net, variables, x, "oracle", targets=np.full(len(x), 2)))
    assert set(compiled_plans(net, batch)) == {
        ((), True), ((1,), True), ((1, 2), True),  # filling the pipeline, then steady
        ((1, 2), False), ((2,), False)}  # the flush after the last batch


def test_stream_with_leftover_rows_and_a_short_last_batch_matches_masked(tiny_net):
    """Survivor counts that do not divide the batch leave rows behind in the buffers, which
    must come to the front and run in a later tick."""
    from eejax.stream import stream_infer

    net, variables = tiny_net
    batch, x = 8, images(157, seed=9)
    targets = np.random.default_rng(9).choice(3, size=len(x), p=[0.3, 0.3, 0.4])
    held, leftover = 0, False  # replays stage 1's buffer count on the host
    for start in range(0, len(x), batch):
        held = (held - batch if held >= batch else held) + int(np.sum(
            targets[start:start + batch] > 0))
        leftover |= held > batch
    assert leftover, "this exit pattern must leave rows behind, else the test proves nothing"
    batches = [x[i:i + batch] for i in range(0, len(x), batch)]
    streamed = stream_infer(net, variables, batches, policies.oracle(targets), batch_size=batch)
    assert_matches(streamed, *reference(net, variables, x, "oracle", targets=targets))


def test_second_call_with_same_shapes_compiles_nothing(tiny_net):
    net, variables = tiny_net
    x = images(20, seed=1)
    for engine in ["compact", "stream"]:
        first = policies.oracle(np.random.default_rng(1).integers(0, 3, 20))
        with count_compilations() as compiled:
            eejax.infer(net, variables, x, first, engine=engine)
        assert compiled, "the first call must compile (else this test cannot fail)"
        other = policies.oracle(np.random.default_rng(2).integers(0, 3, 20))
        with count_compilations() as compiled:
            eejax.infer(net, variables, x, other, engine=engine)
        assert compiled == [], f"{engine} recompiled on a second call with the same shapes"


@pytest.mark.parametrize(
    "x, policy, kwargs, message",
    [
        (np.zeros((2, 12, 12, 3), np.float32), None, {}, "x must have shape \\[B, 12, 12, 1\\]"),
        (np.zeros((12, 12, 1), np.float32), None, {}, "x must have shape"),
        (np.zeros((2, 12, 12, 1), np.uint8), None, {}, "floating-point array"),
        (None, policies.max_prob([0.5]), {}, "one value per exit except the last: 2"),
        (None, None, {"engine": "fast"}, "engine must be one of"),
        (None, None, {"engine": "masked", "buckets": [8]}, "buckets only applies"),
        (None, policies.oracle([0, 1]), {}, "exit_index per sample"),
        (None, policies.oracle([0, 5, 1, 1]), {}, "exit_index must lie in \\[0, 3\\)"),
    ],
)
def test_bad_input_gets_a_named_error(tiny_net, x, policy, kwargs, message):
    net, variables = tiny_net
    x = images(4) if x is None else x
    policy = policies.max_prob([0.5, 0.5]) if policy is None else policy
    with pytest.raises(ValueError, match=message):
        eejax.infer(net, variables, x, policy, **{"engine": "masked", **kwargs})


def test_sharded_batch_must_divide_over_devices(tiny_net):
    net, variables = tiny_net
    mesh = Mesh(np.array(jax.devices()), ("data",))
    with pytest.raises(ValueError, match="must divide evenly over the 8 devices"):
        eejax.infer(net, variables, images(12), policies.max_prob([0.5, 0.5]),
                    engine="compact", mesh=mesh)


@pytest.mark.parametrize("buckets", [[4, 12], [1, 2, 3, 5, 8, 13, 21], [64]])
def test_compact_with_given_buckets_matches_reference(tiny_net, buckets):
    net, variables = tiny_net
    x = images(30, seed=9)
    targets = np.random.default_rng(9).integers(0, 3, 30)
    result = eejax.infer(net, variables, x, policies.oracle(targets), engine="compact",
                         buckets=buckets)
    assert_matches(result, *reference(net, variables, x, "oracle", targets=targets))


def test_bucket_sizes_must_be_positive_integers(tiny_net):
    net, variables = tiny_net
    with pytest.raises(ValueError, match="buckets must be positive integers"):
        eejax.infer(net, variables, images(4), policies.max_prob([0.5, 0.5]), engine="compact",
                    buckets=[0, 2])


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("batch", [1, 33])
def test_boosted_readout_in_every_engine_matches_reference(tiny_net, engine, batch):
    """The running ensemble G_k travels with the samples that survive (compact, stream)."""
    net, variables = tiny_net
    x = images(batch, seed=11)
    boosted = eejax.readout.boosted([0.5, 0.8], num_exits=3)
    ensemble = np_boosted(np.asarray(net.apply_all(variables, x)), [0.5, 0.8])
    scores = np.asarray(policies.confidence("max_prob", ensemble[:-1]))
    thresholds = np.quantile(scores, 0.4, axis=1).tolist() if batch > 1 else [0.3, 0.3]
    exits = np_first_exit(ensemble, "max_prob", thresholds)
    result = eejax.infer(net, variables, x, policies.max_prob(thresholds), engine=engine,
                         readout=boosted)
    assert_matches(result, exits, ensemble[exits, np.arange(batch)], net.costs.to_exit[exits])
    if batch > 1:
        assert len(set(exits.tolist())) == 3, "thresholds must spread samples over the exits"


@pytest.mark.parametrize("engine", ENGINES)
def test_multi_scale_features_in_every_engine(tiny_msdnet, engine):
    """MSDNet's stage outputs are lists of scales; engines gather and buffer them as pytrees."""
    net, variables = tiny_msdnet
    x = images(21, seed=12)
    targets = np.random.default_rng(12).integers(0, 3, 21)
    result = eejax.infer(net, variables, x, policies.oracle(targets), engine=engine)
    assert_matches(result, *reference(net, variables, x, "oracle", targets=targets))


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("batch", [1, 26])
def test_gates_policy_in_every_engine_matches_reference(tiny_net, engine, batch):
    """JEI-DNN's learned gates decide; the reference reads sigmoid(gate_k) >= t_k in NumPy."""
    from eejax.gates import with_gates

    net, _ = tiny_net
    gated = with_gates(net, "hidden")
    variables = gated.init(jax.random.key(3), images(1))
    x = images(batch, seed=13)
    logits, gates = (np.asarray(a) for a in gated.apply_all(variables, x, with_gates=True))
    probability = 1 / (1 + np.exp(-gates))
    thresholds = np.quantile(probability, 0.6, axis=1) if batch > 1 else np.array([0.5, 0.5])
    fires = probability >= thresholds[:, None]
    exits = np.where(fires[0], 0, np.where(fires[1], 1, 2))
    result = eejax.infer(gated, variables, x, policies.gates(thresholds.tolist()), engine=engine)
    assert_matches(result, exits, logits[exits, np.arange(batch)], gated.costs.to_exit[exits])
    if batch > 1:
        assert len(set(exits.tolist())) == 3, "thresholds must spread samples over the exits"


def test_gates_policy_needs_a_gated_net(tiny_net):
    net, variables = tiny_net
    with pytest.raises(ValueError, match="needs a net with exit gates"):
        eejax.infer(net, variables, images(2), policies.gates(0.5, num_exits=3))
