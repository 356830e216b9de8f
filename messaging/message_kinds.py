"""Every outbound message kind, checked against Meta's limits before anything is stored, and turned
into the object Meta expects under the key named by the message type.

Input shapes are ours (what the admin form and the REST API collect); output is Meta's. Each broken
limit raises a ValidationError naming the field and the limit.
"""

import posixpath
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from django.core.exceptions import ValidationError

TEXT_MAX = 4096
CAPTION_MAX = 1024
INTERACTIVE_BODY_MAX = 1024
INTERACTIVE_HEADER_MAX = 60
INTERACTIVE_FOOTER_MAX = 60
REPLY_BUTTONS_MAX = 3
REPLY_BUTTON_TITLE_MAX = 20
REPLY_BUTTON_ID_MAX = 256
LIST_BUTTON_MAX = 20
LIST_ROWS_MAX = 10
LIST_SECTIONS_MAX = 10
LIST_SECTION_TITLE_MAX = 24
LIST_ROW_TITLE_MAX = 24
LIST_ROW_DESCRIPTION_MAX = 72
LIST_ROW_ID_MAX = 200

MEDIA_KINDS = ("image", "video", "audio", "document", "sticker")
CAPTIONED = {"image", "video", "document"}
# What Meta accepts, by file extension where a link shows one (Cloud API "Supported media types").
MEDIA_EXTENSIONS = {
    "image": {".jpg", ".jpeg", ".png"},
    "video": {".mp4", ".3gp", ".3gpp"},
    "audio": {".aac", ".amr", ".mp3", ".m4a", ".ogg", ".opus"},
    "document": {".pdf", ".txt", ".doc", ".docx", ".xls", ".xlsx", ".ppt", ".pptx", ".csv"},
    "sticker": {".webp"},
}


@dataclass(frozen=True)
class BuiltMessage:
    kind: str
    content: dict[str, Any]
    preview: str


def _fail(field: str, message: str, code: str = "invalid") -> ValidationError:
    return ValidationError({field: ValidationError(message, code=code)})


def _text(data: dict, field: str, *, limit: int, required: bool = False, label: str | None = None) -> str:
    value = data.get(field)
    if value is None or value == "":
        if required:
            raise _fail(field, f"{label or field} is required.", "required")
        return ""
    if not isinstance(value, str):
        raise _fail(field, f"{label or field} must be text.")
    if required and not value.strip():
        raise _fail(field, f"{label or field} is required.", "required")
    if len(value) > limit:
        raise _fail(field, f"{label or field} is {len(value)} characters; the limit is {limit}.", "too_long")
    return value


def _item_text(container: str, item: dict, field: str, **kwargs) -> str:
    """`_text` for a field of a list item (a button, a section, a row): the error is filed under the
    request's own field (`buttons`, `sections`); its message says which item and field."""
    try:
        return _text(item, field, **kwargs)
    except ValidationError as exc:
        error = exc.error_dict[field][0]
        raise _fail(container, error.message, error.code) from None


def build_text(data: dict) -> BuiltMessage:
    body = _text(data, "text", limit=TEXT_MAX, required=True, label="text")
    preview_url = data.get("preview_url")
    if preview_url is not None and not isinstance(preview_url, bool):
        raise _fail("preview_url", "preview_url must be true or false.")  # "false" is truthy
    return BuiltMessage("text", {"body": body, "preview_url": bool(preview_url)}, body)


def build_media(data: dict) -> BuiltMessage:
    media = data.get("media")
    kind = data.get("media_type") or ""
    if kind and kind not in MEDIA_KINDS:  # before any lookup: it may be a list or an unknown type
        raise _fail("media_type", f"media_type must be one of {', '.join(MEDIA_KINDS)}.")
    if isinstance(media, dict):
        media_id, link = str(media.get("id") or ""), str(media.get("link") or "")
    elif media is not None and (not isinstance(media, str | int) or isinstance(media, bool)):
        raise _fail("media", "media must be a link, a media id, or an object with id or link.")
    else:
        media_id, link = "", str(media or "")
        if link and "://" not in link:
            media_id, link = link, ""  # an uploaded media id
    if not media_id and not link:
        raise _fail("media", "Give a public https link or an uploaded media id.", "required")
    if link:
        try:
            parsed = urlparse(link)
        except ValueError:  # e.g. "https://[::1/a.jpg": an unclosed IPv6 host
            raise _fail("media", "Media links must be public https URLs.") from None
        if parsed.scheme != "https" or not parsed.netloc:
            raise _fail("media", "Media links must be public https URLs.")
        extension = posixpath.splitext(parsed.path.lower())[1]
        if not kind:
            kind = next(
                (k for k, extensions in MEDIA_EXTENSIONS.items() if extension in extensions), "document"
            )
        if extension and extension not in MEDIA_EXTENSIONS.get(kind, set()):
            allowed = ", ".join(sorted(MEDIA_EXTENSIONS.get(kind, set())))
            raise _fail(
                "media",
                f"WhatsApp does not accept {extension} files as {kind}; use {allowed}.",
                "unsupported_media",
            )
    if kind not in MEDIA_KINDS:
        raise _fail("media_type", f"media_type must be one of {', '.join(MEDIA_KINDS)}.")
    content: dict[str, Any] = {"id": media_id} if media_id else {"link": link}
    caption = _text(data, "caption", limit=CAPTION_MAX)
    if caption:
        if kind not in CAPTIONED:
            raise _fail("caption", f"WhatsApp shows no caption on {kind} messages.")
        content["caption"] = caption
    if kind == "document":
        filename = _text(data, "filename", limit=240) or (
            posixpath.basename(urlparse(link).path) if link else ""
        )
        if filename:
            content["filename"] = filename
    return BuiltMessage(kind, content, caption or f"[{kind}]")


def build_location(data: dict) -> BuiltMessage:
    coordinates = []
    for field in ("latitude", "longitude"):
        try:
            coordinates.append(float(data.get(field)))
        except (TypeError, ValueError, OverflowError):
            raise _fail(field, "latitude and longitude must be numbers.", "required") from None
    latitude, longitude = coordinates
    if not -90 <= latitude <= 90:
        raise _fail("latitude", "latitude must be between -90 and 90.")
    if not -180 <= longitude <= 180:
        raise _fail("longitude", "longitude must be between -180 and 180.")
    content: dict[str, Any] = {"latitude": latitude, "longitude": longitude}
    for field in ("name", "address"):
        value = _text(data, field, limit=1000)
        if value:
            content[field] = value
    return BuiltMessage(
        "location", content, f"[location] {content.get('name', '')} {content.get('address', '')}".strip()
    )


def _interactive_frame(data: dict) -> tuple[dict[str, Any], str]:
    body = _text(data, "body", limit=INTERACTIVE_BODY_MAX, required=True)
    frame: dict[str, Any] = {"body": {"text": body}}
    header = _text(data, "header", limit=INTERACTIVE_HEADER_MAX)
    if header:
        frame["header"] = {"type": "text", "text": header}
    footer = _text(data, "footer", limit=INTERACTIVE_FOOTER_MAX)
    if footer:
        frame["footer"] = {"text": footer}
    return frame, body


def build_buttons(data: dict) -> BuiltMessage:
    frame, body = _interactive_frame(data)
    buttons = data.get("buttons")
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= REPLY_BUTTONS_MAX:
        raise _fail("buttons", f"Reply buttons: give 1 to {REPLY_BUTTONS_MAX} buttons.")
    seen, built = set(), []
    for position, button in enumerate(buttons, start=1):
        if not isinstance(button, dict):
            raise _fail("buttons", f"Button {position} must have an id and a title.")
        title = _item_text(
            "buttons",
            button,
            "title",
            limit=REPLY_BUTTON_TITLE_MAX,
            required=True,
            label=f"button {position} title",
        )
        button_id = (
            _item_text("buttons", button, "id", limit=REPLY_BUTTON_ID_MAX, label=f"button {position} id")
            or f"btn_{position}"
        )
        if button_id in seen:
            raise _fail("buttons", f"Button ids must be unique; {button_id!r} repeats.")
        seen.add(button_id)
        built.append({"type": "reply", "reply": {"id": button_id, "title": title}})
    content = {"type": "button", **frame, "action": {"buttons": built}}
    return BuiltMessage(
        "interactive", content, body + "\n" + " ".join(f"[{b['reply']['title']}]" for b in built)
    )


def build_list(data: dict) -> BuiltMessage:
    frame, body = _interactive_frame(data)
    button = _text(data, "button", limit=LIST_BUTTON_MAX, required=True, label="list button text")
    sections = data.get("sections")
    if not isinstance(sections, list) or not 1 <= len(sections) <= LIST_SECTIONS_MAX:
        raise _fail("sections", f"Lists need 1 to {LIST_SECTIONS_MAX} sections.")
    seen, built, total = set(), [], 0
    for s_index, section in enumerate(sections, start=1):
        rows = section.get("rows") if isinstance(section, dict) else None
        if not isinstance(rows, list) or not rows:
            raise _fail("sections", f"Section {s_index} needs at least one row.")
        title = _item_text(
            "sections",
            section,
            "title",
            limit=LIST_SECTION_TITLE_MAX,
            required=len(sections) > 1,
            label=f"section {s_index} title",
        )
        built_rows = []
        for r_index, row in enumerate(rows, start=1):
            total += 1
            if total > LIST_ROWS_MAX:
                raise _fail("sections", f"Lists hold at most {LIST_ROWS_MAX} rows in all.")
            if not isinstance(row, dict):
                raise _fail("sections", f"Section {s_index} row {r_index} must have an id and a title.")
            where = f"section {s_index} row {r_index}"
            row_title = _item_text(
                "sections", row, "title", limit=LIST_ROW_TITLE_MAX, required=True, label=f"{where} title"
            )
            row_id = (
                _item_text("sections", row, "id", limit=LIST_ROW_ID_MAX, label=f"{where} id")
                or f"row_{total}"
            )
            if row_id in seen:
                raise _fail("sections", f"Row ids must be unique; {row_id!r} repeats.")
            seen.add(row_id)
            item = {"id": row_id, "title": row_title}
            description = _item_text(
                "sections", row, "description", limit=LIST_ROW_DESCRIPTION_MAX, label=f"{where} description"
            )
            if description:
                item["description"] = description
            built_rows.append(item)
        built.append({**({"title": title} if title else {}), "rows": built_rows})
    content = {"type": "list", **frame, "action": {"button": button, "sections": built}}
    return BuiltMessage("interactive", content, f"{body}\n[{button}]")


def build_reaction(data: dict) -> BuiltMessage:
    message_id = _text(data, "message_id", limit=256, required=True)
    emoji = data.get("emoji", "")
    if not isinstance(emoji, str) or len(emoji) > 10:
        raise _fail("emoji", "emoji must be one emoji, or empty to remove a reaction.")
    return BuiltMessage("reaction", {"message_id": message_id, "emoji": emoji}, emoji or "(reaction removed)")


BUILDERS = {
    "text": build_text,
    "media": build_media,
    "location": build_location,
    "buttons": build_buttons,
    "list": build_list,
    "reaction": build_reaction,
}


def build_message(message_type: str, data: dict) -> BuiltMessage:
    """Validate `data` for `message_type` (text, media, location, buttons, list, reaction) and build
    Meta's object. Templates are built by templates_app's renderer instead."""
    builder = BUILDERS.get(message_type)
    if builder is None:
        raise _fail(
            "message_type",
            f"Unknown message_type {message_type!r}; use {', '.join([*BUILDERS, 'template'])}.",
        )
    return builder(data)
