"""The CLI contract where it is broken today, in files QA does not own (see the QA report).

Each test was first pinned as ``xfail(strict=True)`` and turned into a plain test when its
owner fixed it; they now guard the fixed contract.
"""

from __future__ import annotations

from .clihelp import assert_json_error, assert_one_error_line


def test_argparse_errors_are_one_line_and_json(cli) -> None:
    r = cli("dma", "emu", "--iterations", "abc", "--json")
    assert_one_error_line(r, 2, "--iterations")
    assert_json_error(r, 2)


def test_os_error_json_has_every_key(cli, tmp_path) -> None:
    r = cli("pki", "init", "/proc/pciauth-no/such/dir", "--json")  # /proc refuses mkdir: ENOENT
    assert_one_error_line(r, 3)
    assert_json_error(r, 3)


def test_failed_authentication_says_so_on_stderr(cli) -> None:
    r = cli("auth", "emu,adversary=bad-signature")
    assert_one_error_line(r, 6, "signature")


def test_garbage_reference_file_is_a_usage_error(cli, tmp_path) -> None:
    bad = tmp_path / "ref.json"
    bad.write_text("garbage")
    assert_one_error_line(cli("auth", "emu", "--expect", str(bad)), 2, "not a pciauth reference")


def test_pcap_in_a_missing_directory_is_not_found(cli, tmp_path) -> None:
    assert_one_error_line(cli("auth", "emu", "--pcap", str(tmp_path / "no" / "x.pcap")), 3, "x.pcap")
