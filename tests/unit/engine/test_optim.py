"""poolbench's SGD and AdamW against torch.optim, step for step, and without torch._dynamo."""

from __future__ import annotations

import copy

import pytest
import torch

from poolbench.engine.optim import SGD, AdamW
from tests.helpers import loads_dynamo


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 6 * 6, 5),
    )


def _groups(model: torch.nn.Module, decay: float) -> list[dict]:
    params = list(model.parameters())
    return [
        {"params": [p for p in params if p.ndim > 1], "weight_decay": decay},
        {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
    ]


def _train(model: torch.nn.Module, opt: torch.optim.Optimizer, steps: int, freeze_at: int = -1):
    """Steps on seeded batches; at ``freeze_at`` the linear layer gets no gradient (a parameter
    skipped for a step must keep its state untouched)."""
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))
    g = torch.Generator().manual_seed(1)
    for step in range(steps):
        x = torch.randn(4, 3, 8, 8, generator=g)
        y = torch.randint(0, 5, (4,), generator=g)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if step == freeze_at:
            model[4].weight.grad = None
            model[4].bias.grad = None
        opt.step()
        sched.step()
    return model


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (lambda g: SGD(g, lr=0.1), lambda g: torch.optim.SGD(g, lr=0.1)),
        (
            lambda g: SGD(g, lr=0.1, momentum=0.9),
            lambda g: torch.optim.SGD(g, lr=0.1, momentum=0.9),
        ),
        (
            lambda g: SGD(g, lr=0.1, momentum=0.9, nesterov=True),
            lambda g: torch.optim.SGD(g, lr=0.1, momentum=0.9, nesterov=True),
        ),
        (lambda g: AdamW(g, lr=0.01), lambda g: torch.optim.AdamW(g, lr=0.01)),
        (
            lambda g: AdamW(g, lr=0.01, betas=(0.8, 0.99), eps=1e-6),
            lambda g: torch.optim.AdamW(g, lr=0.01, betas=(0.8, 0.99), eps=1e-6),
        ),
    ],
    ids=["sgd", "momentum", "nesterov", "adamw", "adamw-betas"],
)
def test_matches_torch_optim_step_for_step(ours, theirs):
    a, b = _model(), _model()
    _train(a, ours(_groups(a, 5e-3)), 12, freeze_at=5)
    _train(b, theirs(_groups(b, 5e-3)), 12, freeze_at=5)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)
    # and the parameters did move
    assert not torch.equal(next(a.parameters()), next(_model().parameters()))


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (
            lambda g: SGD(g, lr=0.1, momentum=0.9, nesterov=True),
            lambda g: torch.optim.SGD(g, lr=0.1, momentum=0.9, nesterov=True),
        ),
        (lambda g: AdamW(g, lr=0.01), lambda g: torch.optim.AdamW(g, lr=0.01)),
    ],
    ids=["sgd", "adamw"],
)
def test_state_dict_round_trips_through_torch_optim(ours, theirs):
    """Resuming from a state dict continues as if never interrupted, in either direction."""
    whole = _model()
    _train(whole, ours(_groups(whole, 1e-3)), 10)

    first = _model()
    opt = ours(_groups(first, 1e-3))
    _train(first, opt, 5)
    # hand the state to torch's optimiser and back again
    torch_opt = theirs(_groups(first, 1e-3))
    torch_opt.load_state_dict(copy.deepcopy(opt.state_dict()))
    again = ours(_groups(first, 1e-3))
    again.load_state_dict(copy.deepcopy(torch_opt.state_dict()))
    # five more steps, on the batches and learning rates of the uninterrupted run's steps 6-10
    g = torch.Generator().manual_seed(1)
    batches = [
        (torch.randn(4, 3, 8, 8, generator=g), torch.randint(0, 5, (4,), generator=g))
        for _ in range(10)
    ]
    for step, (x, y) in enumerate(batches[5:], 5):
        for group in again.param_groups:
            group["lr"] = group["initial_lr"] / (1 + step)
        loss = torch.nn.functional.cross_entropy(first(x), y)
        again.zero_grad()
        loss.backward()
        again.step()
    for pa, pb in zip(whole.parameters(), first.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)


def test_zero_grad_and_closure():
    model = _model()
    opt = SGD(model.parameters(), lr=0.1)
    x = torch.randn(2, 3, 8, 8)

    def closure():
        opt.zero_grad()
        loss = model(x).sum()
        loss.backward()
        return loss

    assert opt.step(closure) is not None
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in model.parameters())
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: SGD(p, lr=-1.0), "each must be >= 0"),
        (lambda p: SGD(p, lr=0.1, nesterov=True), "requires momentum > 0"),
        (lambda p: AdamW(p, betas=(1.0, 0.9)), "invalid AdamW settings"),
        (lambda p: SGD([{"params": p}, {"params": p}], lr=0.1), "more than one parameter group"),
    ],
)
def test_bad_settings_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make(list(_model().parameters()))


def test_training_with_poolbench_optimisers_never_imports_dynamo():
    """torch.optim imports torch._dynamo (about a second) on first use; these must not."""
    code = (
        "import torch\n"
        "from poolbench.engine.optim import SGD, AdamW\n"
        "m = torch.nn.Linear(3, 2)\n"
        "for opt in (SGD(m.parameters(), lr=0.1, momentum=0.9, nesterov=True),"
        " AdamW(m.parameters())):\n"
        "    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)\n"
        "    m(torch.randn(4, 3)).sum().backward(); opt.step(); sched.step(); opt.zero_grad()\n"
        "    opt.load_state_dict(opt.state_dict())\n"
    )
    assert not loads_dynamo(code)
