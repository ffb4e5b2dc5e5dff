"""Multivariate two-sample figures on standardised feature matrices.

Every function takes a real and a generated matrix of shape [n, d] and
[m, d]. :func:`standardise` scales both with the real sample's mean and
standard deviation first, so that each column weighs the same. The Frechet
and kernel physics distances (FPD, KPD) follow Kansal et al. 2023 as JetNet
implements them (``jetnet.evaluation.gen_metrics.fpd`` and ``kpd``), with
explicit seeds. Unlike JetNet 0.2.5, the KPD draws its batches without
replacement and caps them at half the smaller sample, so that it stays
unbiased when the samples are not much larger than a batch.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import scipy.linalg
import scipy.optimize
import scipy.stats
import torch

from cmsgen.engine.validation.univariate import MetricResult, bootstrap_scale

# FPD defaults (the JetNet defaults): FPD_POINTS sample sizes evenly spaced in 1/N
# between FPD_MIN_SAMPLES and FPD_MAX_SAMPLES, each averaged over FPD_BATCHES random draws.
FPD_MIN_SAMPLES = 20_000
FPD_MAX_SAMPLES = 50_000
FPD_POINTS = 10
FPD_BATCHES = 20

# KPD defaults: the unbiased MMD^2 on KPD_BATCHES batches of KPD_BATCH_SIZE events.
KPD_BATCHES = 10
KPD_BATCH_SIZE = 5_000
KPD_DEGREE = 4
# Largest batch as a fraction of the smaller sample, so that batches drawn without replacement still differ.
KPD_MAX_BATCH_FRACTION = 0.5

# Classifier two-sample test defaults.
CLASSIFIER_MAX_EVENTS = 20_000
CLASSIFIER_EPOCHS = 10
CLASSIFIER_HIDDEN = 64
CLASSIFIER_BATCH_SIZE = 1024


def standardise(real: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Standardise ``real`` and every array in ``others`` with the real sample's column mean and standard deviation.

    A constant real column is divided by 1 instead of 0, so that it stays finite.
    Returns ``[real_scaled, *others_scaled]``.
    """
    real = np.asarray(real, dtype=np.float64)
    mean = real.mean(axis=0)
    std = real.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return [(real - mean) / std] + [(np.asarray(other, dtype=np.float64) - mean) / std for other in others]


def _check_matrices(real: np.ndarray, generated: np.ndarray, minimum: int, name: str) -> None:
    if real.ndim != 2 or generated.ndim != 2 or real.shape[1] != generated.shape[1]:
        raise ValueError(
            f"{name} needs two matrices [n, d] with the same d, got shapes {real.shape} and {generated.shape}"
        )
    if len(real) < minimum or len(generated) < minimum:
        raise ValueError(
            f"{name} needs at least {minimum} events per sample, got {len(real)} real and {len(generated)} generated"
        )


def frechet_distance_gaussian(
    mean_1: np.ndarray, covariance_1: np.ndarray, mean_2: np.ndarray, covariance_2: np.ndarray
) -> float:
    """Return the Frechet distance of two Gaussians: |mu1 - mu2|^2 + Tr(C1 + C2 - 2 (C1 C2)^(1/2))."""
    with warnings.catch_warnings():
        # A constant column (such as a charge product fixed by the selection) makes the product singular.
        # Its square root is still well defined, and only its trace enters the distance.
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        root = scipy.linalg.sqrtm(covariance_1 @ covariance_2)
    root = np.real(root)
    difference = mean_1 - mean_2
    value = float(difference @ difference + np.trace(covariance_1) + np.trace(covariance_2) - 2.0 * np.trace(root))
    return max(value, 0.0)


def frechet_distance(real: np.ndarray, generated: np.ndarray) -> float:
    """Return the Frechet distance between Gaussians fitted (mean, covariance) to two samples [n, d], [m, d]."""
    return frechet_distance_gaussian(
        real.mean(axis=0),
        np.atleast_2d(np.cov(real, rowvar=False)),
        generated.mean(axis=0),
        np.atleast_2d(np.cov(generated, rowvar=False)),
    )


def frechet_physics_distance(
    real: np.ndarray,
    generated: np.ndarray,
    min_samples: int = FPD_MIN_SAMPLES,
    max_samples: int = FPD_MAX_SAMPLES,
    n_points: int = FPD_POINTS,
    n_batches: int = FPD_BATCHES,
    seed: int = 0,
) -> MetricResult:
    """Compute the Frechet physics distance: the Frechet distance extrapolated to infinite sample size.

    The Frechet distance of finite samples is biased upwards by about a/N. For
    ``n_points`` sizes N evenly spaced in 1/N between ``min_samples`` and
    ``max_samples``, the mean FD over ``n_batches`` draws (with replacement)
    is fitted with FD(N) = FPD + a/N (``scipy.optimize.curve_fit``, both
    parameters >= 0). The value is the intercept FPD and the error its fit
    uncertainty. Inputs should already be standardised. When a sample is
    smaller than ``max_samples``, the largest size becomes the smaller sample
    size, and the smallest size is at most half of that.
    When only one distinct size remains, the value is the mean FD at that
    size, with no error and no extrapolation.
    """
    dimension = real.shape[1] if real.ndim == 2 else 0
    _check_matrices(real, generated, 2 * (dimension + 2), "the Frechet physics distance")
    largest = min(max_samples, len(real), len(generated))
    smallest = min(min_samples, largest // 2)
    sizes = np.unique((1.0 / np.linspace(1.0 / smallest, 1.0 / largest, n_points)).astype(np.int64))
    rng = np.random.default_rng(seed)
    means = []
    for size in sizes:
        values = [
            frechet_distance(real[rng.integers(0, len(real), size)], generated[rng.integers(0, len(generated), size)])
            for _ in range(n_batches)
        ]
        means.append(float(np.mean(values)))
    inverse = 1.0 / sizes.astype(np.float64)
    if len(sizes) < 2:
        return MetricResult(name="fpd", value=means[0], error=None, details={"sizes": sizes.tolist()})
    parameters, covariance = scipy.optimize.curve_fit(
        lambda x, intercept, slope: intercept + slope * x,
        inverse,
        np.asarray(means),
        p0=(max(means[-1], 0.0), 0.0),
        bounds=([0.0, 0.0], [np.inf, np.inf]),
    )
    return MetricResult(
        name="fpd",
        value=float(parameters[0]),
        error=float(math.sqrt(max(covariance[0, 0], 0.0))),
        details={
            "sizes": sizes.tolist(),
            "mean_fd": means,
            "slope": float(parameters[1]),
            "n_batches": n_batches,
        },
    )


def _polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int) -> np.ndarray:
    kernel = x @ y.T
    kernel /= x.shape[1]
    kernel += 1.0
    if degree == 4:
        # Two in-place squarings are several times faster than a general power on [n, m] matrices.
        np.multiply(kernel, kernel, out=kernel)
        np.multiply(kernel, kernel, out=kernel)
        return kernel
    return kernel**degree


def mmd_polynomial_unbiased(x: np.ndarray, y: np.ndarray, degree: int = KPD_DEGREE) -> float:
    """Return the unbiased estimate of MMD^2 with the kernel k(a, b) = (a.b / d + 1)^degree.

    The within-sample sums leave out the diagonal (the U-statistic), so the
    estimate is zero on average for equal distributions and can be negative.
    """
    m, n = len(x), len(y)
    kernel_xx = _polynomial_kernel(x, x, degree)
    term_xx = (kernel_xx.sum() - np.trace(kernel_xx)) / (m * (m - 1))
    del kernel_xx
    kernel_yy = _polynomial_kernel(y, y, degree)
    term_yy = (kernel_yy.sum() - np.trace(kernel_yy)) / (n * (n - 1))
    del kernel_yy
    term_xy = _polynomial_kernel(x, y, degree).mean()
    return float(term_xx + term_yy - 2.0 * term_xy)


def kernel_physics_distance(
    real: np.ndarray,
    generated: np.ndarray,
    n_batches: int = KPD_BATCHES,
    batch_size: int = KPD_BATCH_SIZE,
    degree: int = KPD_DEGREE,
    seed: int = 0,
) -> MetricResult:
    """Compute the kernel physics distance: the unbiased MMD^2 with a polynomial kernel.

    The kernel is k(x, y) = (x.y / d + 1)^degree, with degree 4 by default.
    The MMD^2 is estimated on ``n_batches`` batches of ``batch_size`` events
    per sample. Each batch is drawn without replacement, because a repeated
    event adds k(x, x) terms to the within-sample sums and biases the
    U-statistic upwards. The batch is at most half of the smaller sample
    (``KPD_MAX_BATCH_FRACTION``), so that batches differ and their spread
    measures the estimator's scatter. The value is the median over batches
    and the error half the 16-84 percentile range. Inputs should already be
    standardised.
    """
    _check_matrices(real, generated, 4, "the kernel physics distance")
    size = min(batch_size, int(KPD_MAX_BATCH_FRACTION * min(len(real), len(generated))))
    rng = np.random.default_rng(seed)
    values = np.array(
        [
            mmd_polynomial_unbiased(
                real[rng.choice(len(real), size, replace=False)],
                generated[rng.choice(len(generated), size, replace=False)],
                degree,
            )
            for _ in range(n_batches)
        ]
    )
    low, high = np.percentile(values, [16.0, 84.0])
    return MetricResult(
        name="kpd",
        value=float(np.median(values)),
        error=float(0.5 * (high - low)),
        details={"batch_size": int(size), "n_batches": n_batches, "degree": degree},
    )


def auc_standard_error(auc: float, n_positive: int, n_negative: int) -> float:
    """Return the Hanley-McNeil (1982) standard error of a ROC AUC from n_positive and n_negative events."""
    q1 = auc / (2.0 - auc)
    q2 = 2.0 * auc * auc / (1.0 + auc)
    variance = (
        auc * (1.0 - auc) + (n_positive - 1) * (q1 - auc * auc) + (n_negative - 1) * (q2 - auc * auc)
    ) / (n_positive * n_negative)
    return math.sqrt(max(variance, 0.0))


def roc_auc(scores_positive: np.ndarray, scores_negative: np.ndarray) -> float:
    """Return the ROC AUC: the probability that a positive event scores above a negative one (ties count half).

    Uses the Mann-Whitney U statistic, AUC = U / (n_positive * n_negative).
    """
    statistic = scipy.stats.mannwhitneyu(scores_positive, scores_negative, alternative="two-sided").statistic
    return float(statistic) / (len(scores_positive) * len(scores_negative))


def classifier_two_sample_test(
    real: np.ndarray,
    generated: np.ndarray,
    max_events: int = CLASSIFIER_MAX_EVENTS,
    epochs: int = CLASSIFIER_EPOCHS,
    hidden: int = CLASSIFIER_HIDDEN,
    seed: int = 0,
) -> MetricResult:
    """Run the classifier two-sample test: the held-out ROC AUC of an MLP trained to separate generated from real.

    Both samples are cut to the same size n = min(n_real, n_generated,
    ``max_events``) by a seeded random choice. The first half of each sample
    trains the classifier, and the second half measures the AUC. The
    classifier has two hidden layers of ``hidden`` ReLU units in float32 and
    is trained with Adam (learning rate 1e-3, batches of
    ``CLASSIFIER_BATCH_SIZE``) on the binary cross-entropy for ``epochs`` passes.
    An AUC of 0.5 means that the classifier cannot tell the samples apart. The
    error is the Hanley-McNeil standard error of the AUC on the held-out
    events. Inputs should already be standardised. The global torch random
    state and thread count are left unchanged.
    """
    _check_matrices(real, generated, 8, "the classifier test")
    rng = np.random.default_rng(seed)
    size = min(len(real), len(generated), max_events)
    real = real[rng.choice(len(real), size, replace=False)]
    generated = generated[rng.choice(len(generated), size, replace=False)]
    half = size // 2
    train_x = np.concatenate([real[:half], generated[:half]])
    train_y = np.concatenate([np.zeros(half), np.ones(half)])
    test_real, test_generated = real[half:], generated[half:]

    threads = torch.get_num_threads()
    # A model this small runs fastest on one thread; more threads only contend, badly so on a busy machine.
    torch.set_num_threads(1)
    try:
        scores_real, scores_generated = _train_and_score(train_x, train_y, test_real, test_generated, epochs, hidden, seed)
    finally:
        torch.set_num_threads(threads)

    auc = roc_auc(scores_generated, scores_real)
    return MetricResult(
        name="classifier_auc",
        value=auc,
        error=auc_standard_error(auc, len(scores_generated), len(scores_real)),
        details={"n_train_per_class": half, "n_test_per_class": size - half, "epochs": epochs, "hidden": hidden},
    )


def _train_and_score(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_real: np.ndarray,
    test_generated: np.ndarray,
    epochs: int,
    hidden: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Train the classifier of :func:`classifier_two_sample_test` and return its logits on held-out real and generated events."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = torch.nn.Sequential(
            torch.nn.Linear(train_x.shape[1], hidden),
            torch.nn.ReLU(),
            torch.nn.Linear(hidden, hidden),
            torch.nn.ReLU(),
            torch.nn.Linear(hidden, 1),
        )
        optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
        loss_function = torch.nn.BCEWithLogitsLoss()
        inputs = torch.from_numpy(train_x).float()
        targets = torch.from_numpy(train_y).float().unsqueeze(1)
        generator = torch.Generator().manual_seed(seed)
        for _ in range(epochs):
            order = torch.randperm(len(inputs), generator=generator)
            for start in range(0, len(order), CLASSIFIER_BATCH_SIZE):
                batch = order[start : start + CLASSIFIER_BATCH_SIZE]
                optimiser.zero_grad()
                loss = loss_function(model(inputs[batch]), targets[batch])
                loss.backward()
                optimiser.step()
        with torch.no_grad():
            scores_real = model(torch.from_numpy(test_real).float()).squeeze(1).numpy()
            scores_generated = model(torch.from_numpy(test_generated).float()).squeeze(1).numpy()
    return scores_real, scores_generated


def correlation_difference(
    real: np.ndarray,
    generated: np.ndarray,
    n_bootstrap: int = 20,
    seed: int = 0,
    bootstrap_max_events: int = 100_000,
) -> MetricResult:
    """Compute the Frobenius norm of the difference of the two Pearson correlation matrices (``np.corrcoef``).

    A constant column has an undefined correlation, so its entries count as 0.
    The error is the standard deviation over ``n_bootstrap`` resamples of both
    samples. They are drawn from subsamples of at most ``bootstrap_max_events``
    and scaled to the full sizes like
    :func:`cmsgen.engine.validation.univariate.wasserstein_1`.
    """
    _check_matrices(real, generated, 3, "the correlation difference")

    def norm(a: np.ndarray, b: np.ndarray) -> float:
        with np.errstate(divide="ignore", invalid="ignore"):
            corr_a = np.nan_to_num(np.corrcoef(a, rowvar=False))
            corr_b = np.nan_to_num(np.corrcoef(b, rowvar=False))
        return float(np.linalg.norm(np.atleast_2d(corr_a - corr_b), ord="fro"))

    value = norm(real, generated)
    rng = np.random.default_rng(seed)
    real_sub = real if len(real) <= bootstrap_max_events else real[rng.choice(len(real), bootstrap_max_events, replace=False)]
    generated_sub = (
        generated
        if len(generated) <= bootstrap_max_events
        else generated[rng.choice(len(generated), bootstrap_max_events, replace=False)]
    )
    replicas = [
        norm(real_sub[rng.integers(0, len(real_sub), len(real_sub))], generated_sub[rng.integers(0, len(generated_sub), len(generated_sub))])
        for _ in range(n_bootstrap)
    ]
    scale = bootstrap_scale(len(real), len(generated), len(real_sub), len(generated_sub))
    error = float(np.std(replicas, ddof=1)) * scale if n_bootstrap > 1 else None
    return MetricResult(name="correlation_frobenius", value=value, error=error, details={"n_bootstrap": n_bootstrap})
