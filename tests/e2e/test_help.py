"""Every command answers --help quickly and clearly; no command runs without its arguments."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from pciauth.cli import COMMANDS

from .clihelp import assert_one_error_line, cli_env, run_cli


def test_top_level_help_lists_every_command_and_the_exit_codes(cli) -> None:
    r = cli("--help")
    assert r.code == 0 and r.err == "", r.describe()
    for name in COMMANDS:
        assert f"\n    {name} " in r.out, f"{name} missing from --help"
    for code in ("2 usage", "3 not found", "4 permission", "5 device", "6 verification", "7 host", "8 refused"):
        assert code in r.out.replace("\n", " "), code


@pytest.fixture(scope="module")
def helps(tmp_path_factory, e2e_cache) -> dict:
    """Every subcommand's --help, four processes at a time."""
    env = cli_env(str(tmp_path_factory.mktemp("help-run")), e2e_cache)
    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(pool.map(lambda n: (n, run_cli(env, n, "--help")), COMMANDS))


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_command_help(helps, name: str) -> None:
    r = helps[name]
    assert r.code == 0 and r.err == "", r.describe()
    assert r.out.startswith(f"usage: pciauth {name}"), r.out[:200]
    for common in ("--json", "--verbose", "--sysfs-root"):
        assert common in r.out, f"{name} --help lacks {common}"


def test_no_command_is_a_usage_error(cli) -> None:
    r = cli()
    assert r.code == 2 and "usage: pciauth" in r.out, r.describe()


def test_version(cli) -> None:
    r = cli("--version")
    assert r.code == 0 and r.out.startswith("pciauth "), r.describe()


def test_pki_without_an_action(cli) -> None:
    assert_one_error_line(cli("pki"), 2, "needs an action")


def test_common_options_also_before_the_command(cli) -> None:
    r = cli("--json", "show", "emu:2")
    assert r.code == 0 and r.json()["device"]["address"] == "emu:2", r.describe()
