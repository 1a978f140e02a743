"""The vectorised BOHB sampler against hpbandster's: same models, same densities, same proposals'
distribution; and a whole study with it, interrupted and resumed, equals the uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import warnings

import numpy as np
import pytest
import statsmodels.api as sm
from hpbandster.core.dispatcher import Job
from hpbandster.optimizers.config_generators.bohb import BOHB as HpBandSterBOHB
from scipy import stats

from bohb_runner import compat
from bohb_runner.master.kde_sampler import ProductKDE, VectorizedBOHB, normal_reference_bandwidth
from bohb_runner.master.study_master import seeded_draws
from bohb_runner.store.journal import read_evaluations
from bohb_runner.store.spaces import load_space

from conftest import SPACE, TESTS, run_cli, torn_journal_env

QUADRATIC = TESTS / "data" / "quadratic.yaml"


@pytest.fixture(autouse=True)
def _quiet_deprecations():
    compat.silence_configspace_deprecations()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield


def observations(count: int, seed: int = 3) -> list[Job]:
    """``count`` finished jobs on budget 3 of the LeNet space (with its conditional momentum)."""
    space = load_space(SPACE)
    space.seed(seed)
    rng = np.random.default_rng(seed)
    jobs = []
    for index, config in enumerate(space.sample_configuration(count)):
        job = Job((0, 0, index), config=dict(config), budget=3.0)
        loss = np.log(config["lr"]) ** 2 / 10 + config["dropout"] + rng.normal(0, 0.05)
        job.result = {"loss": float(loss), "info": {}} if index % 17 else None  # a few crashed jobs
        jobs.append(job)
    return jobs


def fitted(cls, jobs: list[Job], **options):
    generator = cls(configspace=load_space(SPACE), **options)
    with seeded_draws(generator, 0):  # as the master seeds them
        for job in jobs:
            generator.new_result(job)
    return generator


def test_models_have_hpbandsters_split_data_and_bandwidths():
    jobs = observations(200)
    ours = fitted(VectorizedBOHB, jobs)
    theirs = fitted(HpBandSterBOHB, jobs)
    assert set(ours.kde_models) == set(theirs.kde_models) == {3.0}
    configs = np.array(theirs.configs[3.0])
    np.testing.assert_array_equal(np.array(ours.configs[3.0]), configs)
    np.testing.assert_array_equal(ours.losses[3.0], theirs.losses[3.0])
    order = np.argsort(theirs.losses[3.0])  # hpbandster's own call (ties among crashed jobs included)
    n_good = max(ours.min_points_in_model, 15 * 200 // 100)
    n_bad = max(ours.min_points_in_model, 85 * 200 // 100)
    for part, rows in (("good", order[:n_good]), ("bad", order[n_good : n_good + n_bad])):
        data = ours.kde_models[3.0][part].data
        original = configs[rows]
        active = np.isfinite(original)
        assert data.shape == theirs.kde_models[3.0][part].data.shape == original.shape
        np.testing.assert_array_equal(data[active], original[active])  # the same observations
        assert not np.isnan(data).any() and (~active).any()  # inactive momentum values imputed
        momentum = list(load_space(SPACE).keys()).index("momentum")
        assert set(data[~active[:, momentum], momentum]) <= set(original[active[:, momentum], momentum])
        reference = sm.nonparametric.KDEMultivariate(data=data, var_type=ours.kde_vartypes, bw="normal_reference")
        np.testing.assert_allclose(
            ours.kde_models[3.0][part].bw, np.clip(reference.bw, ours.min_bandwidth, None), rtol=0, atol=1e-9
        )


@pytest.mark.parametrize("rows", [9, 60, 1000])
def test_bandwidths_and_densities_equal_statsmodels(rows):
    rng = np.random.default_rng(rows)
    data = np.column_stack(
        [rng.random(rows), rng.integers(0, 2, rows), 0.5 + 0.001 * rng.random(rows), rng.integers(0, 3, rows)]
    ).astype(float)
    vartypes = np.array([0, 2, 0, 3])
    reference = sm.nonparametric.KDEMultivariate(data=data, var_type="cucu", bw="normal_reference")
    np.testing.assert_allclose(normal_reference_bandwidth(data), reference.bw, rtol=0, atol=1e-9)
    reference.bw = np.clip(reference.bw, 1e-3, None)
    ours = ProductKDE(data, vartypes, min_bandwidth=1e-3)
    np.testing.assert_allclose(ours.bw, reference.bw, rtol=0, atol=1e-9)
    points = np.column_stack(
        [rng.random(50), rng.integers(0, 2, 50), 0.5 + 0.001 * rng.random(50), rng.integers(0, 3, 50)]
    ).astype(float)
    points[:5] = data[:5]  # at observations too, where the kernels peak
    expected = np.array([reference.pdf(point) for point in points])
    np.testing.assert_allclose(ours.pdf(points), expected, rtol=1e-9, atol=1e-300)
    assert ours.pdf(points[0]) == pytest.approx(expected[0], rel=1e-9)


def test_a_categorical_level_missing_from_the_data_scores_like_statsmodels():
    data = np.array([[0.1, 0.0], [0.2, 0.0], [0.4, 0.0], [0.3, 0.0]])  # one level seen: c - 1 = 0
    reference = sm.nonparametric.KDEMultivariate(data=data, var_type="cu", bw="normal_reference")
    ours = ProductKDE(data, np.array([0, 2]), min_bandwidth=1e-3)
    reference.bw = ours.bw
    for point in ([0.2, 0.0], [0.2, 1.0]):
        with np.errstate(divide="ignore"):
            assert ours.pdf(np.array(point)) == pytest.approx(reference.pdf(point), rel=1e-9)


def proposals(cls, jobs: list[Job], count: int, seed: int) -> list[dict]:
    generator = fitted(cls, jobs, random_fraction=0.0)
    generator.configspace.seed(seed)
    with seeded_draws(generator, seed):
        configs = [generator.get_config(3.0) for _ in range(count)]
    assert all(info["model_based_pick"] for _, info in configs)
    return [config for config, _ in configs]


@pytest.mark.slow  # hpbandster's sampler takes about 0.1 s per proposal
def test_both_samplers_propose_from_the_same_distribution():
    """Kolmogorov-Smirnov on the learning rate and dropout, a chi-square-free check on a categorical."""
    jobs = observations(120)
    theirs = proposals(HpBandSterBOHB, jobs, 80, seed=1)
    ours = proposals(VectorizedBOHB, jobs, 1500, seed=2)
    for name in ("lr", "dropout", "num_filters"):
        a = np.log([c[name] for c in theirs]) if name != "dropout" else [c[name] for c in theirs]
        b = np.log([c[name] for c in ours]) if name != "dropout" else [c[name] for c in ours]
        assert stats.ks_2samp(a, b).pvalue > 0.001, name
    share_theirs = np.mean([c["optimizer"] == "sgd" for c in theirs])
    share_ours = np.mean([c["optimizer"] == "sgd" for c in ours])
    assert abs(share_theirs - share_ours) < 0.15
    # the proposals are model-based, not the prior: far narrower than log-uniform lr
    assert np.std(np.log([c["lr"] for c in ours])) < 0.8 * np.std(np.log(np.geomspace(1e-4, 1e-1, 1000)))
    assert all(("momentum" in c) == (c["optimizer"] == "sgd") for c in ours)  # inactive values dropped


def test_the_acquisition_picks_hpbandsters_candidate():
    """Fed the same candidates, the vectorised l/g ratio picks what hpbandster's loop picks."""
    generator = fitted(VectorizedBOHB, observations(150))
    model = generator.kde_models[3.0]
    statsmodels_kdes = {}
    for part in ("good", "bad"):
        kde = sm.nonparametric.KDEMultivariate(
            data=model[part].data, var_type=generator.kde_vartypes, bw="normal_reference"
        )
        kde.bw = np.clip(kde.bw, generator.min_bandwidth, None)
        statsmodels_kdes[part] = kde
    for seed in range(5):
        generator.reseed(seed)
        chosen = generator._best_candidate()
        generator.reseed(seed)
        candidates = generator.candidates(model["good"])
        best, expected = np.inf, None
        for vector in candidates:  # hpbandster's minimize_me loop
            value = max(1e-32, statsmodels_kdes["bad"].pdf(vector)) / max(statsmodels_kdes["good"].pdf(vector), 1e-32)
            if value < best:
                best, expected = value, vector
        np.testing.assert_array_equal(chosen, expected)


def test_candidates_follow_hpbandsters_kernels():
    """Truncated normals with bandwidth_factor x bandwidth, categorical values kept with 1 - bandwidth."""
    generator = fitted(VectorizedBOHB, observations(150))
    good = generator.kde_models[3.0]["good"]
    generator.num_samples = 20000
    generator.reseed(11)
    single = good.data[:1].repeat(len(good.data), axis=0)  # one centre, to compare with scipy's law
    good.data, original = single, good.data
    try:
        draws = generator.candidates(good)
    finally:
        good.data = original
    centre = single[0]
    for column in np.flatnonzero(generator.vartypes == 0):
        scale = generator.bw_factor * max(good.bw[column], generator.min_bandwidth)
        law = stats.truncnorm(-centre[column] / scale, (1 - centre[column]) / scale, loc=centre[column], scale=scale)
        assert stats.kstest(draws[:, column], law.cdf).pvalue > 0.001, column
    for column in np.flatnonzero(generator.vartypes > 0):
        h, choices = good.bw[column], generator.vartypes[column]
        expected = (1 - h) + h / choices  # kept, or drawn uniformly and hit the same value
        assert np.mean(draws[:, column] == centre[column]) == pytest.approx(expected, abs=0.015)


@pytest.mark.parametrize("space_file", ["lenet.yaml", "lenet-full.yaml"])
def test_proposals_become_the_configurations_configspace_would_make(space_file):
    """The direct vector-to-configuration path equals Configuration(vector) + deactivate_inactive_hyperparameters."""
    import ConfigSpace.util

    space = load_space(SPACE.parent / space_file)
    generator = VectorizedBOHB(configspace=space)
    rng = np.random.default_rng(0)
    for _ in range(300):
        vector = rng.random(len(space))
        for index, choices in enumerate(generator.vartypes):
            if choices:
                vector[index] = rng.integers(choices)
        expected = ConfigSpace.util.deactivate_inactive_hyperparameters(None, space, vector=vector)
        assert generator.vector_to_config(vector) == dict(expected)


def test_sampling_is_reproducible_under_the_masters_seeding():
    jobs = observations(80)
    assert proposals(VectorizedBOHB, jobs, 20, seed=7) == proposals(VectorizedBOHB, jobs, 20, seed=7)


def _fit_and_propose(generator, jobs: list[Job], seed: int, reseed) -> list[dict]:
    """What the master does: draws seeded per result for the model, per proposal for sampling."""
    for job in jobs:
        reseed(seed + job.id[2])
        generator.new_result(job)
    proposed = []
    for index in range(15):
        reseed(seed * 1000 + index)
        generator.configspace.seed(seed * 1000 + index)
        proposed.append(generator.get_config(3.0))
    return proposed


def test_the_sampler_proposes_what_it_did_when_it_drew_from_numpys_global_rng():
    """Before it had an RNG of its own, the sampler drew from numpy's global one, which the master
    seeded: pointed at that RNG again (``np.random.mtrand._rand``, what the ``np.random`` functions
    draw from), it must propose exactly what it proposes now, so that seeded studies keep their
    configurations."""
    jobs = observations(120)
    as_before = VectorizedBOHB(configspace=load_space(SPACE), random_fraction=0.2)
    as_before.rng = np.random.mtrand._rand
    before = _fit_and_propose(as_before, jobs, 5, np.random.seed)
    now = VectorizedBOHB(configspace=load_space(SPACE), random_fraction=0.2)
    after = _fit_and_propose(now, jobs, 5, now.reseed)
    assert after == before
    picks = [info["model_based_pick"] for _, info in after]
    assert any(picks) and not all(picks)  # both kinds of proposal were compared


def test_the_sampler_leaves_numpys_global_rng_alone():
    """The global RNG belongs to whoever hosts the study (a notebook): the sampler neither draws
    from it nor depends on it."""
    jobs = observations(120)
    np.random.seed(99)
    state = np.random.get_state()
    generator = VectorizedBOHB(configspace=load_space(SPACE), random_fraction=0.2)
    first = _fit_and_propose(generator, jobs, 5, generator.reseed)
    after = np.random.get_state()
    assert after[0] == state[0] and np.array_equal(after[1], state[1]) and after[2:] == state[2:]
    np.random.seed(12345)  # a different global state changes nothing
    generator = VectorizedBOHB(configspace=load_space(SPACE), random_fraction=0.2)
    assert _fit_and_propose(generator, jobs, 5, generator.reseed) == first


def test_hpbandsters_sampler_is_seeded_as_before_and_the_global_rng_put_back():
    """hpbandster's sampler can only draw from numpy's global RNG: the master seeds it for each
    call, as it always did (the same proposals), and puts the caller's state back after it."""
    jobs = observations(40)
    seeded_before = fitted(HpBandSterBOHB, [])
    np.random.seed(0)
    for job in jobs:
        seeded_before.new_result(job)
    np.random.seed(3)
    seeded_before.configspace.seed(3)
    expected = [seeded_before.get_config(3.0) for _ in range(4)]

    np.random.seed(99)
    state = np.random.get_state()
    generator = fitted(HpBandSterBOHB, jobs)
    generator.configspace.seed(3)
    with seeded_draws(generator, 3):
        proposed = [generator.get_config(3.0) for _ in range(4)]
    assert proposed == expected and any(info["model_based_pick"] for _, info in proposed)
    after = np.random.get_state()
    assert np.array_equal(after[1], state[1]) and after[2:] == state[2:]


def study_args(study, *extra):
    return [
        "run", "--space", QUADRATIC, "--study-dir", study, "--worker", "user_worker:QuadraticWorker", "--workers", 1,
        "--max-budget", 9, "--iterations", 5, "--seed", 4, "--no-progress", "--ping-interval", 1, *extra,
    ]  # fmt: skip


def test_a_vectorized_bohb_study_runs_and_resumes_identically(tmp_path):
    reference = tmp_path / "reference"
    assert run_cli(*study_args(reference)).returncode == 0
    assert json.loads((reference / "study.json").read_text())["bohb"]["sampler"] == "vectorized"
    sampled = [json.loads(line) for line in (reference / "configs.jsonl").read_text().splitlines()]
    assert any(s["config_info"].get("model_based_pick") for s in sampled)
    study = tmp_path / "interrupted"
    torn = subprocess.run(
        [os.sys.executable, "-m", "bohb_runner", *map(str, study_args(study))],
        env=torn_journal_env("results.jsonl", 30), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert torn.returncode == -signal.SIGKILL
    final = run_cli(*study_args(study))
    assert final.returncode == 0, final.stderr

    def signature(path):
        return [(e.config_id, e.budget, json.dumps(e.config, sort_keys=True)) for e in read_evaluations(path)]

    assert sorted(signature(study)) == sorted(signature(reference))


def test_hpbandsters_sampler_stays_selectable(tmp_path):
    study = tmp_path / "hpb"
    assert run_cli(*study_args(study, "--sampler", "hpbandster", "--iterations", 2)).returncode == 0
    assert json.loads((study / "study.json").read_text())["bohb"]["sampler"] == "hpbandster"
    result = run_cli(*study_args(tmp_path / "bad", "--sampler", "fast"))
    assert result.returncode != 0 and "--sampler must be one of vectorized, hpbandster" in result.stderr
