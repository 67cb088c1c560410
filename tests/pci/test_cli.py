import json
import subprocess
import sys

from test_discovery import nvme_config

from pciauth.cli import main
from pciauth.errors import ExitCode


def test_list_human_and_json(fake_sysfs, capsys):
    fake_sysfs.add_device("0000:00:03.0", vendor=0x1B36, device=0x0010, driver="nvme", iommu_group=3,
                          doe_features=["0001:01"])
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "0000:00:03.0  1b36:0010" in out and "nvme" in out and "cma-spdm" in out
    assert main(["list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is True
    dev = data["devices"][0]
    for key in ("address", "vendor", "device", "subsystem_vendor", "subsystem_device", "class", "revision",
                "driver", "iommu_group", "numa_node", "vfio_cdev", "doe_mailboxes", "doe_features"):
        assert key in dev
    assert dev["iommu_group"] == 3 and dev["doe_features"] == ["0001:01"]


def test_show_decodes(fake_sysfs, capsys):

    fake_sysfs.add_device("0000:00:03.0", config=nvme_config(), driver="nvme")
    assert main(["show", "0:3.0"]) == 0
    out = capsys.readouterr().out
    assert "Data Object Exchange" in out and "PCI Express" in out and "DOE mailboxes: 0x100 (v1)" in out
    assert main(["show", "0:3.0", "--json"]) == 0
    dev = json.loads(capsys.readouterr().out)["device"]
    assert dev["doe_mailboxes"][0]["offset"] == 0x100
    dsn = [c for c in dev["extended_capabilities"] if c["id"] == 3][0]
    assert dsn["details"]["serial"] == "abcdef0123456789"


def test_show_missing_device_is_one_line(fake_sysfs, capsys):
    assert main(["show", "00:1f.7"]) == ExitCode.NOT_FOUND
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "0000:00:1f.7" in err


def test_bad_address_is_usage_error(fake_sysfs, capsys):
    assert main(["show", "01:99.0"]) == ExitCode.USAGE
    assert "slot" in capsys.readouterr().err


def test_json_error_object(fake_sysfs, capsys):
    assert main(["show", "00:1f.7", "--json"]) == ExitCode.NOT_FOUND
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False and data["error"]["type"] == "DeviceNotFound" and data["error"]["exit_code"] == 3


def test_no_command_prints_help(capsys):
    assert main([]) == ExitCode.USAGE


def test_help_does_not_import_crypto_or_spdm():
    code = (
        "import sys\n"
        "from pciauth.cli import main\n"
        "try:\n main(['--help'])\nexcept SystemExit: pass\n"
        "main(['list'])\n"
        "bad = [m for m in sys.modules if m.startswith(('cryptography', 'pciauth.spdm'))]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_common_options_before_or_after_the_command(fake_sysfs, capsys):
    fake_sysfs.add_device("0000:00:03.0")
    for argv in (["--json", "list"], ["list", "--json"]):
        assert main(argv) == 0
        assert json.loads(capsys.readouterr().out)["ok"] is True
    assert main(["-v", "show", "00:1f.7"]) == ExitCode.NOT_FOUND
    assert "hint:" in capsys.readouterr().err
