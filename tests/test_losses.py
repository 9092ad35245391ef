"""Losses against slow reference implementations, hand-computed values and a training run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from artenc.losses import MarginPairLoss, NTXentLoss, SupConLoss, label_match


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def ref_supcon(z: np.ndarray, labels: np.ndarray | None, t: float, match: str = "all") -> float:
    """Khosla et al. eq. 2 (L_out), one anchor at a time."""
    n, v, _ = z.shape
    flat = _unit(z.reshape(n * v, -1))
    owner = np.repeat(np.arange(n), v)
    losses = []
    for a in range(n * v):
        i = owner[a]
        others = [b for b in range(n * v) if b != a]
        denom = sum(math.exp(flat[a] @ flat[b] / t) for b in others)
        pos = []
        for b in others:
            j = owner[b]
            if i == j:
                pos.append(b)
            elif labels is not None:
                eq = [
                    labels[i, f] == labels[j, f] and labels[i, f] >= 0
                    for f in range(labels.shape[1])
                ]
                if all(eq) if match == "all" else any(eq):
                    pos.append(b)
        if pos:
            losses.append(-np.mean([flat[a] @ flat[b] / t - math.log(denom) for b in pos]))
    return float(np.mean(losses))


def ref_margin(z: np.ndarray, labels: np.ndarray, margin: float) -> float:
    n, v, _ = z.shape
    flat = _unit(z.reshape(n * v, -1))
    owner = np.repeat(np.arange(n), v)
    costs = []
    for a in range(n * v):
        for b in range(a + 1, n * v):
            i, j = owner[a], owner[b]
            d = np.linalg.norm(flat[a] - flat[b])
            eq = [
                labels[i, f] == labels[j, f] and labels[i, f] >= 0 for f in range(labels.shape[1])
            ]
            if i == j or all(eq):
                costs.append(d**2)
            elif not any(eq):
                costs.append(max(0.0, margin - d) ** 2)
    return float(np.mean(costs))


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(6, 2, 5, generator=g, dtype=torch.float64)
    labels = torch.tensor([[0, 1], [0, 2], [1, 1], [1, -1], [2, 0], [0, 1]])
    return z, labels


@pytest.mark.parametrize("t", [0.07, 0.5])
def test_ntxent_equals_reference(batch, t):
    z, _ = batch
    assert NTXentLoss(t)(z).item() == pytest.approx(ref_supcon(z.numpy(), None, t), rel=1e-9)


@pytest.mark.parametrize("match", ["all", "any"])
@pytest.mark.parametrize("views", [1, 2, 3])
def test_supcon_equals_reference(match, views):
    g = torch.Generator().manual_seed(views)
    z = torch.randn(7, views, 4, generator=g, dtype=torch.float64)
    labels = torch.tensor([[0, 1], [0, 2], [1, 1], [1, -1], [2, 0], [0, 1], [3, 3]])
    got = SupConLoss(0.2, match=match)(z, labels).item()
    assert got == pytest.approx(ref_supcon(z.numpy(), labels.numpy(), 0.2, match), rel=1e-9)


@pytest.mark.parametrize("margin", [0.5, 1.0, 2.0])
def test_margin_equals_reference(batch, margin):
    z, labels = batch
    got = MarginPairLoss(margin)(z, labels).item()
    assert got == pytest.approx(ref_margin(z.numpy(), labels.numpy(), margin), rel=1e-9)


def test_hand_computed_values():
    # two images, one view each, orthogonal unit vectors, same label: cos = 0.
    z = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
    same = torch.tensor([[0], [0]])
    # each anchor has one positive and a denominator of one term: -log(e^0 / e^0) = 0
    assert SupConLoss(0.5)(z, same).item() == pytest.approx(0.0, abs=1e-7)
    # margin loss: d = sqrt(2); positive pair costs d^2 = 2
    assert MarginPairLoss(1.0)(z, same).item() == pytest.approx(2.0, rel=1e-6)
    # negative pair beyond the margin costs 0; inside margin 2: (2 - sqrt 2)^2
    diff = torch.tensor([[0], [1]])
    assert MarginPairLoss(1.0)(z, diff).item() == pytest.approx(0.0, abs=1e-7)
    assert MarginPairLoss(2.0)(z, diff).item() == pytest.approx((2 - math.sqrt(2)) ** 2, rel=1e-6)
    # NT-Xent, 2 images x 2 views, views identical, images orthogonal, t = 1:
    # each anchor: partner sim 1, other two sims 0 -> -log(e / (e + 2))
    z2 = torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[0.0, 1.0], [0.0, 1.0]]])
    assert NTXentLoss(1.0)(z2).item() == pytest.approx(-math.log(math.e / (math.e + 2)), rel=1e-6)


def test_label_match_handles_missing():
    labels = torch.tensor([[0, -1], [0, -1], [1, 5]])
    assert label_match(labels, "all").tolist() == [[False, False, False]] * 2 + [
        [False, False, True]
    ]
    assert label_match(labels, "any").tolist() == [
        [True, True, False],
        [True, True, False],
        [False, False, True],
    ]


def test_no_positives_gives_zero_with_grad():
    z = torch.randn(3, 1, 4, requires_grad=True)
    loss = SupConLoss()(z, torch.tensor([[0], [1], [2]]))
    loss.backward()
    assert loss.item() == 0.0 and z.grad is not None


@pytest.mark.parametrize(
    "make",
    [
        lambda: NTXentLoss(0),
        lambda: SupConLoss(-1),
        lambda: SupConLoss(match="some"),
        lambda: MarginPairLoss(3),
    ],
)
def test_bad_hyper_parameters_raise(make):
    with pytest.raises(ValueError, match="must"):
        make()


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="N, V, D"):
        SupConLoss()(torch.randn(4, 8), torch.zeros(4, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="2 views"):
        NTXentLoss()(torch.randn(4, 3, 8))


N_CLS, PER = 3, 8


@pytest.mark.parametrize(
    ("loss", "floor"),
    # SupCon's minimum: each anchor spreads its mass over its 2 * PER - 1 positives
    [(NTXentLoss(0.2), 0.0), (SupConLoss(0.2), math.log(2 * PER - 1)), (MarginPairLoss(1.0), 0.0)],
)
def test_loss_falls_on_tiny_synthetic_set(loss, floor):
    torch.manual_seed(0)
    n_cls, per, dim = N_CLS, PER, 16
    centers = torch.randn(n_cls, dim) * 2
    y = torch.arange(n_cls).repeat_interleave(per)
    x = centers[y] + torch.randn(len(y), dim)
    head = torch.nn.Sequential(torch.nn.Linear(dim, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8))
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)

    def step() -> float:
        views = torch.stack([x + 0.3 * torch.randn_like(x) for _ in range(2)], dim=1)
        value = loss(head(views), y[:, None])
        opt.zero_grad()
        value.backward()
        opt.step()
        return value.item()

    first = np.mean([step() for _ in range(3)])
    for _ in range(60):
        step()
    last = np.mean([step() for _ in range(3)])
    assert last - floor < 0.5 * (first - floor)


def test_no_label_field_means_same_image_positives_only():
    """An unlabelled folder gives labels (N, 0). "All of no field agree" must not make every pair a
    positive (the whole batch pulled together): SupCon is then NT-Xent over V views (labels=None)
    and the margin loss counts views of one image as positives, every other image as a negative,
    i.e. what unique labels give."""
    gen = torch.Generator().manual_seed(3)
    z = torch.randn(6, 2, 8, generator=gen)
    none = torch.zeros((6, 0), dtype=torch.int64)
    assert not label_match(none, "all").any() and not label_match(none, "any").any()
    torch.testing.assert_close(SupConLoss()(z, none), SupConLoss()(z, None))
    torch.testing.assert_close(SupConLoss()(z, none), NTXentLoss()(z))
    unique = torch.arange(6).reshape(6, 1)
    torch.testing.assert_close(MarginPairLoss(margin=1.5)(z, none), MarginPairLoss(margin=1.5)(z, unique))
