"""``platform.toml``: the realtime settings, and a clear refusal of anything it does not know."""

from __future__ import annotations

from pathlib import Path

import pytest

from host.project_config import ProjectConfig, ProjectConfigError, load_project_config
from platform_shim.services.realtime_state import HistoryConfig


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "platform.toml").write_text(text)
    return tmp_path


def test_missing_file_means_defaults(tmp_path: Path) -> None:
    assert load_project_config(tmp_path) == ProjectConfig()
    assert not ProjectConfig().history.keeps("chat:x")


def test_settings_are_read(tmp_path: Path) -> None:
    config = load_project_config(
        write(
            tmp_path,
            '[realtime]\npresence_grace = "2s"\noutbox = 16\n'
            '[realtime.history]\nchannels = ["chat:*", "log"]\nmax_messages = 10\n',
        )
    )
    assert config == ProjectConfig(HistoryConfig(("chat:*", "log"), 10), 2000, 16)
    assert config.history.keeps("chat:room") and config.history.keeps("log")
    assert not config.history.keeps("logs") and not config.history.keeps("cursor")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[realtime.histroy]\nchannels = []\n", "histroy"),
        ("[realtime.history]\nchanels = ['a']\n", "chanels"),
        ("[realtime.history]\nchannels = 'chat:*'\n", "must be a list"),
        ("[realtime.history]\nchannels = ['']\n", "non-empty glob"),
        ("[realtime.history]\nmax_messages = 0\n", "max_messages"),
        ("[realtime]\noutbox = -1\n", "outbox"),
        ("[realtime]\npresence_grace = 'soon'\n", "presence_grace"),
        ("realtime = 1\n", "[realtime] must be a table"),
        ("not toml at all [\n", "platform.toml"),
    ],
)
def test_mistakes_stop_the_host_naming_them(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(ProjectConfigError, match=r"platform\.toml") as refused:
        load_project_config(write(tmp_path, text))
    assert needle in str(refused.value)


def test_the_host_refuses_to_start_on_a_typo(tmp_path: Path) -> None:
    from tests.host.hosting import write_project
    from tests.support.hostproc import HostProcess

    project = write_project(tmp_path)
    (project / "platform.toml").write_text("[realtime.history]\nchanels = ['chat:*']\n")
    host = HostProcess(project, tmp_path / "d", tmp_path)
    assert host.start().wait(timeout=30) == 1
    log = host.log()
    assert "unknown key(s) ['chanels'] in [realtime.history]" in log
    assert "Traceback" not in log
