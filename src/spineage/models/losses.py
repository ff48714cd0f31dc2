"""The age losses of the spine-age networks, for any head that gives a standardised age or age-bin logits.

Two kinds of head, two kinds of loss:

* a regression head gives one number, the standardised age
  ``(age - age_mean) / age_sd``; :func:`regression_loss` compares it with the
  standardised true age by mean squared error (``"mse"``) or smooth L1
  (``"smooth_l1"``, Huber with ``beta`` in standardised units);
* a mean-variance head gives one logit per age bin; its age is the expectation
  over the bins (:func:`expected_age`) and :func:`mean_variance_loss` is the
  mean-variance loss of Pan et al. (CVPR 2018) that the VERTE-X radiograph paper
  trains with: soft-label cross-entropy, plus a penalty on the squared error of
  the expectation, plus one on the spread of the distribution.

Nothing here knows the input's dimensions, so the 3D MRI network and a 2D
radiograph network share these losses. All the maths runs in float32, also when
the head's output comes from a bfloat16 or float16 autocast region (float64
input stays float64, so ``torch.autograd.gradcheck`` can check the gradients).
:class:`AgeLoss` picks the loss by name and, with :meth:`AgeLoss.for_model`,
takes the age standardisation and the bins from the network it trains.

Example:
    >>> import torch
    >>> loss = AgeLoss("mean_variance", age_bins=age_bin_centres(20, 80, 5))
    >>> float(loss(torch.zeros(2, 13), torch.tensor([30.0, 60.0]))) > 0
    True
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

LOSS_NAMES: tuple[str, ...] = ("mse", "smooth_l1", "mean_variance")
"""The losses :class:`AgeLoss` knows, by name."""

REGRESSION_LOSSES: tuple[str, ...] = ("mse", "smooth_l1")
"""The losses of a single-output (standardised age) head."""


def age_bin_centres(low: float, high: float, width: float = 1.0) -> torch.Tensor:
    """Centres of the age bins of a mean-variance head: ``low, low + width, ...`` up to and including ``high``.

    Args:
        low: centre of the first bin (years).
        high: centre of the last bin (years); included when it lies on the grid,
            otherwise the last centre is the largest grid point below it.
        width: distance between neighbouring centres (years).

    Returns:
        A float32 tensor of the centres.

    Example:
        >>> age_bin_centres(20, 30, 2.5).tolist()
        [20.0, 22.5, 25.0, 27.5, 30.0]
    """
    if width <= 0:
        raise ValueError(f"Expected a positive bin width, found {width}")
    if high <= low:
        raise ValueError(f"Expected the last bin above the first, found low={low}, high={high}")
    # Count in float64 with a little slack so that a ``high`` on the grid is kept despite rounding.
    count = int((float(high) - float(low)) / float(width) + 1e-9) + 1
    return (float(low) + float(width) * torch.arange(count, dtype=torch.float64)).to(torch.float32)


def _compute_dtype(tensor: torch.Tensor) -> torch.dtype:
    """float32 for half-precision (or integer) input, float64 kept: the losses never compute below float32."""
    if not tensor.is_floating_point():
        return torch.float32
    return torch.promote_types(tensor.dtype, torch.float32)


def _check_logits(logits: torch.Tensor, bins: torch.Tensor) -> None:
    if logits.dim() != 2 or logits.shape[1] != bins.numel():
        raise ValueError(
            f"Expected logits of shape (batch, {bins.numel()}) for {bins.numel()} age bins, "
            f"found {tuple(logits.shape)}"
        )


def _check_ages(ages: torch.Tensor, batch: int) -> None:
    if ages.dim() != 1 or ages.shape[0] != batch:
        raise ValueError(f"Expected ages of shape ({batch},), found {tuple(ages.shape)}")


def expected_age(logits: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """Age (batch,) as the expectation of the softmax of the logits over the bin centres.

    Args:
        logits: (batch, bins) head output, any floating dtype; computed in float32 (or float64).
        bins: (bins,) age-bin centres in years.

    Returns:
        Ages (batch,), float32 (float64 for float64 logits).

    Example:
        >>> import torch
        >>> round(float(expected_age(torch.zeros(1, 3), torch.tensor([20.0, 30.0, 40.0]))), 4)
        30.0
    """
    dtype = _compute_dtype(logits)
    bins = bins.to(device=logits.device, dtype=dtype)
    _check_logits(logits, bins)
    return (torch.softmax(logits.to(dtype), dim=1) * bins).sum(dim=1)


def soft_age_labels(ages: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """Each age as a distribution over the bins: split linearly between its two neighbouring centres.

    An age on a centre puts all its weight there; ages beyond the first or last
    centre are clamped to it. The bins must increase (they need not be evenly spaced).

    Args:
        ages: (batch,) true ages in years.
        bins: (bins,) increasing age-bin centres in years.

    Returns:
        (batch, bins) rows that sum to 1, float32 (float64 for float64 ages).

    Example:
        >>> import torch
        >>> soft_age_labels(torch.tensor([22.5]), torch.tensor([20.0, 25.0, 30.0])).tolist()
        [[0.5, 0.5, 0.0]]
    """
    dtype = _compute_dtype(ages)
    bins = bins.to(device=ages.device, dtype=dtype)
    if bins.numel() < 2:
        raise ValueError(f"Expected at least two age bins, found {bins.numel()}")
    ages = ages.to(dtype).clamp(float(bins[0]), float(bins[-1]))
    # Index of the left neighbour, kept below the last centre so that the right one exists.
    left = (torch.searchsorted(bins, ages, right=True) - 1).clamp(0, bins.numel() - 2)
    right = left + 1
    weight_right = (ages - bins[left]) / (bins[right] - bins[left])
    labels = torch.zeros(ages.shape[0], bins.numel(), dtype=dtype, device=ages.device)
    labels.scatter_(1, left[:, None], (1.0 - weight_right)[:, None])
    labels.scatter_add_(1, right[:, None], weight_right[:, None])
    return labels


def mean_variance_loss(
    logits: torch.Tensor,
    ages: torch.Tensor,
    bins: torch.Tensor,
    lambda_mean: float = 0.2,
    lambda_variance: float = 0.05,
) -> torch.Tensor:
    """The mean-variance loss (Pan et al. 2018) of age-bin logits, averaged over the batch.

    ``CE(soft label, softmax) + lambda_mean * mean((E[age] - age)^2) / 2
    + lambda_variance * mean(sum_j p_j (bin_j - E[age])^2)``, where the soft
    label splits the true age between its two neighbouring bin centres
    (:func:`soft_age_labels`) and ``p`` is the softmax of the logits.

    Args:
        logits: (batch, bins) head output, any floating dtype; computed in float32 (or float64).
        ages: (batch,) true ages in years.
        bins: (bins,) increasing age-bin centres in years.
        lambda_mean: weight of the mean (squared error of the expectation) term.
        lambda_variance: weight of the variance (spread of the distribution) term.

    Returns:
        The scalar loss, float32 (float64 for float64 logits).

    Example:
        >>> import torch
        >>> bins = torch.tensor([20.0, 30.0, 40.0])
        >>> round(float(mean_variance_loss(torch.zeros(1, 3), torch.tensor([30.0]), bins)), 3)
        4.432
    """
    dtype = _compute_dtype(logits)
    bins = bins.to(device=logits.device, dtype=dtype)
    _check_logits(logits, bins)
    _check_ages(ages, logits.shape[0])
    ages = ages.to(device=logits.device, dtype=dtype)
    log_p = torch.log_softmax(logits.to(dtype), dim=1)
    p = log_p.exp()
    cross_entropy = -(soft_age_labels(ages, bins) * log_p).sum(dim=1).mean()
    mean = (p * bins).sum(dim=1)
    mean_term = ((mean - ages) ** 2).mean() / 2
    variance_term = (p * (bins - mean[:, None]) ** 2).sum(dim=1).mean()
    return cross_entropy + lambda_mean * mean_term + lambda_variance * variance_term


def regression_loss(
    output: torch.Tensor,
    ages: torch.Tensor,
    age_mean: float,
    age_sd: float,
    kind: str = "mse",
    beta: float = 1.0,
) -> torch.Tensor:
    """MSE or smooth-L1 loss of a standardised-age head against ``(ages - age_mean) / age_sd``.

    Args:
        output: (batch, 1) or (batch,) standardised predictions, any floating dtype.
        ages: (batch,) true ages in years.
        age_mean: the age that standardises to 0.
        age_sd: the age difference that standardises to 1.
        kind: ``"mse"`` or ``"smooth_l1"``.
        beta: smooth-L1 switch from quadratic to linear, in standardised units.

    Returns:
        The scalar loss averaged over the batch, float32 (float64 for float64 output).

    Example:
        >>> import torch
        >>> float(regression_loss(torch.tensor([[1.0]]), torch.tensor([50.0]), 50.0, 10.0))
        1.0
    """
    if kind not in REGRESSION_LOSSES:
        raise ValueError(f"Expected a regression loss in {', '.join(REGRESSION_LOSSES)}, found {kind!r}")
    if age_sd <= 0:
        raise ValueError(f"Expected a positive age_sd, found {age_sd}")
    if output.dim() == 2 and output.shape[1] == 1:
        output = output[:, 0]
    if output.dim() != 1:
        raise ValueError(f"Expected a regression output of shape (batch, 1) or (batch,), found {tuple(output.shape)}")
    _check_ages(ages, output.shape[0])
    dtype = _compute_dtype(output)
    output = output.to(dtype)
    target = (ages.to(device=output.device, dtype=dtype) - age_mean) / age_sd
    if kind == "mse":
        return F.mse_loss(output, target)
    return F.smooth_l1_loss(output, target, beta=beta)


class AgeLoss(nn.Module):
    """The training loss of a spine-age head, chosen by name.

    Args:
        name: one of :data:`LOSS_NAMES`.
        age_mean: the regression head's output is ``(age - age_mean) / age_sd``.
        age_sd: see ``age_mean``.
        age_bins: centres (years) of the mean-variance head's bins; needed for
            ``"mean_variance"``, ignored otherwise.
        lambda_mean: weight of the mean term of the mean-variance loss.
        lambda_variance: weight of the variance term of the mean-variance loss.
        beta: smooth-L1 switch point, in standardised units.

    ``forward(raw, ages)`` takes the head's raw output (what ``net(x, raw=True)``
    gives) and the true ages in years, and returns the scalar loss.

    Example:
        >>> import torch
        >>> loss = AgeLoss("mse", age_mean=50.0, age_sd=10.0)
        >>> float(loss(torch.tensor([[0.0], [2.0]]), torch.tensor([50.0, 60.0])))
        0.5
    """

    def __init__(
        self,
        name: str,
        *,
        age_mean: float = 50.0,
        age_sd: float = 15.0,
        age_bins: torch.Tensor | None = None,
        lambda_mean: float = 0.2,
        lambda_variance: float = 0.05,
        beta: float = 1.0,
    ) -> None:
        super().__init__()
        if name not in LOSS_NAMES:
            raise ValueError(f"Expected a loss in {', '.join(LOSS_NAMES)}, found {name!r}")
        if age_sd <= 0:
            raise ValueError(f"Expected a positive age_sd, found {age_sd}")
        bins = torch.as_tensor([] if age_bins is None else age_bins, dtype=torch.float32).flatten()
        increasing = bins.numel() >= 2 and bool((bins[1:] > bins[:-1]).all())
        if name == "mean_variance" and not increasing:
            raise ValueError(
                f"Expected at least two increasing age bins for the mean_variance loss, found {bins.tolist()}"
            )
        if beta <= 0:
            raise ValueError(f"Expected a positive smooth-L1 beta, found {beta}")
        self.name = name
        self.age_mean = float(age_mean)
        self.age_sd = float(age_sd)
        self.lambda_mean = float(lambda_mean)
        self.lambda_variance = float(lambda_variance)
        self.beta = float(beta)
        # A buffer, so that ``loss.to(device)`` moves the bins with it.
        self.register_buffer("age_bins", bins)

    @classmethod
    def for_model(cls, name: str, net: nn.Module, **kwargs: Any) -> AgeLoss:
        """The loss ``name`` for ``net``, with its ``age_mean``, ``age_sd`` and ``age_bins``.

        Args:
            name: one of :data:`LOSS_NAMES`; must suit the network's head.
            net: a spine-age network (``SpineAgeNet`` or one with the same attributes).
            **kwargs: ``lambda_mean``, ``lambda_variance``, ``beta``.

        Example:
            >>> from spineage.models.spine_age import SpineAgeNet
            >>> AgeLoss.for_model("smooth_l1", SpineAgeNet(age_mean=55.0)).age_mean
            55.0
        """
        mean_variance_head = bool(net.mean_variance)
        if name == "mean_variance" and not mean_variance_head:
            raise ValueError(
                "Expected a model with a mean-variance head (age_bins) for the mean_variance loss, "
                "found a model with a regression head"
            )
        if name in REGRESSION_LOSSES and mean_variance_head:
            raise ValueError(
                f"Expected a model with a regression head for the {name} loss, "
                f"found a model with a mean-variance head over {net.age_bins.numel()} age bins"
            )
        bins = net.age_bins.detach().cpu() if mean_variance_head else None
        return cls(name, age_mean=net.age_mean, age_sd=net.age_sd, age_bins=bins, **kwargs)

    def forward(self, raw: torch.Tensor, ages: torch.Tensor) -> torch.Tensor:
        """The scalar loss of the head's raw output against the true ages (years)."""
        if self.name == "mean_variance":
            return mean_variance_loss(raw, ages, self.age_bins, self.lambda_mean, self.lambda_variance)
        return regression_loss(raw, ages, self.age_mean, self.age_sd, kind=self.name, beta=self.beta)

    def extra_repr(self) -> str:
        if self.name == "mean_variance":
            return (f"mean_variance over {self.age_bins.numel()} age bins, lambda_mean={self.lambda_mean}, "
                    f"lambda_variance={self.lambda_variance}")
        extra = f", beta={self.beta}" if self.name == "smooth_l1" else ""
        return f"{self.name}, age_mean={self.age_mean}, age_sd={self.age_sd}{extra}"
