"""PCI model: addresses, selectors, sysfs discovery, config space and capabilities."""
