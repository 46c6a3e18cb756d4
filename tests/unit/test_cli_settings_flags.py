"""`authz serve`: every setting has a flag, read as its variable is; the flag wins over the variable."""

from __future__ import annotations

import pytest

from authz.cli import _NO_FLAG, _setting_flag, _settings, build_parser
from authz.config import ConfigError, Settings


def test_every_setting_but_the_secrets_has_a_serve_flag() -> None:
    serve = build_parser()._subparsers._group_actions[0].choices["serve"]  # type: ignore[union-attr]
    options = {option for action in serve._actions for option in action.option_strings}
    missing = [name for name in Settings._ENV if name not in _NO_FLAG and _setting_flag(name) not in options]
    assert missing == []


def test_a_flag_wins_over_its_variable_and_is_checked_the_same_way(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTHZ_SHUTDOWN_GRACE_SECONDS", "9")
    args = build_parser().parse_args(["serve", "--shutdown-grace-seconds", "0.5", "--mail-retry-max-seconds", "60"])
    settings = _settings(args)
    assert settings.shutdown_grace_seconds == 0.5 and settings.mail_retry_max_seconds == 60.0
    args = build_parser().parse_args(["serve", "--max-watchers", "many"])
    with pytest.raises(ConfigError, match="AUTHZ_MAX_WATCHERS='many'"):
        _settings(args)
