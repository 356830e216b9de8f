"""Per-person encryption of the ledger's identifying data (crypto-shredding).

Every person in the consent ledger has a data key of their own; the evidence that identifies them
(phone number, name, IP address, user agent, ...) is stored only as ciphertext under that key, and the
key is stored only wrapped by the master key (`CONSENT_ENCRYPTION_KEY`). Erasing a person destroys
their data key: the ciphertext stays in the ledger, so every hash and link still verifies, but nobody
can read it again.
"""

import base64
import functools
import hashlib
import hmac
import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings


class EvidenceUnavailable(Exception):
    """The person's key was destroyed (erasure) or the ciphertext does not belong to it."""


@functools.cache
def _master(key_setting: str, secret_key: str) -> Fernet:
    if key_setting:
        return Fernet(key_setting.encode())
    # Development and tests only (production settings require CONSENT_ENCRYPTION_KEY): derive a
    # stable key from SECRET_KEY so `make run` needs no extra setup.
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"consent-ledger-master-key").derive(
        secret_key.encode()
    )
    return Fernet(base64.urlsafe_b64encode(derived))


def master_key() -> Fernet:
    return _master(settings.CONSENT_ENCRYPTION_KEY, settings.SECRET_KEY)


def data_key_create() -> bytes:
    """A new per-person key, returned wrapped (encrypted) by the master key, ready to store."""
    return master_key().encrypt(Fernet.generate_key())


def evidence_encrypt(wrapped_key: bytes, evidence: dict[str, Any]) -> str:
    data_key = Fernet(master_key().decrypt(bytes(wrapped_key)))
    plaintext = json.dumps(evidence, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return data_key.encrypt(plaintext).decode()


def evidence_decrypt(wrapped_key: bytes | None, ciphertext: str) -> dict[str, Any]:
    if not wrapped_key:
        raise EvidenceUnavailable("This person's key was destroyed: the evidence is erased.")
    try:
        data_key = Fernet(master_key().decrypt(bytes(wrapped_key)))
        return json.loads(data_key.decrypt(ciphertext.encode()))
    except InvalidToken as exc:
        raise EvidenceUnavailable("The evidence cannot be decrypted with this person's key.") from exc


def phone_keyed_hash(e164: str) -> str:
    """HMAC-SHA256 of an E.164 number under a key derived from the master key: lets the suppression
    list match a number without storing it (a plain hash of a phone number is trivially reversed)."""
    key = _suppression_key(settings.CONSENT_ENCRYPTION_KEY or settings.SECRET_KEY)
    return hmac.new(key, e164.encode(), hashlib.sha256).hexdigest()


@functools.cache
def _suppression_key(secret: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"suppression-list").derive(
        secret.encode()
    )
