"""MAML-stop's stop policies: the fast one reads no label (the support size from the mask alone) and
only the inner steps' own statistics; the paper's inputs equal their three-pass definition."""

from __future__ import annotations

import torch

from l2o.models.maml import MAML, MAMLConfig
from l2o.tasks.few_shot.policy import StepStatsLogits, step_features, support_size_features
from l2o.tasks.few_shot.task import _masked_rows_mean


def batch(rng, B=3, S=6, Q=4, ways=3):
    mask = (torch.arange(S) < torch.tensor([2, 4, 6][:B]).unsqueeze(1)).float()
    return {"support_x": torch.rand(B, S, 1, 16, 16, generator=rng), "support_y": torch.randint(0, ways, (B, S), generator=rng),
            "support_mask": mask, "query_x": torch.rand(B, Q, 1, 16, 16, generator=rng),
            "query_y": torch.randint(0, ways, (B, Q), generator=rng), "shots": torch.tensor([2, 4, 6][:B])}


def test_support_size_features_come_from_the_mask_alone(rng):
    b = batch(rng)
    feats = support_size_features(b["support_mask"])
    assert torch.allclose(feats[:, 0].exp(), torch.tensor([2.0, 4.0, 6.0]))
    assert torch.allclose(feats[:, 1], torch.tensor([1 / 2, 1 / 4, 1 / 6]))
    # the context is a function of the mask only: change every label and input, nothing moves
    from l2o.models.stop_policy import StopPolicy, StopPolicyConfig

    fn = StepStatsLogits(StopPolicy(StopPolicyConfig(7, [4])))
    other = {**b, "support_x": torch.zeros_like(b["support_x"]), "support_y": torch.zeros_like(b["support_y"]),
             "query_x": torch.zeros_like(b["query_x"]), "query_y": torch.ones_like(b["query_y"])}
    assert torch.equal(fn.context(b), fn.context(other))


def test_step_features_are_the_support_loss_path(rng):
    summaries = torch.tensor([[[2.0, 1.0, 4.0]]])  # loss before the step 2, gradient norm 1, first loss 4
    f = step_features(summaries)
    assert torch.allclose(f, torch.log(torch.tensor([[[2.0, 1.0, 0.5]]])), atol=1e-6)


def test_paper_features_equal_the_three_pass_definition(rng):
    """The support outputs come from the support features through the linear head: the same values as
    running the net a third time (predict), as the paper's features did."""
    from l2o.tasks.few_shot.task import FewShotClassificationTask

    torch.manual_seed(0)
    net = MAML(MAMLConfig(net=dict(kind="conv4", channels=4, image_size=16, out_features=3), num_steps=3))
    b = batch(rng)
    states = net(b)
    task = FewShotClassificationTask.__new__(FewShotClassificationTask)
    task.learner = net
    steps = torch.tensor([1, 2, 3])
    fast = task.policy_features(b, states, steps, 3)
    sx, sm, qx = b["support_x"], b["support_mask"], b["query_x"]
    outputs = net.predict(states, sx, sm)  # the third pass
    loss = net.task_loss(outputs, b["support_y"], sm).clamp_min(1e-8).log()
    error = task.support_error(outputs, b)
    pos = (steps.float() / 3).view(-1, 1).expand_as(loss)
    reference = torch.cat([_masked_rows_mean(net.features(states, sx, sm), sm), net.features(states, qx).mean(-2),
                           torch.stack([loss, error, pos, 1 - pos], -1)], -1)
    assert torch.allclose(fast, reference, atol=1e-5)
