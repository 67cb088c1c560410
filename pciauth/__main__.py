from pciauth.cli import entry_point

entry_point()
