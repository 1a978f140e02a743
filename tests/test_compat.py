"""The compatibility layer: numpy and ConfigSpace 1.x values must cross Pyro4 and JSON as plain Python."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import ConfigSpace as CS
import numpy as np
import Pyro4
import Pyro4.configuration
import Pyro4.errors
import pytest
import serpent

from bohb_runner import compat
from bohb_runner.store.spaces import load_space
from bohb_runner.wire.pyro import MAX_WORKER_CONNECTIONS, configure_pyro, pyro_settings_kept

from conftest import SPACE


def test_to_native_converts_numpy_scalars_arrays_and_containers():
    value = {
        np.str_("k"): [np.float64(1.5), np.int64(3), np.bool_(True), np.float32(0.25)],
        "arr": np.arange(3),
        "nested": (np.int32(1), {"m": np.array([[1.0, 2.0]])}),
        "set": {np.int64(2), np.int64(1)},
    }
    native = compat.to_native(value)
    assert native == {"k": [1.5, 3, True, 0.25], "arr": [0, 1, 2], "nested": (1, {"m": [[1.0, 2.0]]}), "set": [1, 2]}
    assert type(native["k"][0]) is float and type(native["k"][1]) is int and type(native["k"][2]) is bool
    assert type(next(iter(native))) is str
    json.dumps(native)


def test_native_config_from_configspace_sample():
    space = load_space(SPACE)
    space.seed(3)
    for _ in range(20):
        config = compat.native_config(space.sample_configuration())
        for key, value in config.items():
            assert type(key) is str
            assert type(value) in (int, float, str, bool), (key, type(value))


def test_native_budget_rounds_float_noise():
    assert compat.native_budget(np.float64(0.9999999999999999)) == 1.0
    assert type(compat.native_budget(np.float64(3.0))) is float


def test_stock_serpent_breaks_on_numpy_values():
    """The failure the layer exists for, shown in a clean interpreter without it."""
    code = (
        "import numpy as np, serpent, ast\n"
        "text = serpent.dumps({'b': np.float64(1.0)}).decode()\n"
        "print('np.float64' in text)\n"
        "try:\n    serpent.dumps(np.int64(1)); print('ok')\nexcept TypeError: print('refused')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "refused"]


def test_serpent_sends_numpy_values_as_plain_python_after_install():
    compat.install_serpent_numpy_support()
    value = {"b": np.float64(1.0), "i": np.int64(2), "s": np.str_("sgd"), "t": np.bool_(False), "a": np.arange(2)}
    assert serpent.loads(serpent.dumps(value)) == {"b": 1.0, "i": 2, "s": "sgd", "t": False, "a": [0, 1]}


class _Echo:
    @Pyro4.expose
    def echo(self, value):
        return {"value": value, "types": {k: type(v).__name__ for k, v in value.items()}}


class _EchoDaemon:
    """A real Pyro4 daemon on loopback, set up as every bohb-runner process sets Pyro4 up
    (``configure_pyro``), serving :class:`_Echo`; this process's Pyro4 settings come back after."""

    def __init__(self, configure: bool = True) -> None:
        self.configure = configure

    def __enter__(self) -> str:
        self._settings = pyro_settings_kept()
        self._settings.__enter__()
        if self.configure:
            configure_pyro()
        self.daemon = Pyro4.Daemon(host="127.0.0.1")
        uri = self.daemon.register(_Echo())
        self.thread = threading.Thread(target=self.daemon.requestLoop, daemon=True)
        self.thread.start()
        return uri

    def __exit__(self, *exc) -> None:
        self.daemon.shutdown()
        self.thread.join(5)
        self._settings.__exit__(*exc)


def _echo_over_pyro(value):
    """Send ``value`` through a real Pyro4 call on loopback and return the reply."""
    with _EchoDaemon() as uri, Pyro4.Proxy(uri) as proxy:
        return proxy.echo(value)


def test_numpy_values_cross_a_real_pyro_call_on_loopback():
    reply = _echo_over_pyro(
        {"budget": np.float64(3.0), "n": np.int64(16), "opt": np.str_("adam"), "flag": np.bool_(True)}
    )
    assert reply["value"] == {"budget": 3.0, "n": 16, "opt": "adam", "flag": True}
    assert reply["types"] == {"budget": "float", "n": "int", "opt": "str", "flag": "bool"}


@pytest.mark.parametrize("serializer", ["pickle", "marshal", "json"])
def test_a_daemon_refuses_every_message_not_in_serpent(serializer):
    """Never pickle (data from the network is never unpickled); and nothing but serpent, which
    Pyro4 alone would also take from json and marshal clients."""
    with _EchoDaemon() as uri, Pyro4.Proxy(uri) as proxy:
        proxy._pyroSerializer = serializer
        with pytest.raises(
            Pyro4.errors.CommunicationError, match="rejected: message used serializer that is not accepted"
        ):
            proxy.echo({"x": 1})
        proxy._pyroRelease()
        proxy._pyroSerializer = "serpent"
        assert proxy.echo({"x": 1})["value"] == {"x": 1}  # the same daemon, in serpent


def test_a_daemon_serves_more_connections_at_once_than_pyros_default_pool():
    """Every worker keeps a connection to the dispatcher: Pyro4's default pool of 40 threads
    would refuse the 41st worker ("no free workers"); bohb-runner's daemons take them all."""
    count = Pyro4.configuration.Configuration().THREADPOOL_SIZE + 20  # Pyro4's default pool, and more
    assert count < MAX_WORKER_CONNECTIONS
    proxies = []
    with _EchoDaemon() as uri:
        try:
            for index in range(count):
                proxy = Pyro4.Proxy(uri)
                proxy._pyroTimeout = 10
                assert proxy.echo({"i": index})["value"] == {"i": index}  # its connection stays open
                proxies.append(proxy)
        finally:
            for proxy in proxies:
                proxy._pyroRelease()
    assert len(proxies) == count


def test_hpbandster_bohb_sampler_works_with_configspace_1_2():
    """hpbandster's BOHB config generator builds its KDE and proposes model-based configurations."""
    from hpbandster.core.dispatcher import Job
    from hpbandster.optimizers.config_generators.bohb import BOHB as BOHBGenerator

    compat.silence_configspace_deprecations()
    space = CS.ConfigurationSpace(seed=1)
    space.add([CS.Float("x", (0.0, 1.0)), CS.Categorical("c", ["a", "b"])])
    generator = BOHBGenerator(space, min_points_in_model=4)
    np.random.seed(0)
    for i in range(30):
        config, _ = generator.get_config(1.0)
        config = compat.native_config(config)
        job = Job((0, 0, i), config=config, budget=1.0)
        job.result = {"loss": (config["x"] - 0.2) ** 2 + (config["c"] == "b"), "info": {}}
        generator.new_result(job)
    picks = [generator.get_config(1.0)[1].get("model_based_pick") for _ in range(30)]
    assert any(picks), "BOHB never proposed a model-based configuration"


def test_non_finite_losses_cross_a_real_pyro_call():
    """A NaN or infinite loss must arrive as a float (serpent encodes NaN as a class dict)."""
    reply = _echo_over_pyro({"nan": np.float64("nan"), "inf": float("inf"), "ninf": np.float32("-inf")})
    assert reply["types"] == {"nan": "float", "inf": "float", "ninf": "float"}
    assert np.isnan(reply["value"]["nan"]) and reply["value"]["inf"] == np.inf and reply["value"]["ninf"] == -np.inf
