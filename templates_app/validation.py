"""Meta's template rules, checked before Meta sees a template. Each problem names its rule, so staff
learn what to change instead of waiting a day for a rejection.

Limits from Meta's "Message templates" and "Template components" documentation.
"""

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

NAME_RE = re.compile(r"^[a-z0-9_]+$")
NAME_MAX = 512
HEADER_TEXT_MAX = 60
BODY_MAX = 1024
FOOTER_MAX = 60
BUTTON_TEXT_MAX = 25
BUTTON_URL_MAX = 2000
BUTTON_PHONE_MAX = 20
BUTTONS_MAX = 10
BUTTON_KIND_MAX = {"QUICK_REPLY": 10, "URL": 2, "PHONE_NUMBER": 1, "COPY_CODE": 1, "OTP": 1}
HEADER_FORMATS = {"TEXT", "IMAGE", "VIDEO", "DOCUMENT", "LOCATION"}
MEDIA_HEADER_FORMATS = {"IMAGE", "VIDEO", "DOCUMENT"}
#: What staff are told about media samples (the form's help text says the same).
HEADER_HANDLE_HELP = (
    "Meta reviews media templates with a sample file: upload one with Meta's Resumable Upload API "
    "(POST /{app-id}/uploads, then POST /upload:{session-id}) and give the handle it returns, which "
    "looks like 4::aW1hZ2UvanBlZw==:ARb…"
)

VARIABLE_RE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
NAMED_VARIABLE_RE = re.compile(r"^[a-z_][a-z0-9_]*$")
ADJACENT_RE = re.compile(r"\{\{[^{}]*\}\}\s*\{\{[^{}]*\}\}")


@dataclass(frozen=True)
class Problem:
    rule: str  # machine-readable, e.g. "body_too_long"
    message: str  # names the rule and what to change
    component: str = ""  # HEADER, BODY, FOOTER, BUTTONS or "" for the template itself

    def __str__(self) -> str:
        return f"{self.component + ': ' if self.component else ''}{self.message}"


def variables_in(text: str) -> list[str]:
    return [match.group(1) for match in VARIABLE_RE.finditer(text or "")]


def _component(components: list[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    return next((c for c in components if str(c.get("type", "")).upper() == kind), None)


def _check_variables(text: str, *, where: str, parameter_format: str, problems: list[Problem]) -> list[str]:
    names = variables_in(text)
    if not names:
        return names
    if parameter_format == "NAMED":
        for name in names:
            if not NAMED_VARIABLE_RE.match(name):
                problems.append(
                    Problem(
                        "variable_name_invalid",
                        f"Named variable {{{{{name}}}}} must use lowercase letters, digits and underscores, starting with a letter.",
                        where,
                    )
                )
    else:
        if not all(name.isdigit() for name in names):
            problems.append(
                Problem(
                    "variable_format_mixed",
                    "Positional templates use {{1}}, {{2}}, …; do not mix in named variables.",
                    where,
                )
            )
        else:
            numbers = [int(n) for n in names]
            if sorted(set(numbers)) != list(range(1, len(set(numbers)) + 1)):
                problems.append(
                    Problem(
                        "variables_not_sequential",
                        f"Variables must be numbered from {{{{1}}}} without gaps; found {', '.join(f'{{{{{n}}}}}' for n in sorted(set(numbers)))}.",
                        where,
                    )
                )
    if ADJACENT_RE.search(text):
        problems.append(
            Problem(
                "variables_adjacent",
                "Two variables may not stand side by side; put words between them.",
                where,
            )
        )
    return names


def _check_samples(
    component: dict[str, Any], names: list[str], *, kind: str, parameter_format: str, problems: list[Problem]
) -> None:
    if not names:
        return
    example = component.get("example") or {}
    if parameter_format == "NAMED":
        key = "header_text_named_params" if kind == "HEADER" else "body_text_named_params"
        given = {
            item.get("param_name")
            for item in example.get(key, [])
            if isinstance(item, dict) and item.get("example")
        }
        missing = sorted(set(names) - given)
    else:
        if kind == "HEADER":
            samples = example.get("header_text") or []
        else:
            rows = example.get("body_text") or [[]]
            samples = rows[0] if rows and isinstance(rows[0], list) else []
        count = len(set(names))
        missing = [f"{{{{{n}}}}}" for n in range(len([s for s in samples if str(s).strip()]) + 1, count + 1)]
    if missing:
        problems.append(
            Problem(
                "sample_missing",
                f"Give a sample value for every variable (Meta reviews with them); missing: {', '.join(missing)}.",
                kind,
            )
        )


def validate_template(
    *, name: str, language: str, category: str, parameter_format: str, components: list[dict[str, Any]]
) -> list[Problem]:
    """Every rule the template breaks (an empty list when Meta should accept its shape)."""
    problems: list[Problem] = []
    if not NAME_RE.match(name or ""):
        problems.append(
            Problem(
                "name_format",
                "Name may contain only lowercase letters, digits and underscores (e.g. order_shipped).",
            )
        )
    if len(name or "") > NAME_MAX:
        problems.append(Problem("name_too_long", f"Name is longer than {NAME_MAX} characters."))
    if not language:
        problems.append(Problem("language_missing", "Choose a language (e.g. en_US)."))
    if category not in ("MARKETING", "UTILITY", "AUTHENTICATION"):
        problems.append(Problem("category_invalid", "Category must be MARKETING, UTILITY or AUTHENTICATION."))

    kinds = Counter(str(c.get("type", "")).upper() for c in components)
    for kind, count in kinds.items():
        if kind not in ("HEADER", "BODY", "FOOTER", "BUTTONS"):
            problems.append(
                Problem(
                    "component_unknown",
                    f"Unknown component type {kind or '(none)'}; use HEADER, BODY, FOOTER or BUTTONS.",
                )
            )
        elif count > 1:
            problems.append(Problem("component_repeated", f"A template has at most one {kind}.", kind))

    header = _component(components, "HEADER")
    if header:
        header_format = str(header.get("format", "")).upper()
        if header_format not in HEADER_FORMATS:
            problems.append(
                Problem(
                    "header_format",
                    f"Header format must be one of {', '.join(sorted(HEADER_FORMATS))}.",
                    "HEADER",
                )
            )
        elif header_format == "TEXT":
            text = header.get("text") or ""
            if not text.strip():
                problems.append(Problem("header_text_missing", "A text header needs text.", "HEADER"))
            if len(text) > HEADER_TEXT_MAX:
                problems.append(
                    Problem(
                        "header_too_long",
                        f"Header text is {len(text)} characters; the limit is {HEADER_TEXT_MAX}.",
                        "HEADER",
                    )
                )
            names = _check_variables(
                text, where="HEADER", parameter_format=parameter_format, problems=problems
            )
            if len(names) > 1:
                problems.append(
                    Problem("header_variables", "A text header may hold at most one variable.", "HEADER")
                )
            _check_samples(header, names, kind="HEADER", parameter_format=parameter_format, problems=problems)
        elif header_format in MEDIA_HEADER_FORMATS:
            _check_header_handle(header, header_format, problems)

    body = _component(components, "BODY")
    if body is None or not (body.get("text") or "").strip():
        if category != "AUTHENTICATION":  # Meta writes authentication bodies itself
            problems.append(Problem("body_missing", "Every template needs a body.", "BODY"))
    else:
        text = body["text"]
        if len(text) > BODY_MAX:
            problems.append(
                Problem("body_too_long", f"Body is {len(text)} characters; the limit is {BODY_MAX}.", "BODY")
            )
        names = _check_variables(text, where="BODY", parameter_format=parameter_format, problems=problems)
        stripped = text.strip()
        if names and (VARIABLE_RE.match(stripped) or re.search(r"\{\{[^{}]*\}\}[.!?]?$", stripped)):
            problems.append(
                Problem(
                    "variable_at_edge",
                    "The body may not start or end with a variable; add words before and after.",
                    "BODY",
                )
            )
        _check_samples(body, names, kind="BODY", parameter_format=parameter_format, problems=problems)

    footer = _component(components, "FOOTER")
    if footer:
        text = footer.get("text") or ""
        if len(text) > FOOTER_MAX:
            problems.append(
                Problem(
                    "footer_too_long",
                    f"Footer is {len(text)} characters; the limit is {FOOTER_MAX}.",
                    "FOOTER",
                )
            )
        if variables_in(text):
            problems.append(Problem("footer_variables", "The footer may not contain variables.", "FOOTER"))

    buttons_component = _component(components, "BUTTONS")
    if buttons_component:
        _check_buttons(buttons_component.get("buttons") or [], problems)
    return problems


def _check_header_handle(header: dict[str, Any], header_format: str, problems: list[Problem]) -> None:
    handles = (header.get("example") or {}).get("header_handle") or []
    handle = str(handles[0]).strip() if isinstance(handles, list) and handles else ""
    if not handle:
        problems.append(
            Problem(
                "header_handle_missing",
                f"A {header_format.lower()} header needs a sample. {HEADER_HANDLE_HELP}.",
                "HEADER",
            )
        )
    elif re.match(r"^[a-z][a-z0-9+.-]*://", handle, re.IGNORECASE):
        problems.append(
            Problem(
                "header_handle_is_link",
                "The header sample is a link, but Meta takes only the handle of an uploaded file. "
                f"{HEADER_HANDLE_HELP}.",
                "HEADER",
            )
        )


def _check_buttons(buttons: list[dict[str, Any]], problems: list[Problem]) -> None:
    if not buttons:
        problems.append(Problem("buttons_empty", "A BUTTONS component needs at least one button.", "BUTTONS"))
        return
    if len(buttons) > BUTTONS_MAX:
        problems.append(Problem("buttons_too_many", f"At most {BUTTONS_MAX} buttons in all.", "BUTTONS"))
    kinds = [str(b.get("type", "")).upper() for b in buttons]
    for kind, count in Counter(kinds).items():
        if kind not in BUTTON_KIND_MAX:
            problems.append(Problem("button_type", f"Unknown button type {kind or '(none)'}.", "BUTTONS"))
        elif count > BUTTON_KIND_MAX[kind]:
            problems.append(
                Problem(
                    "button_kind_limit",
                    f"At most {BUTTON_KIND_MAX[kind]} {kind.replace('_', ' ').lower()} button(s).",
                    "BUTTONS",
                )
            )
    # Quick replies must form one group (all before or all after the other buttons).
    runs = [
        k for i, k in enumerate(kinds) if i == 0 or (k == "QUICK_REPLY") != (kinds[i - 1] == "QUICK_REPLY")
    ]
    if sum(1 for k in runs if k == "QUICK_REPLY") > 1 or (len(runs) > 2):
        problems.append(
            Problem(
                "quick_replies_grouped",
                "Quick reply buttons must be grouped together, before or after the other buttons.",
                "BUTTONS",
            )
        )
    for position, button in enumerate(buttons, start=1):
        kind = str(button.get("type", "")).upper()
        text = button.get("text") or ""
        if kind not in ("OTP", "COPY_CODE") and not text.strip():  # Meta labels these itself
            problems.append(Problem("button_text_missing", f"Button {position} needs a label.", "BUTTONS"))
        if len(text) > BUTTON_TEXT_MAX:
            problems.append(
                Problem(
                    "button_text_too_long",
                    f"Button {position} label is {len(text)} characters; the limit is {BUTTON_TEXT_MAX}.",
                    "BUTTONS",
                )
            )
        if kind == "URL":
            url = button.get("url") or ""
            if not re.match(r"^https?://", url):
                problems.append(Problem("button_url", f"Button {position} needs an http(s) URL.", "BUTTONS"))
            if len(url) > BUTTON_URL_MAX:
                problems.append(
                    Problem(
                        "button_url_too_long",
                        f"Button {position} URL exceeds {BUTTON_URL_MAX} characters.",
                        "BUTTONS",
                    )
                )
            names = variables_in(url)
            if len(names) > 1 or (names and not re.search(r"\{\{\s*1\s*\}\}$", url)):
                problems.append(
                    Problem(
                        "button_url_variable",
                        f"Button {position}: a URL may hold one variable, {{{{1}}}}, at its very end.",
                        "BUTTONS",
                    )
                )
            elif names and not (button.get("example") or []):
                problems.append(
                    Problem(
                        "sample_missing", f"Button {position}: give a sample URL for the variable.", "BUTTONS"
                    )
                )
        if kind == "PHONE_NUMBER":
            phone = button.get("phone_number") or ""
            if not re.match(r"^\+?[1-9]\d{6,18}$", phone.replace(" ", "")) or len(phone) > BUTTON_PHONE_MAX:
                problems.append(
                    Problem(
                        "button_phone",
                        f"Button {position} needs a phone number in international format (at most {BUTTON_PHONE_MAX} characters).",
                        "BUTTONS",
                    )
                )
