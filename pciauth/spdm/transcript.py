"""SPDM transcripts: which message bytes each signature and HMAC covers (DSP0274 1.0-1.3).

Both the requester and the responder keep one :class:`Transcript` and feed it the exact bytes of
every request and response (without trailing DOE padding). Names follow DSP0274:

- ``A``  = GET_VERSION, VERSION, GET_CAPABILITIES, CAPABILITIES, NEGOTIATE_ALGORITHMS, ALGORITHMS
  ("VCA");
- ``B``  = GET_DIGESTS, DIGESTS, GET_CERTIFICATE, CERTIFICATE (every exchange since the last
  GET_DIGESTS);
- ``C``  = CHALLENGE and CHALLENGE_AUTH without its signature;
- ``M1 = M2 = A || B || C`` is what CHALLENGE_AUTH signs;
- ``L1 = L2`` = the GET_MEASUREMENTS/MEASUREMENTS exchanges since the last signed MEASUREMENTS
  (the last response without its signature), prefixed by ``A`` from SPDM 1.2 on;
- ``TH`` (sessions) = ``A || Hash(cert chain) || K [|| F]`` with ``K`` the KEY_EXCHANGE and
  KEY_EXCHANGE_RSP bytes and ``F`` the FINISH exchange.

Reset rules (DSP0274 and libspdm ``libspdm_reset_message_buffer_via_request_code``): GET_VERSION
clears everything; any request other than GET_MEASUREMENTS clears L1/L2; GET_DIGESTS clears B;
KEY_EXCHANGE, FINISH, GET_MEASUREMENTS, END_SESSION and the other session requests clear B and C
when no CHALLENGE completed since the VCA; a completed CHALLENGE clears B and C after signing.
"""

from __future__ import annotations

from pciauth.errors import SpdmError
from pciauth.spdm import constants as C

#: Requests that drop a half-built M1/M2 (CHALLENGE skipped).
_CLEARS_BC = frozenset(
    {
        C.Code.KEY_EXCHANGE,
        C.Code.GET_MEASUREMENTS,
        C.Code.FINISH,
        C.Code.PSK_EXCHANGE,
        C.Code.PSK_FINISH,
        C.Code.KEY_UPDATE,
        C.Code.HEARTBEAT,
        C.Code.GET_ENCAPSULATED_REQUEST,
        C.Code.END_SESSION,
        C.Code.DELIVER_ENCAPSULATED_RESPONSE,
    }
)


_GET_VERSION, _GET_DIGESTS, _GET_MEASUREMENTS = C.Code.GET_VERSION, C.Code.GET_DIGESTS, C.Code.GET_MEASUREMENTS

#: Bound on each transcript buffer: a peer that keeps sending requests cannot grow it forever.
MAX_TRANSCRIPT = 256 * 1024


class TranscriptFull(SpdmError):
    """A transcript buffer would exceed :data:`MAX_TRANSCRIPT` (restart with GET_VERSION)."""


def _append(buf: bytearray, msgs: tuple[bytes, ...], name: str) -> None:
    data = b"".join(msgs)
    if len(buf) + len(data) > MAX_TRANSCRIPT:
        raise TranscriptFull(f"transcript {name} would exceed {MAX_TRANSCRIPT} bytes")
    buf += data


class Transcript:
    """The running message transcripts of one SPDM connection (one side)."""

    def __init__(self) -> None:
        self.version = C.V10
        self.reset()

    def reset(self) -> None:
        """GET_VERSION: a new connection."""
        self.a = bytearray()
        self.b = bytearray()
        self.c = bytearray()
        self.m = bytearray()
        self.authenticated = False

    # --- bookkeeping per request ---
    def on_request(self, code: int) -> None:
        """Apply the reset rules before a request is processed (requester and responder alike)."""
        if code == _GET_VERSION:
            self.reset()
            return
        if code != _GET_MEASUREMENTS:
            self.m.clear()
        if code == _GET_DIGESTS:
            self.b.clear()
        if code in _CLEARS_BC and not self.authenticated:
            self.b.clear()
            self.c.clear()

    def add_a(self, *msgs: bytes) -> None:
        _append(self.a, msgs, "A")

    def add_b(self, *msgs: bytes) -> None:
        _append(self.b, msgs, "B")

    def add_c(self, *msgs: bytes) -> None:
        _append(self.c, msgs, "C")

    def add_m(self, *msgs: bytes) -> None:
        _append(self.m, msgs, "M")

    # --- the signed transcripts ---
    def m1(self) -> bytes:
        """M1/M2 for CHALLENGE_AUTH: A || B || C."""
        return bytes(self.a + self.b + self.c)

    def challenge_done(self) -> None:
        """After CHALLENGE_AUTH was signed/verified: B and C start over."""
        self.b.clear()
        self.c.clear()
        self.authenticated = True

    def l1(self, version: int) -> bytes:
        """L1/L2 for a signed MEASUREMENTS: (A from 1.2 on) || the measurement exchanges."""
        prefix = bytes(self.a) if version >= C.V12 else b""
        return prefix + bytes(self.m)

    def measurements_done(self) -> None:
        self.m.clear()

    def vca(self) -> bytes:
        return bytes(self.a)


class SessionTranscript:
    """TH for one session: A || Hash(cert chain) || K || F."""

    def __init__(self, vca: bytes, cert_chain_hash: bytes) -> None:
        self.prefix = bytes(vca) + bytes(cert_chain_hash)
        self.k = bytearray()
        self.f = bytearray()

    def add_k(self, *msgs: bytes) -> None:
        for m in msgs:
            self.k += m

    def add_f(self, *msgs: bytes) -> None:
        for m in msgs:
            self.f += m

    def th(self) -> bytes:
        return self.prefix + bytes(self.k) + bytes(self.f)
