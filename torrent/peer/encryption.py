"""The protocol-encryption policy (``network.encryption``): what we dial with and what we accept.

The four words are the ones users know from Transmission and qBittorrent:

- ``prefer`` (the default, as libtorrent's and qBittorrent's): dial with the encrypted (MSE) handshake,
  fall back to plain text if the peer does not speak it; accept both. After an encrypted handshake the
  stream itself stays plain text unless the peer insists on RC4, as libtorrent's default has it: the
  handshake is what traffic shapers recognise, and RC4 over every byte costs about 1.5 CPU-s per GiB on
  each side.
- ``require``: only encrypted handshakes, both ways, and RC4 over the whole stream.
- ``allow``: dial in plain text, fall back to the encrypted handshake; accept both.
- ``disable``: plain text only; encrypted handshakes are refused.

Sans-IO: the peer connection and the dialler ask it questions.
"""

from __future__ import annotations

from dataclasses import dataclass

from torrent.codec.mse import CRYPTO_PLAIN, CRYPTO_RC4, Crypto

POLICIES = ("prefer", "require", "allow", "disable")


@dataclass(frozen=True, slots=True)
class EncryptionPolicy:
    mode: str = "prefer"

    def __post_init__(self) -> None:
        if self.mode not in POLICIES:
            raise ValueError(f"encryption policy must be one of {', '.join(POLICIES)}, got {self.mode!r}")

    @property
    def accepts_plain(self) -> bool:
        """A plain-text BitTorrent handshake, incoming or dialled."""
        return self.mode != "require"

    @property
    def accepts_encrypted(self) -> bool:
        """An MSE handshake, incoming or dialled."""
        return self.mode != "disable"

    @property
    def dial_encrypted(self) -> bool:
        """The first try of an outgoing connection is encrypted."""
        return self.mode in ("prefer", "require")

    @property
    def methods(self) -> Crypto:
        """What we offer as initiator (``crypto_provide``) and accept as responder."""
        return CRYPTO_RC4 if self.mode == "require" else CRYPTO_RC4 | CRYPTO_PLAIN

    @property
    def preferred(self) -> Crypto:
        """What we select as responder when the peer offers both."""
        return CRYPTO_RC4 if self.mode == "require" else CRYPTO_PLAIN

    def fallback(self, tried_encrypted: bool) -> bool | None:
        """The other handshake to try after ``tried_encrypted`` failed, or None if the policy forbids it."""
        other = not tried_encrypted
        if other and not self.accepts_encrypted or not other and not self.accepts_plain:
            return None
        return other


__all__ = ["EncryptionPolicy", "POLICIES"]
