"""Settings: defaults < the config file (SIGHTQL_CONFIG, $SIGHTQL_HOME/config.toml, ~/.sightql/config.toml)
< SIGHTQL_* variables; unknown keys and bad values refused in one sentence."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import sightql
from sightql.config import Settings, config_file, read_settings
from sightql.errors import ConfigError
from tests.cli_tree import run_main


@pytest.fixture
def clean_env(monkeypatch, tmp_path) -> Path:
    """No SIGHTQL_* variable of the machine running the tests, and an empty home folder; returns it."""
    for name in list(os.environ):
        if name.startswith("SIGHTQL_"):
            monkeypatch.delenv(name)
    home = tmp_path / "user-home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


def write_config(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_the_config_file_overrides_defaults_and_the_environment_overrides_the_file(clean_env, monkeypatch, tmp_path):
    config = write_config(tmp_path / "sightql.toml", 'batch_size = 8\nlock_wait = 0.5\nmemory_limit = "1GB"\n'
                                                     'device = "cpu"\nhome = "~/photos-warehouse"\n')
    monkeypatch.setenv("SIGHTQL_CONFIG", str(config))
    monkeypatch.setenv("SIGHTQL_BATCH_SIZE", "16")
    monkeypatch.setenv("SIGHTQL_LOCK_WAIT", "")  # empty: as if unset, so the file's value stays
    settings, chosen = read_settings()
    assert (settings.batch_size, settings.lock_wait, settings.memory_limit, settings.device) == (16, 0.5, "1GB", "cpu")
    assert settings.home == clean_env / "photos-warehouse"
    assert settings.max_image_bytes == Settings().max_image_bytes  # not in the file: the default
    assert settings.memory_limit_fixed  # set in the file counts as set by the user
    assert chosen == {"batch_size", "lock_wait", "memory_limit", "device", "home"}


def test_a_session_uses_the_config_file(clean_env, monkeypatch, warehouse):
    monkeypatch.setenv("SIGHTQL_HOME", str(warehouse))
    write_config(warehouse / "config.toml", 'batch_size = 5\nmax_image_pixels = 1_000_000\n')
    with sightql.connect() as session:
        assert session.home == warehouse
        assert (session.settings.batch_size, session.limits.max_pixels) == (5, 1_000_000)
        assert not session.settings.memory_limit_fixed


def test_the_file_is_found_in_order(clean_env, monkeypatch, tmp_path):
    assert config_file() is None
    user = write_config(clean_env / ".sightql" / "config.toml", "batch_size = 1\n")
    assert config_file() == user
    monkeypatch.setenv("SIGHTQL_HOME", str(tmp_path / "wh"))
    assert config_file() == user  # $SIGHTQL_HOME has none: the user's file
    in_home = write_config(tmp_path / "wh" / "config.toml", "batch_size = 2\n")
    assert config_file() == in_home and Settings.from_env().batch_size == 2
    explicit = write_config(tmp_path / "elsewhere.toml", "batch_size = 3\n")
    monkeypatch.setenv("SIGHTQL_CONFIG", str(explicit))
    assert config_file() == explicit and Settings.from_env().batch_size == 3


def test_a_missing_sightql_config_file_is_refused(clean_env, monkeypatch, tmp_path):
    monkeypatch.setenv("SIGHTQL_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError) as error:
        Settings.from_env()
    assert str(error.value) == f"SIGHTQL_CONFIG={str(tmp_path / 'nope.toml')!r} names no file; create it, or unset SIGHTQL_CONFIG"


def test_an_unknown_key_is_refused_in_one_sentence_naming_it_and_the_known_ones(clean_env, monkeypatch, tmp_path):
    config = write_config(tmp_path / "c.toml", 'batch_size = 4\nbatchsize = 4\n')
    monkeypatch.setenv("SIGHTQL_CONFIG", str(config))
    with pytest.raises(ConfigError) as error:
        Settings.from_env()
    message = str(error.value)
    assert message.startswith(f"the config file {config} has an unknown key 'batchsize'; remove or rename it "
                              "(the known keys are api_max_images, api_max_request_bytes, batch_size, ")
    assert message.endswith("lock_wait, max_image_bytes, max_image_pixels, max_model_bytes, memory_limit, "
                            "ort_threads, read_budget_bytes, s3_endpoint_url, search_ef, search_exact_rows)")
    assert message.count(". ") == 0 and "\n" not in message


@pytest.mark.parametrize("secret", ["api_token", "image_api_key", "openai_api_key"])
def test_secrets_are_not_read_from_the_file(clean_env, monkeypatch, tmp_path, secret):
    monkeypatch.setenv("SIGHTQL_CONFIG", str(write_config(tmp_path / "c.toml", f'{secret} = "sk-123"\n')))
    with pytest.raises(ConfigError, match=f"has an unknown key '{secret}'"):
        Settings.from_env()


@pytest.mark.parametrize(
    "line, message",
    [
        ('batch_size = "many"', "batch_size = 'many' in the config file {path} is not a whole number; set it to one, e.g. 32"),
        ("batch_size = 2.5", "batch_size = 2.5 in the config file {path} is not a whole number; set it to one, e.g. 32"),
        ("batch_size = 0", "batch_size in the config file {path} must be positive; set it to e.g. 32"),
        ('lock_wait = "soon"', "lock_wait = 'soon' in the config file {path} is not a number of seconds; set it to one, e.g. 5"),
        ("lock_wait = -1", "lock_wait in the config file {path} must be zero or more seconds; set it to e.g. 5"),
        ('device = "tpu"', "device = 'tpu' in the config file {path} is not valid; use auto, cpu or cuda"),
        ("memory_limit = 512", "memory_limit = 512 in the config file {path} is not text; write it in quotes, e.g. '256MB'"),
        ('image_api_base = "localhost:8080"',
         "image_api_base = 'localhost:8080' in the config file {path} is not an http(s) URL; set it to e.g. http://localhost:8080/v1"),
        ("batch_size = ", "the config file {path} is not valid TOML (Invalid value (at line 1, column 14)); "
                          'fix it, e.g. batch_size = 64 and memory_limit = "1GB", one per line'),
    ],
)
def test_a_bad_value_in_the_file_is_refused_in_one_sentence(clean_env, monkeypatch, tmp_path, line, message):
    config = write_config(tmp_path / "c.toml", line + "\n")
    monkeypatch.setenv("SIGHTQL_CONFIG", str(config))
    with pytest.raises(ConfigError) as error:
        Settings.from_env()
    assert str(error.value) == message.format(path=config)


def test_a_bad_variable_is_named_even_when_the_file_sets_the_key(clean_env, monkeypatch, tmp_path):
    monkeypatch.setenv("SIGHTQL_CONFIG", str(write_config(tmp_path / "c.toml", "batch_size = 4\n")))
    monkeypatch.setenv("SIGHTQL_BATCH_SIZE", "lots")
    with pytest.raises(ConfigError) as error:
        Settings.from_env()
    assert str(error.value) == "SIGHTQL_BATCH_SIZE='lots' is not a whole number; set it to one, e.g. 32"


def test_the_cli_reports_a_bad_config_file_as_one_line(clean_env, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SIGHTQL_HOME", str(tmp_path / "wh"))
    write_config(tmp_path / "wh" / "config.toml", "colour = 'blue'\n")
    code, out, err = run_main(monkeypatch, capsys, ["sql", "SELECT 1"])
    assert (code, out) == (2, "")
    assert err.startswith(f"error: the config file {tmp_path / 'wh' / 'config.toml'} has an unknown key 'colour'")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_the_image_provider_and_api_limits_come_from_the_file(clean_env, monkeypatch, tmp_path):
    from sightql.api.limits import ApiLimits
    from sightql.generation.provider import provider_from_env

    monkeypatch.setenv("SIGHTQL_CONFIG", str(write_config(tmp_path / "c.toml", (
        'image_api_base = "http://localhost:8080/v1/"\nimage_model = "tiny"\nimage_timeout = 3\n'
        "api_max_images = 2\napi_max_request_bytes = 1000\n"))))
    provider = provider_from_env()
    assert (provider.api_base, provider.model, provider.timeout, provider.api_key) == ("http://localhost:8080/v1", "tiny", 3.0, None)
    limits = ApiLimits.from_env()
    assert (limits.max_images, limits.max_request_bytes) == (2, 1000)


def test_dask_workers_keep_thread_counts_the_file_sets(clean_env, monkeypatch, tmp_path):
    pytest.importorskip("distributed")
    from sightql.inference.runners.dask_cluster import worker_env

    monkeypatch.setenv("SIGHTQL_CONFIG", str(write_config(tmp_path / "c.toml", "ort_threads = 3\n")))
    env = worker_env(1)
    assert (env["SIGHTQL_ORT_THREADS"], env["SIGHTQL_DECODE_THREADS"]) == ("3", str(os.cpu_count() or 1))


def test_the_dask_runners_cluster_comes_from_the_file_or_the_environment(clean_env, monkeypatch, tmp_path):
    from sightql.inference.runners import DaskRunner, resolve_runner

    monkeypatch.setenv("SIGHTQL_CONFIG", str(write_config(tmp_path / "c.toml", 'dask_scheduler = "tcp://10.0.0.5:8786"\n')))
    settings = Settings.from_env()
    assert (settings.dask_scheduler, settings.dask_workers) == ("tcp://10.0.0.5:8786", None)
    assert resolve_runner("dask", settings) == DaskRunner(scheduler="tcp://10.0.0.5:8786")
    monkeypatch.setenv("SIGHTQL_CONFIG", str(write_config(tmp_path / "d.toml", "")))
    monkeypatch.setenv("SIGHTQL_DASK_WORKERS", "3")
    assert resolve_runner("dask", Settings.from_env()) == DaskRunner(workers=3)
    monkeypatch.setenv("SIGHTQL_DASK_WORKERS", "0")
    with pytest.raises(ConfigError, match="SIGHTQL_DASK_WORKERS must be positive; set it to e.g. 4"):
        Settings.from_env()


def test_the_thread_helpers_read_the_settings_once_until_the_environment_changes(clean_env, monkeypatch, tmp_path):
    import sightql.config_sources as sources
    from sightql.config import clear_settings_cache, decode_threads, onnx_threads

    clear_settings_cache()
    reads = []
    real_load = sources.load
    monkeypatch.setattr(sources, "load", lambda *args: reads.append(args) or real_load(*args))
    monkeypatch.setenv("SIGHTQL_CONFIG", str(write_config(tmp_path / "c.toml", "ort_threads = 3\n")))
    monkeypatch.setenv("SIGHTQL_DECODE_THREADS", "2")
    assert (decode_threads(), onnx_threads(), decode_threads(), onnx_threads()) == (2, 3, 2, 3)
    assert len(reads) == 1  # the file is read once, not per call
    monkeypatch.setenv("SIGHTQL_DECODE_THREADS", "5")  # a changed environment is seen
    assert (decode_threads(), onnx_threads()) == (5, 3)
    assert len(reads) == 2
    clear_settings_cache()
    assert decode_threads() == 5 and len(reads) == 3


def test_long_cli_jobs_lower_their_cpu_priority_by_job_nice(clean_env, monkeypatch, tmp_path):
    """`sightql predict`, `train`, `load` and `tables externalize` call as_background_job() first: a child
    process that runs it ends up job_nice steps nicer than it started; 0 leaves it as it was."""
    import subprocess
    import sys

    script = ("import os; from sightql.cli.common import as_background_job; before = os.nice(0); "
              "as_background_job(); print(os.nice(0) - before)")
    start = os.nice(0)
    assert start <= 9, "the test runner itself runs at a lowered priority; nothing here could be seen"
    for value, step in (("3", 3), ("0", 0), (None, 10)):
        env = {k: v for k, v in os.environ.items() if k != "SIGHTQL_JOB_NICE"}
        if value is not None:
            env["SIGHTQL_JOB_NICE"] = value
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
        assert int(out.stdout) == min(start + step, 19) - start  # nice stops at 19
    monkeypatch.setenv("SIGHTQL_JOB_NICE", "25")
    with pytest.raises(ConfigError, match="SIGHTQL_JOB_NICE='25' must be from 0 .* to 19"):
        Settings.from_env()
