from __future__ import annotations

from datetime import timedelta

import pytest

from goldenimage.config import Config, ConfigurationError


def test_defaults() -> None:
    config = Config.from_env({})
    assert config.runner_command == ("goldenimage-runner",)
    assert config.packer_communicator == "ssh"
    assert config.retry_base == timedelta(seconds=30)
    assert config.validation_networks == ()
    assert config.ssm_parameter_prefix is None and config.parameter_prefix("team-a") is None


def test_settings_from_the_environment() -> None:
    config = Config.from_env(
        {
            "GOLDENIMAGE_RUNNER_IMAGE": "registry.local/runner:1",
            "GOLDENIMAGE_RUNNER_COMMAND": "/opt/bin/goldenimage-runner --verbose",
            "GOLDENIMAGE_RUNNER_ENV": '{"HTTPS_PROXY": "http://proxy:3128"}',
            "GOLDENIMAGE_AWS_ENDPOINT_URL": "https://ec2.vpce.example",
            "GOLDENIMAGE_PACKER_COMMUNICATOR": "none",
            "GOLDENIMAGE_RETRY_BASE_SECONDS": "1.5",
            "GOLDENIMAGE_VALIDATION_NETWORKS": "10.20.0.0/16, 127.0.0.0/8",
            "GOLDENIMAGE_SSM_PARAMETER_PREFIX": "/golden/{namespace}/",
        }
    )
    assert config.runner_image == "registry.local/runner:1"
    assert config.runner_command == ("/opt/bin/goldenimage-runner", "--verbose")
    assert config.runner_env == {"HTTPS_PROXY": "http://proxy:3128"}
    assert config.packer_communicator == "none"
    assert config.retry_base == timedelta(seconds=1.5)
    assert config.validation_networks == ("10.20.0.0/16", "127.0.0.0/8")
    assert config.parameter_prefix("team-a") == "/golden/team-a/"


@pytest.mark.parametrize(
    ("env", "error"),
    [
        ({"GOLDENIMAGE_PACKER_COMMUNICATOR": "winrm"}, "must be ssh or none"),
        ({"GOLDENIMAGE_RUNNER_ENV": "HTTPS_PROXY=x"}, "must be a JSON object"),
        ({"GOLDENIMAGE_RUNNER_ENV": '{"A": 1}'}, "JSON object of strings"),
        ({"GOLDENIMAGE_RETRY_BASE_SECONDS": "soon"}, "number of seconds"),
        ({"GOLDENIMAGE_RESYNC_SECONDS": "0"}, "must be positive"),
        ({"GOLDENIMAGE_VALIDATION_NETWORKS": "the office"}, "is not a network"),
        ({"GOLDENIMAGE_SSM_PARAMETER_PREFIX": "/{namespace}"}, "begins and ends with '/'"),
        ({"GOLDENIMAGE_SSM_PARAMETER_PREFIX": "{namespace}/"}, "begins and ends with '/'"),
        ({"GOLDENIMAGE_SSM_PARAMETER_PREFIX": "/{team}/"}, "begins and ends with '/'"),
    ],
)
def test_bad_settings_are_refused_clearly(env: dict[str, str], error: str) -> None:
    with pytest.raises(ConfigurationError, match=error):
        Config.from_env(env)
