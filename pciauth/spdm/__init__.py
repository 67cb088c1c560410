"""SPDM (DMTF DSP0274) and secured messages (DSP0277) for pciauth, without I/O.

Modules:
- ``algorithms``: the negotiated algorithm tables (hash, signature, DHE, AEAD) keyed by their
  SPDM bits, and the crypto operations on them (via ``cryptography``);
- ``keyschedule``: the SPDM 1.1-1.3 session key schedule (HKDF with BinConcat labels);
- ``secured``: the DSP0277 secured message record used on PCI DOE (data object type 2);
- ``constants``, ``messages*``, ``measurements``: the codec of every message and of DMTF
  measurement blocks;
- ``transcript``: M1/M2, L1/L2 and TH transcripts per version;
- ``requester*``: the requester (``Requester(transport, RequesterConfig).authenticate()``);
- ``responder*``, ``adversary``: the responder and its table of misbehaviours;
- ``report``: ``AuthReport`` and its JSON, the signature log;
- ``certs``, ``cert_checks``, ``pki``: certificate chains, their checks, and test PKIs;
- ``socket``, ``socket_server``: the spdm-emu TCP protocol, client and server.

Importing this package is cheap: import the module you need.
"""
