"""Link codes and legacy passwords: generation, normalization, hashing, verification."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets

__all__ = [
    "CODE_ALPHABET",
    "CODE_LENGTH",
    "LEGACY_ITERATIONS",
    "MAX_LEGACY_ITERATIONS",
    "code_lookup",
    "decoy_legacy_hash",
    "grouped_link_code",
    "hash_link_code",
    "make_django_pbkdf2",
    "new_link_code",
    "normalize_link_code",
    "verify_django_pbkdf2",
    "verify_link_code",
]

# Crockford's base32: no I, L, O, U, so codes read aloud or retyped survive.
CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 16  # 16 symbols of 5 bits: 80 bits from `secrets`
_READ_AS = str.maketrans({"I": "1", "L": "1", "O": "0"})


def new_link_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def grouped_link_code(code: str) -> str:
    """A canonical code in groups of four, as it is printed in an email."""
    return "-".join(code[i : i + 4] for i in range(0, CODE_LENGTH, 4))


def normalize_link_code(text: str) -> str | None:
    """The canonical code for what a person typed (any case, dashes or spaces), or None."""
    code = "".join(ch for ch in text.upper() if ch not in "- ").translate(_READ_AS)
    if len(code) != CODE_LENGTH or any(ch not in CODE_ALPHABET for ch in code):
        return None
    return code


def code_lookup(code: str) -> str:
    """An index to find the row; it proves nothing (the salted hash does)."""
    return hashlib.sha256(b"authz-link-code-lookup\0" + code.encode()).hexdigest()[:32]


def hash_link_code(code: str, salt: str | None = None) -> tuple[str, str]:
    salt = salt if salt is not None else secrets.token_hex(16)
    digest = hashlib.scrypt(code.encode(), salt=bytes.fromhex(salt), n=2**12, r=8, p=1, dklen=32)
    return salt, digest.hex()


def verify_link_code(code: str, salt: str, expected_hash: str) -> bool:
    _, digest = hash_link_code(code, salt)
    return hmac.compare_digest(digest, expected_hash)


# Django's count for PBKDF2-SHA256; hashes of the legacy portal use it.
LEGACY_ITERATIONS = 600_000
# More rounds than this in an imported hash is an error or an attack (a login that costs a minute to check).
MAX_LEGACY_ITERATIONS = 2_000_000


def make_django_pbkdf2(password: str, salt: str, iterations: int = LEGACY_ITERATIONS) -> str:
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), iterations)
    return f"pbkdf2_sha256${iterations}${salt}${base64.b64encode(digest).decode()}"


def verify_django_pbkdf2(password: str, encoded: str) -> bool:
    """Check a password against `pbkdf2_sha256$iterations$salt$base64hash`, as Django writes it."""
    try:
        algorithm, iterations_text, salt, expected = encoded.split("$", 3)
        iterations = int(iterations_text)
    except ValueError:
        return False
    if algorithm != "pbkdf2_sha256" or not 1 <= iterations <= MAX_LEGACY_ITERATIONS:
        return False
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), iterations)
    return hmac.compare_digest(base64.b64encode(digest).decode(), expected)


@functools.cache
def decoy_legacy_hash() -> str:
    """Checked against when a login is unknown, so that an unknown login costs the same PBKDF2
    work as a known one (no answer-time oracle on which logins exist). No password matches it.
    Made at first use: at import it cost every command of the CLI a fifth of a second."""
    return make_django_pbkdf2(secrets.token_urlsafe(16), secrets.token_hex(8))
