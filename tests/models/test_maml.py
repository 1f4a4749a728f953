"""MAML's functional inner loop: equals a hand-written SGD loop (states and second/first-order
meta-gradients), vmap over tasks = a loop over tasks, padding, no_grad, the step-wise protocol,
divergence and config errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from l2o.models.maml import MAML, MAMLConfig
from l2o.models.task_losses import per_example_loss
from l2o.models.step_model import take_rows

F64 = torch.float64
MLP_NET = dict(kind="mlp", in_features=2, hidden=[6, 5], out_features=1)
CONV_NET = dict(kind="conv4", in_channels=1, image_size=16, channels=3, out_features=3)


def mlp_maml(T: int = 3, lr: float = 0.1, first_order: bool = False, seed: int = 0) -> MAML:
    torch.manual_seed(seed)
    config = MAMLConfig(net=MLP_NET, num_steps=T, inner_lr=lr, first_order=first_order, loss="mse")
    return MAML(config).double()


def conv_maml(T: int = 2, lr: float = 0.1, first_order: bool = False, seed: int = 0) -> MAML:
    torch.manual_seed(seed)
    config = MAMLConfig(net=CONV_NET, num_steps=T, inner_lr=lr, first_order=first_order, loss="ce")
    return MAML(config).double()


def regression_tasks(rng, B: int = 3, S: int = 4, Q: int = 5) -> tuple[dict, torch.Tensor]:
    inputs = dict(
        support_x=torch.randn(B, S, 2, generator=rng, dtype=F64),
        support_y=torch.randn(B, S, 1, generator=rng, dtype=F64),
        support_mask=torch.ones(B, S, dtype=F64),
        query_x=torch.randn(B, Q, 2, generator=rng, dtype=F64),
    )
    return inputs, torch.randn(B, Q, 1, generator=rng, dtype=F64)


def classification_tasks(rng, B: int = 2, shots: int = 2, ways: int = 3,
                         Q: int = 1) -> tuple[dict, torch.Tensor]:
    S = shots * ways
    inputs = dict(
        support_x=torch.randn(B, S, 1, 16, 16, generator=rng, dtype=F64),
        support_y=torch.arange(ways).repeat(shots).expand(B, S).clone(),
        support_mask=torch.ones(B, S, dtype=F64),
        query_x=torch.randn(B, Q * ways, 1, 16, 16, generator=rng, dtype=F64),
    )
    return inputs, torch.arange(ways).repeat(Q).expand(B, Q * ways).clone()


def mlp_by_hand(params: dict, x: torch.Tensor) -> torch.Tensor:
    """The 2-6-5-1 MLP written out, independent of the module code."""
    h = torch.relu(x @ params["body.layers.0.weight"].T + params["body.layers.0.bias"])
    h = torch.relu(h @ params["body.layers.1.weight"].T + params["body.layers.1.bias"])
    return h @ params["head.weight"].T + params["head.bias"]


def conv4_by_hand(params: dict, x: torch.Tensor) -> torch.Tensor:
    """Conv4 written out with torch's fused batch_norm (correct to second order outside vmap)."""
    for i in range(4):
        p = {k: params[f"body.blocks.{i}.{k}"] for k in ("conv.weight", "conv.bias", "bn.weight", "bn.bias")}
        x = F.conv2d(x, p["conv.weight"], p["conv.bias"], padding=1)
        x = F.batch_norm(x, None, None, p["bn.weight"], p["bn.bias"], training=True)
        x = F.max_pool2d(torch.relu(x), 2)
    return x.flatten(1) @ params["head.weight"].T + params["head.bias"]


def sgd_by_hand(model: MAML, forward, x, y, loss_fn, first_order: bool) -> list[dict]:
    """theta_1 .. theta_T of one task with torch.autograd.grad (create_graph unless first order)."""
    params = dict(model.net.named_parameters())
    out = []
    for _ in range(model.num_steps):
        loss = loss_fn(forward(params, x), y)
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=not first_order)
        params = {n: p - model.config.inner_lr * g for (n, p), g in zip(params.items(), grads)}
        out.append(params)
    return out


def meta_grad(model: MAML, loss: torch.Tensor) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(model.net.parameters()))])


# -- the inner loop equals a hand-written SGD loop -------------------------------------------


@pytest.mark.parametrize("first_order", [False, True])
def test_mlp_inner_loop_equals_hand_written_sgd(rng, first_order):
    model = mlp_maml(first_order=first_order)
    inputs, query_y = regression_tasks(rng)
    states = model(inputs)  # (T, B, P + 1)
    assert states.shape == (3, 3, model.num_params + 1)
    assert not model.diverged(states).any()

    hand_loss = 0.0
    for b in range(3):
        thetas = sgd_by_hand(model, mlp_by_hand, inputs["support_x"][b], inputs["support_y"][b],
                             F.mse_loss, first_order)
        for t, theta in enumerate(thetas):
            assert torch.allclose(model.params(states[t, b]), model.flat(theta), atol=1e-12)
        hand_loss = hand_loss + F.mse_loss(mlp_by_hand(thetas[-1], inputs["query_x"][b]), query_y[b])

    query_loss = model.task_loss(model.predict(states[-1], inputs["query_x"]), query_y).sum()
    assert torch.allclose(query_loss, hand_loss, atol=1e-12)
    ours = meta_grad(model, query_loss)
    assert torch.allclose(ours, meta_grad(model, hand_loss), atol=1e-10)

    # FOMAML: the gradient of the query loss at theta_T taken as a leaf
    leaf = states[-1].detach().requires_grad_(True)
    leaf_loss = model.task_loss(model.predict(leaf, inputs["query_x"]), query_y).sum()
    fomaml = torch.autograd.grad(leaf_loss, leaf)[0][:, : model.num_params]
    if first_order:
        assert torch.allclose(ours, fomaml.sum(0), atol=1e-12)
    else:  # the second-order terms matter here, so the comparison above is not vacuous
        assert not torch.allclose(ours, fomaml.sum(0), atol=1e-6)


def test_conv4_second_order_meta_gradient_equals_hand_written_sgd(rng):
    """BN (batch statistics) inside vmap(grad(...)), differentiated again by outer autograd."""
    model = conv_maml(T=2)
    inputs, query_y = classification_tasks(rng)
    states = model(inputs)
    forward = conv4_by_hand
    hand_loss = 0.0
    for b in range(2):
        thetas = sgd_by_hand(model, forward, inputs["support_x"][b], inputs["support_y"][b],
                             F.cross_entropy, first_order=False)
        for t, theta in enumerate(thetas):
            assert torch.allclose(model.params(states[t, b]), model.flat(theta), atol=1e-10)
        hand_loss = hand_loss + F.cross_entropy(forward(thetas[-1], inputs["query_x"][b]), query_y[b])
    query_loss = model.task_loss(model.predict(states[-1], inputs["query_x"]), query_y).sum()
    assert torch.allclose(query_loss, hand_loss, atol=1e-10)
    assert torch.allclose(meta_grad(model, query_loss), meta_grad(model, hand_loss), atol=1e-8)


# -- batching, padding, no_grad ----------------------------------------------------------------


def test_vmap_over_tasks_equals_a_loop_over_tasks(rng):
    model = conv_maml(T=2)
    inputs, _ = classification_tasks(rng, B=3)
    states = model(inputs)
    logits = model.predict(states, inputs["query_x"])
    feats = model.features(states, inputs["query_x"])
    for b in range(3):
        one = model({k: v[b : b + 1] for k, v in inputs.items()})
        assert torch.allclose(states[:, b], one[:, 0], atol=1e-12)
        for t in range(2):  # predict/features = the net at that task's parameters
            params = model.unflat(model.params(states[t, b]))
            net_out = functional_call(model.net, params, (inputs["query_x"][b],))
            assert torch.allclose(logits[t, b], net_out, atol=1e-12)
            head = feats[t, b] @ params["head.weight"].T + params["head.bias"]
            assert torch.allclose(head, net_out, atol=1e-12)  # features = the head's input


def test_shapes_of_predict_features_and_task_loss(rng):
    model = conv_maml(T=3)
    inputs, query_y = classification_tasks(rng, B=2, Q=2)
    states = model(inputs)
    D = model.net.feature_dim
    assert states.shape == (3, 2, model.num_params + 1)
    with pytest.raises(ValueError, match=r"P \+ 1"):
        model.predict(model.params(states), inputs["query_x"])
    assert model.predict(states, inputs["query_x"]).shape == (3, 2, 6, 3)
    assert model.features(states, inputs["query_x"]).shape == (3, 2, 6, D)
    assert model.predict(states[0], inputs["query_x"]).shape == (2, 6, 3)
    assert model.features(states[None], inputs["query_x"]).shape == (1, 3, 2, 6, D)
    assert model.task_loss(model.predict(states, inputs["query_x"]), query_y).shape == (3, 2)


@pytest.mark.parametrize("which", ["mlp", "conv4"])
def test_masked_out_garbage_support_changes_nothing(rng, which):
    model = mlp_maml() if which == "mlp" else conv_maml()
    inputs, _ = regression_tasks(rng, B=2) if which == "mlp" else classification_tasks(rng, B=2)
    clean = model(inputs)
    B = inputs["support_mask"].shape[0]
    extra = 3
    garbage_x = 1e4 * torch.randn(B, extra, *inputs["support_x"].shape[2:], generator=rng, dtype=F64)
    garbage_x[0, 0] = float("nan")
    if which == "mlp":
        garbage_y = torch.full((B, extra, 1), float("inf"), dtype=F64)
    else:
        garbage_y = torch.full((B, extra), -100, dtype=torch.long)  # not even a valid class
    padded = dict(
        inputs,
        support_x=torch.cat([inputs["support_x"], garbage_x], 1),
        support_y=torch.cat([inputs["support_y"], garbage_y], 1),
        support_mask=torch.cat([inputs["support_mask"], torch.zeros(B, extra, dtype=F64)], 1),
    )
    states = model(padded)
    assert torch.allclose(states, clean, atol=1e-12)
    # and the second-order meta-gradient of a query quantity
    assert torch.allclose(meta_grad(model, model.predict(states[-1], inputs["query_x"]).square().sum()),
                          meta_grad(model, model.predict(clean[-1], inputs["query_x"]).square().sum()),
                          atol=1e-9)


def test_tasks_with_different_shots_in_one_padded_batch(rng):
    """Task 0 has 2 support points, task 1 has 4: the padded batch equals each task alone."""
    model = mlp_maml()
    inputs, _ = regression_tasks(rng, B=2, S=4)
    inputs["support_mask"][0, 2:] = 0.0
    states = model(inputs)
    alone = model(dict(support_x=inputs["support_x"][:1, :2], support_y=inputs["support_y"][:1, :2]))
    assert torch.allclose(states[:, 0], alone[:, 0], atol=1e-12)


@pytest.mark.parametrize("which", ["mlp", "conv4"])
def test_grouping_tasks_by_support_size_equals_the_masked_padded_batch(rng, which, monkeypatch):
    """Tasks of 1, 3, 3 and 4 real support examples (padding last, holding garbage): the inner steps
    taken per support size on the real rows only give the masked computation's states, summaries
    and second-order meta-gradients."""
    model = mlp_maml(T=3) if which == "mlp" else conv_maml(T=2)
    inputs, _ = regression_tasks(rng, B=4, S=4) if which == "mlp" else classification_tasks(rng, B=4)
    S = inputs["support_mask"].shape[1]
    counts = [1, 3, 3, S]
    inputs["support_mask"] = (torch.arange(S) < torch.tensor(counts).unsqueeze(1)).to(F64)
    inputs["support_x"] = torch.where(inputs["support_mask"].reshape(4, S, *[1] * (inputs["support_x"].dim() - 2)) > 0,
                                      inputs["support_x"], torch.full_like(inputs["support_x"], 1e3))
    assert model._size_groups(inputs["support_mask"]) is not None
    grouped, grouped_summ = model(inputs, summaries=True)
    g_grouped = meta_grad(model, model.predict(grouped[-1], inputs["query_x"]).square().sum())
    monkeypatch.setattr(MAML, "group_by_size", False)
    masked, masked_summ = model(inputs, summaries=True)
    g_masked = meta_grad(model, model.predict(masked[-1], inputs["query_x"]).square().sum())
    assert torch.allclose(grouped, masked, atol=1e-10)
    assert torch.allclose(grouped_summ, masked_summ, atol=1e-10)
    assert torch.allclose(g_grouped, g_masked, atol=1e-8)


def test_a_mask_with_padding_first_is_not_grouped():
    mask = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    assert MAML._size_groups(mask) is None
    groups = MAML._size_groups(torch.tensor([[1.0, 0.0], [1.0, 1.0], [1.0, 0.0]]))
    assert [(n, rows.tolist()) for n, rows in groups] == [(1, [0, 2]), (2, [1])]


def test_predict_mask_keeps_padded_queries_out_of_the_statistics(rng):
    model = conv_maml()
    inputs, _ = classification_tasks(rng, B=2, Q=2)
    states = model(inputs)
    qx = inputs["query_x"]
    padded = torch.cat([qx, 50 * torch.randn(2, 4, 1, 16, 16, generator=rng, dtype=F64)], 1)
    mask = torch.cat([torch.ones(2, 6, dtype=F64), torch.zeros(2, 4, dtype=F64)], 1)
    for fn in (model.predict, model.features):
        assert torch.allclose(fn(states, padded, mask)[..., :6, :], fn(states, qx), atol=1e-12)


@pytest.mark.parametrize("which", ["mlp", "conv4"])
def test_no_grad_adapts_to_the_same_states(rng, which):
    model = mlp_maml() if which == "mlp" else conv_maml()
    inputs, _ = regression_tasks(rng) if which == "mlp" else classification_tasks(rng)
    with_grad = model(inputs)
    assert with_grad.requires_grad
    with torch.no_grad():
        without = model(inputs)
    assert not without.requires_grad
    assert torch.allclose(without, with_grad, atol=1e-12)
    assert not torch.allclose(without[-1], model.readout(0, model.init_state(inputs), inputs))  # it did adapt


# -- the step-wise protocol --------------------------------------------------------------------


def test_step_readout_loop_equals_forward_and_steps_are_rows(rng):
    model = mlp_maml(T=4)
    inputs, _ = regression_tasks(rng)
    full = model(inputs)
    carry = model.init_state(inputs)
    assert carry.shape == (3, model.state_size + model.summary_size)
    assert torch.equal(model.params(model.readout(0, carry, inputs)), model.flat().expand(3, -1))
    assert torch.equal(carry[:, model.num_params], torch.zeros(3))
    for t in range(1, 5):
        carry = model.step(t, carry, inputs)
        assert torch.allclose(model.readout(t, carry, inputs), full[t - 1], atol=1e-12)
    assert torch.allclose(model(inputs, steps=[2, 4]), full[[1, 3]], atol=1e-12)
    assert model(inputs, steps=[1]).shape == (1, 3, model.num_params + 1)
    with pytest.raises(ValueError, match="step t"):
        model.step(5, carry, inputs)


def test_dropping_tasks_mid_loop_keeps_the_others(rng):
    model = mlp_maml(T=3)
    inputs, _ = regression_tasks(rng)
    full = model(inputs)
    keep = torch.tensor([0, 2])
    carry = model.step(1, model.init_state(inputs), inputs)
    carry, sub = take_rows(carry, keep), take_rows(inputs, keep)
    for t in (2, 3):
        carry = model.step(t, carry, sub)
    assert torch.allclose(model.readout(3, carry, sub), full[-1, keep], atol=1e-12)


def test_flat_unflat_round_trip_and_order():
    model = conv_maml()
    vec = model.flat()
    assert vec.shape == (model.num_params,) == (sum(p.numel() for p in model.parameters()),)
    params = model.unflat(vec)
    assert list(params) == model.param_names == [n for n, _ in model.net.named_parameters()]
    for n, p in model.net.named_parameters():
        assert torch.equal(params[n], p)
    assert model.unflat(vec.expand(2, 3, -1))["head.weight"].shape == (2, 3, 3, model.net.feature_dim)


def test_describe_rebuilds_the_same_model():
    model = conv_maml()
    again = MAML(MAMLConfig(**model.describe()))
    assert again.describe() == model.describe()
    assert model.describe()["net"]["channels"] == 3 and model.describe()["net"]["hidden"] == [40, 40]
    assert again.num_params == model.num_params


# -- failures ----------------------------------------------------------------------------------


def test_huge_inner_lr_raises_naming_the_step(rng):
    torch.manual_seed(0)
    model = MAML(MAMLConfig(net=MLP_NET, num_steps=3, inner_lr=1e30, loss="mse"))
    inputs = dict(support_x=10 * torch.randn(2, 4, 2, generator=rng),
                  support_y=10 * torch.randn(2, 4, 1, generator=rng))
    message = r"inner step 1 of 3 diverged .*inner_lr=1e\+30.*lower model.inner_lr"
    with pytest.raises(FloatingPointError, match=message):
        model(inputs)


@pytest.mark.parametrize("kwargs, key", [
    (dict(num_steps=1), "model.num_steps"),
    (dict(inner_lr=0.0), "model.inner_lr"),
    (dict(inner_lr=-0.1), "model.inner_lr"),
    (dict(inner_lr=float("nan")), "model.inner_lr"),
    (dict(loss="l1"), "model.loss"),
    (dict(net=dict(kind="resnet")), "model.net.kind"),
    (dict(net=dict(channels=0)), "model.net.channels"),
    (dict(net=dict(image_size=14)), "model.net.image_size"),
    (dict(net=dict(width=3)), "model.net has unknown key"),
])
def test_bad_config_names_the_key(kwargs, key):
    with pytest.raises(ValueError, match=key):
        MAMLConfig(**kwargs)


def test_per_example_loss_broadcasts_targets_over_steps():
    logits = torch.randn(4, 2, 5, 3)  # (K, B, N, ways)
    labels = torch.randint(3, (2, 5))
    ref = torch.stack([F.cross_entropy(logits[k].reshape(-1, 3), labels.reshape(-1), reduction="none")
                       for k in range(4)])
    assert torch.allclose(per_example_loss(logits, labels, "ce"), ref.reshape(4, 2, 5))


def test_a_diverging_task_keeps_its_parameters_and_spares_the_others():
    """One task of the batch blows up (huge targets): it stops moving, diverged() flags it from that
    step on, the other tasks adapt as if alone, and the meta-gradient stays finite."""
    rng = torch.Generator().manual_seed(0)
    model = mlp_maml(T=4, lr=0.5)
    inputs, qy = regression_tasks(rng, B=3)
    inputs = dict(inputs)
    inputs["support_y"] = inputs["support_y"].clone()
    inputs["support_y"][1] *= 1e18
    states = model(inputs)
    bad = model.diverged(states)
    assert bad[:, 1].any() and not bad[:, [0, 2]].any()
    first = int(bad[:, 1].float().argmax())
    assert bad[first:, 1].all()  # once diverged, always diverged
    kept = model.params(states[first - 1, 1]) if first else model.flat()
    assert torch.equal(model.params(states[first:, 1]), kept.expand(4 - first, -1))
    assert torch.equal(model.diverged(states[[first], :]), bad[[first]])  # any subset of steps
    assert bool(torch.isfinite(states).all())
    alone = model({k: v[[0]] for k, v in inputs.items()})
    assert torch.allclose(alone[:, 0], states[:, 0])
    loss = model.task_loss(model.predict(states[-1, [0, 2]], inputs["query_x"][[0, 2]]), qy[[0, 2]]).sum()
    loss.backward()
    assert all(bool(torch.isfinite(p.grad).all()) for p in model.parameters())


def test_a_task_diverging_in_float32_leaves_the_meta_gradient_finite():
    """float32, one task's SGD blows up (huge inputs: a huge curvature). Its parameters would stay
    finite for a few steps while the backward pass overflowed (NaN for every parameter, before the
    fix); instead its first exploding step is rejected: it keeps theta_0, is flagged, and Stage I's
    soft-min has a finite meta-gradient; the other tasks adapt as if alone."""
    from l2o.stopping.objectives import soft_min_loss

    torch.manual_seed(0)
    model = MAML(MAMLConfig(net=dict(kind="mlp", hidden=[16, 16], out_features=1), num_steps=6,
                            inner_lr=0.05, loss="mse")).float()
    rng = torch.Generator().manual_seed(1)
    x = torch.randn(3, 5, 1, generator=rng)
    x[1] *= 300.0
    inputs = dict(support_x=x, support_y=torch.randn(3, 5, 1, generator=rng))
    qx, qy = torch.randn(3, 4, 1, generator=rng), torch.randn(3, 4, 1, generator=rng)
    states = model(inputs)
    bad = model.diverged(states)
    assert bad[:, 1].all() and not bad[:, [0, 2]].any()
    assert torch.equal(model.params(states[:, 1]), model.flat().expand(6, -1).detach())
    losses = model.task_loss(model.predict(states, qx), qy)  # (T, B)
    soft_min_loss(losses.T, beta=0.1).backward()
    assert all(bool(torch.isfinite(p.grad).all()) for p in model.parameters())
    alone = model({k: v[[0, 2]] for k, v in inputs.items()})
    assert torch.allclose(alone, states[:, [0, 2]])


def test_max_step_ratio_flags_a_blowing_up_step_before_it_overflows():
    model = mlp_maml(T=3)
    inputs, _ = regression_tasks(torch.Generator().manual_seed(0))
    carry = model.init_state(inputs)
    theta = model.readout(0, carry, inputs)
    step = (model.params(model.readout(1, model.step(1, carry, inputs), inputs)) - model.params(theta)).detach()
    ratio = float((step.norm(dim=-1) / (model.params(theta).detach().norm(dim=-1) + 1)).min())
    strict = MAML(MAMLConfig(**{**model.describe(), "max_step_ratio": ratio / 2})).double()
    strict.load_state_dict(model.state_dict())
    with pytest.raises(FloatingPointError, match="inner step 1 of 3"):  # every task's step is "too long"
        strict(inputs)
    assert not model.diverged(model(inputs)).any()


def test_a_converged_task_is_not_a_diverged_one():
    """A task whose update rounds to nothing in float32 (it fits its one point) repeats its state:
    that is convergence, and the flag stays clear."""
    torch.manual_seed(0)
    model = MAML(MAMLConfig(net=dict(kind="mlp", hidden=[8], out_features=1), num_steps=6,
                            inner_lr=0.5, loss="mse")).float()
    x = torch.zeros(1, 1, 1)
    with torch.no_grad():
        y = model.net(x[0]).reshape(1, 1, 1)  # the net already fits the point: zero gradient
    states = model(dict(support_x=x, support_y=y))
    assert torch.equal(states[0], states[-1])  # the state repeats
    assert not model.diverged(states).any()


def test_max_growth_flags_a_gradual_blow_up_under_the_step_length_bound(monkeypatch):
    """A planted inner loop whose parameters grow by 30% a step (each step far under the step-length
    bound, max_step_ratio 10) blows up gradually: only the distance from theta_0 (max_growth) catches it.
    Task 1 grows, task 0 stays put; the flag rises at the first step past the bound and the task keeps
    the parameters it had."""
    torch.manual_seed(0)
    cfg = dict(net=dict(kind="mlp", hidden=[8], out_features=1), num_steps=8, inner_lr=0.1, loss="mse")
    inputs = dict(support_x=torch.zeros(2, 3, 1, dtype=F64), support_y=torch.zeros(2, 3, 1, dtype=F64))

    def growing(self, theta, keep, x, y, mask):  # grads that make theta_t = 1.3 theta_{t-1} for task 1
        grads = torch.zeros_like(theta)
        grads[1] = -0.3 * theta[1] / self.config.inner_lr
        return torch.where(keep, grads, torch.zeros_like(grads)), theta.new_ones(theta.shape[0])

    monkeypatch.setattr(MAML, "_support_grads", growing)
    loose = MAML(MAMLConfig(**cfg)).double()
    states = loose(inputs)
    assert not loose.diverged(states).any()  # the step-length bound never fires
    theta0 = loose.flat().detach()
    grown = (loose.params(states)[:, 1].detach() - theta0).norm(dim=-1)
    assert float(grown[-1]) > 3 * (float(theta0.norm()) + 1)  # yet task 1 travelled far
    strict = MAML(MAMLConfig(**cfg, max_growth=1.0)).double()
    strict.load_state_dict(loose.state_dict())
    states = strict(inputs)
    flags = strict.diverged(states)
    first = int((grown > 1.0 * (float(theta0.norm()) + 1)).nonzero()[0])  # the first step past the bound
    assert not flags[:first, 1].any() and flags[first:, 1].all() and not flags[:, 0].any()
    assert torch.equal(states[-1, 1], states[first - 1, 1].clone().index_fill_(0, torch.tensor([strict.num_params]), 1.0))
