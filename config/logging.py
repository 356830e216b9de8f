"""Log filters. Phone numbers, bearer tokens and secrets are personal or sensitive data: they are
masked before any handler writes a record, whatever the logger or message format."""

import logging
import re

# Seven or more digits, optionally with a leading + and the separators people type.
_PHONE = re.compile(r"(?<![\w.])\+?\d[\d\s().-]{5,}\d(?![\w.])")
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")
_SECRET_KEYS = ("token=", "secret=", "password=")  # access_token= ends with token=
_SECRET_PARAM = re.compile(r"(?i)((?:access_token|token|secret|password)=)[^&\s]+")


def redact(text: str) -> str:
    """Return `text` with phone numbers, bearer tokens and secret query parameters masked."""
    # The token patterns are tried at every position, case-insensitively (most of redact's time on a
    # JSON body): run them only when their keyword is there. casefold() matches what (?i) matches.
    folded = text.casefold()
    if "bearer" in folded:
        text = _BEARER.sub(r"\1[redacted]", text)
    if any(key in folded for key in _SECRET_KEYS):
        text = _SECRET_PARAM.sub(r"\1[redacted]", text)
    return _PHONE.sub(_mask_phone, text)


def _mask_phone(match: re.Match) -> str:
    text = match.group()
    digits = re.sub(r"\D", "", text)
    # Ten digits without "+" (a US number, a wa_id), eight with it: fewer is a status code and a size.
    if len(digits) < (8 if text.startswith("+") else 10):
        return text
    return "[phone:…" + digits[-2:] + "]"


class RedactPIIFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
