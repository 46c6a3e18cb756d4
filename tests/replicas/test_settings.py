"""The replica settings: read from the environment, refused when they cannot work."""

from __future__ import annotations

import pytest

from authz.cli import build_parser
from authz.config import ConfigError, Settings


def test_replica_settings_come_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "AUTHZ_PROCESSES": "3",
            "AUTHZ_FOLLOW_NOTIFY": "off",
            "AUTHZ_FOLLOW_POLL_SECONDS": "0.25",
            "AUTHZ_CHANGE_LOG_RETENTION_SECONDS": "3600",
            "AUTHZ_MAX_WATCHERS": "2",
        }
    )
    assert (settings.processes, settings.follow_notify, settings.follow_poll_seconds) == (3, False, 0.25)
    assert (settings.change_log_retention_seconds, settings.max_watchers) == (3600, 2)
    assert Settings.from_env({}).follow_notify is True and Settings.from_env({}).processes == 1


@pytest.mark.parametrize(
    "variable, value",
    [
        ("AUTHZ_PROCESSES", "0"),
        ("AUTHZ_PROCESSES", "two"),
        ("AUTHZ_FOLLOW_NOTIFY", "maybe"),
        ("AUTHZ_FOLLOW_POLL_SECONDS", "0"),
    ],
)
def test_replica_settings_that_cannot_work_are_refused(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: value})


def test_serve_takes_processes_on_the_command_line() -> None:
    args = build_parser().parse_args(["serve", "--processes", "2"])
    assert args.processes == 2
