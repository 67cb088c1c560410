"""VFIO: bind a PCI device to vfio-pci and back, journal the binding, open the VFIO device.

- :mod:`pciauth.vfio.bind`: driver_override binding, waiting for the VFIO node, restore on
  every exit path (context manager, exception, SIGINT/SIGTERM).
- :mod:`pciauth.vfio.journal`: what was bound, under ``/run/pciauth``; replayed by
  ``pciauth restore`` and at the next start after a crash or ``kill -9``.
- :mod:`pciauth.vfio.safety`: refuse to take a device that is in use.
- :mod:`pciauth.vfio.device`: regions, config space and BARs of an open VFIO device.
- :mod:`pciauth.vfio.doctor`: what the host lacks for VFIO, with fixes.
"""
