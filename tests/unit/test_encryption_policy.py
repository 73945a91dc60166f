"""network.encryption's four words, as the dialler and the connection read them."""

from __future__ import annotations

import pytest

from torrent.codec.mse import CRYPTO_PLAIN, CRYPTO_RC4
from torrent.peer.encryption import EncryptionPolicy


@pytest.mark.parametrize(("mode", "plain", "encrypted", "first", "methods", "preferred", "after_mse", "after_plain"), [
    ("prefer", True, True, True, CRYPTO_RC4 | CRYPTO_PLAIN, CRYPTO_PLAIN, False, True),
    ("require", False, True, True, CRYPTO_RC4, CRYPTO_RC4, None, True),
    ("allow", True, True, False, CRYPTO_RC4 | CRYPTO_PLAIN, CRYPTO_PLAIN, False, True),
    ("disable", True, False, False, CRYPTO_RC4 | CRYPTO_PLAIN, CRYPTO_PLAIN, False, None),
])
def test_policies(mode: str, plain: bool, encrypted: bool, first: bool, methods: int, preferred: int,
                  after_mse: bool | None, after_plain: bool | None) -> None:
    policy = EncryptionPolicy(mode)
    assert (policy.accepts_plain, policy.accepts_encrypted, policy.dial_encrypted) == (plain, encrypted, first)
    assert (policy.methods, policy.preferred) == (methods, preferred)
    assert (policy.fallback(True), policy.fallback(False)) == (after_mse, after_plain)


def test_an_unknown_word_is_refused() -> None:
    with pytest.raises(ValueError, match="prefer, require, allow, disable"):
        EncryptionPolicy("always")
