"""SPDM (DMTF DSP0274) and secured messages (DSP0277) for pciauth, without I/O.

Modules:
- ``algorithms``: the negotiated algorithm tables (hash, signature, DHE, AEAD) keyed by their
  SPDM bits, and the crypto operations on them (via ``cryptography``);
- ``keyschedule``: the SPDM 1.1-1.3 session key schedule (HKDF with BinConcat labels);
- ``secured``: the DSP0277 secured message record used on PCI DOE (data object type 2);
- the codec, requester, responder, certificates and transports live next to them.

Importing this package is cheap: import the module you need.
"""
