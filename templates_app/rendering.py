"""Turn a template plus the caller's parameters into the Graph API `template` object Meta expects,
and into the plain text the customer will read (previews, conversation view).

Parameters:
    body        a list (positional templates) or a mapping (named templates); a value is a string,
                or a typed dict: {"type": "currency", "fallback_value", "code", "amount_1000"} or
                {"type": "date_time", "fallback_value"}
    header      the header's variable value (text headers) or a media link / {"id": media_id}
                (image, video, document headers) or {"latitude", "longitude", "name", "address"}
    buttons     per URL button with a variable, its URL suffix; per quick reply, an optional payload
For named templates, header and body variables may all come in the one `body` mapping.
"""

from dataclasses import dataclass
from typing import Any

from templates_app.models import MessageTemplate, ParameterFormat, TemplateStatus
from templates_app.validation import VARIABLE_RE, variables_in

MEDIA_HEADERS = {"IMAGE": "image", "VIDEO": "video", "DOCUMENT": "document"}


class TemplateError(Exception):
    code = "template_error"

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class TemplateParametersInvalid(TemplateError):
    code = "template_parameters_invalid"


class TemplateNotApproved(TemplateError):
    code = "template_not_approved"


@dataclass(frozen=True)
class RenderedTemplate:
    payload: dict[str, Any]  # the value of "template" in POST /{phone-number-id}/messages
    preview: str  # what the customer reads


def _component(template: MessageTemplate, kind: str) -> dict[str, Any] | None:
    return next((c for c in template.components if str(c.get("type", "")).upper() == kind), None)


@dataclass(frozen=True)
class TemplateSlot:
    """One value a template needs per message, in the order callers map them (campaigns, rules)."""

    part: str  # header, body, button
    name: str  # the variable ("1", "first_name"), "media", or the button's position
    label: str  # for people: "body {{1}}", "header image link", "button 2 (URL suffix)"


def template_slots(template: MessageTemplate) -> list[TemplateSlot]:
    """The values `template` needs for each message: a text header's variable or a media header's
    link first, then the body's variables, then buttons needing a value (URL suffix, code to copy)."""
    slots: list[TemplateSlot] = []
    header = _component(template, "HEADER")
    if header:
        header_format = str(header.get("format", "TEXT")).upper()
        if header_format == "TEXT":
            slots += [
                TemplateSlot("header", n, f"header {{{{{n}}}}}")
                for n in variables_in(header.get("text", ""))[:1]
            ]
        elif header_format in MEDIA_HEADERS:
            slots.append(TemplateSlot("header", "media", f"header {header_format.lower()} link"))
    body = _component(template, "BODY")
    if body:
        names = list(dict.fromkeys(variables_in(body.get("text", ""))))
        slots += [TemplateSlot("body", n, f"body {{{{{n}}}}}") for n in names]
    for index, button in enumerate((_component(template, "BUTTONS") or {}).get("buttons") or [], start=1):
        kind = str(button.get("type", "")).upper()
        if kind == "URL" and variables_in(button.get("url", "")):
            slots.append(TemplateSlot("button", str(index), f"button {index} (URL suffix)"))
        elif kind == "COPY_CODE":
            slots.append(TemplateSlot("button", str(index), f"button {index} (code to copy)"))
    return slots


def _typed(value: Any, *, where: str, name: str | None) -> tuple[dict[str, Any], str]:
    """A Graph API parameter object and its display text."""
    if isinstance(value, dict):
        kind = value.get("type")
        if kind == "currency":
            try:
                amount = int(value["amount_1000"])
                parameter = {
                    "type": "currency",
                    "currency": {
                        "fallback_value": str(value["fallback_value"]),
                        "code": str(value["code"]),
                        "amount_1000": amount,
                    },
                }
            except (KeyError, TypeError, ValueError):
                raise TemplateParametersInvalid(
                    f"{where}: a currency needs fallback_value, code and an integer amount_1000."
                ) from None
            display = str(value["fallback_value"])
        elif kind == "date_time":
            if "fallback_value" not in value:
                raise TemplateParametersInvalid(f"{where}: a date_time needs a fallback_value.")
            parameter = {"type": "date_time", "date_time": {"fallback_value": str(value["fallback_value"])}}
            display = str(value["fallback_value"])
        elif kind == "text" and "text" in value:
            parameter, display = {"type": "text", "text": str(value["text"])}, str(value["text"])
        else:
            raise TemplateParametersInvalid(
                f"{where}: unknown parameter type {kind!r}; use text, currency or date_time."
            )
    elif isinstance(value, str | int | float) and not isinstance(value, bool):
        text = str(value)
        if not text.strip():
            raise TemplateParametersInvalid(f"{where}: a value may not be empty.")
        parameter, display = {"type": "text", "text": text}, text
    else:
        raise TemplateParametersInvalid(f"{where}: values must be text, numbers, or typed objects.")
    if name is not None:
        parameter["parameter_name"] = name
    return parameter, display


def _fill(text: str, values: dict[str, str]) -> str:
    return VARIABLE_RE.sub(lambda m: values.get(m.group(1), m.group(0)), text)


def _text_parameters(text: str, values: Any, *, where: str, named: bool) -> tuple[list[dict[str, Any]], str]:
    names = list(dict.fromkeys(variables_in(text)))
    if not names:
        return [], text
    parameters, shown = [], {}
    if named:
        if not isinstance(values, dict):
            raise TemplateParametersInvalid(
                f"{where}: this template uses named variables; pass a mapping of {', '.join(names)}."
            )
        missing = [n for n in names if n not in values]
        if missing:
            raise TemplateParametersInvalid(f"{where}: missing {', '.join(missing)}.")
        for name in names:
            parameter, shown[name] = _typed(values[name], where=f"{where} {name}", name=name)
            parameters.append(parameter)
    else:
        if not isinstance(values, list | tuple):
            raise TemplateParametersInvalid(
                f"{where}: this template uses positional variables; pass a list of {len(names)} values."
            )
        if len(values) != len(names):
            raise TemplateParametersInvalid(f"{where}: expected {len(names)} values, got {len(values)}.")
        for position, value in enumerate(values, start=1):
            parameter, shown[str(position)] = _typed(value, where=f"{where} {{{{{position}}}}}", name=None)
            parameters.append(parameter)
    return parameters, _fill(text, shown)


def render_template(
    template: MessageTemplate,
    *,
    body: Any = None,
    header: Any = None,
    buttons: list[Any] | None = None,
    check_status: bool = True,
) -> RenderedTemplate:
    """The Graph API template object and the preview text; raises TemplateParametersInvalid on a wrong
    count, unknown or missing name, and TemplateNotApproved unless Meta approved the template."""
    if check_status and template.status != TemplateStatus.APPROVED:
        why = {
            TemplateStatus.PAUSED: "paused by Meta for low quality",
            TemplateStatus.DISABLED: "disabled by Meta",
        }.get(template.status, f"not approved (status {template.status.lower()})")
        raise TemplateNotApproved(
            f"Template {template.name} [{template.language}] is {why}; only approved templates can be sent."
        )
    named = template.parameter_format == ParameterFormat.NAMED
    body_values = body if body is not None else ({} if named else [])
    components: list[dict[str, Any]] = []
    preview_parts: list[str] = []
    used_names: set[str] = set()

    header_component = _component(template, "HEADER")
    if header_component:
        header_format = str(header_component.get("format", "TEXT")).upper()
        if header_format == "TEXT":
            text = header_component.get("text", "")
            names = variables_in(text)
            if names:
                if named:
                    source = body_values if header is None else {names[0]: header}
                    parameters, shown = _text_parameters(text, source, where="header", named=True)
                    used_names.update(names)
                else:
                    if header is None:
                        raise TemplateParametersInvalid(
                            "header: this template's header has a variable; pass `header`."
                        )
                    parameters, shown = _text_parameters(text, [header], where="header", named=False)
                components.append({"type": "header", "parameters": parameters})
            else:
                shown = text
            preview_parts.append(f"*{shown}*")
        elif header_format in MEDIA_HEADERS:
            kind = MEDIA_HEADERS[header_format]
            if isinstance(header, str) and header.startswith(("https://", "http://")):
                media = {"link": header}
            elif isinstance(header, dict) and (header.get("id") or header.get("link")):
                media = {k: header[k] for k in ("id", "link", "filename") if header.get(k)}
            else:
                raise TemplateParametersInvalid(
                    f"header: this template needs a {kind} (a public https link or an uploaded media id)."
                )
            components.append({"type": "header", "parameters": [{"type": kind, kind: media}]})
            preview_parts.append(f"[{kind}]")
        elif header_format == "LOCATION":
            if not isinstance(header, dict) or "latitude" not in header or "longitude" not in header:
                raise TemplateParametersInvalid(
                    "header: this template needs a location with latitude and longitude."
                )
            location = {k: header[k] for k in ("latitude", "longitude", "name", "address") if k in header}
            components.append({"type": "header", "parameters": [{"type": "location", "location": location}]})
            preview_parts.append(f"[location {location.get('name', '')}]".replace(" ]", "]"))

    body_component = _component(template, "BODY")
    if body_component:
        text = body_component.get("text", "")
        if named and isinstance(body_values, dict):
            body_names = set(variables_in(text))
            unknown = sorted(set(body_values) - body_names - used_names)
            if unknown:
                raise TemplateParametersInvalid(f"body: unknown variable(s) {', '.join(unknown)}.")
        elif not named and variables_in(text) == [] and body_values:
            raise TemplateParametersInvalid("body: this template's body has no variables; pass no values.")
        parameters, shown = _text_parameters(text, body_values, where="body", named=named)
        if parameters:
            components.append({"type": "body", "parameters": parameters})
        preview_parts.append(shown)

    footer = _component(template, "FOOTER")
    if footer and footer.get("text"):
        preview_parts.append(footer["text"])

    buttons_component = _component(template, "BUTTONS")
    given = list(buttons or [])
    if buttons_component:
        labels = []
        for index, button in enumerate(buttons_component.get("buttons") or []):
            kind = str(button.get("type", "")).upper()
            labels.append(f"[{button.get('text', kind.lower())}]")
            value = given[index] if index < len(given) else None
            if kind == "URL" and variables_in(button.get("url", "")):
                if value in (None, ""):
                    raise TemplateParametersInvalid(
                        f"buttons: button {index + 1} ({button.get('text')}) needs its URL suffix."
                    )
                components.append(
                    {
                        "type": "button",
                        "sub_type": "url",
                        "index": str(index),
                        "parameters": [{"type": "text", "text": str(value)}],
                    }
                )
            elif kind == "QUICK_REPLY" and value not in (None, ""):
                components.append(
                    {
                        "type": "button",
                        "sub_type": "quick_reply",
                        "index": str(index),
                        "parameters": [{"type": "payload", "payload": str(value)}],
                    }
                )
            elif kind == "COPY_CODE":
                if value in (None, ""):
                    raise TemplateParametersInvalid(f"buttons: button {index + 1} needs the code to copy.")
                components.append(
                    {
                        "type": "button",
                        "sub_type": "copy_code",
                        "index": str(index),
                        "parameters": [{"type": "coupon_code", "coupon_code": str(value)}],
                    }
                )
        if labels:
            preview_parts.append(" ".join(labels))
    elif given:
        raise TemplateParametersInvalid("buttons: this template has no buttons.")

    payload: dict[str, Any] = {"name": template.name, "language": {"code": template.language}}
    if components:
        payload["components"] = components
    return RenderedTemplate(payload=payload, preview="\n\n".join(part for part in preview_parts if part))
