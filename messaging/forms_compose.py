"""The admin's compose form: one page for every outbound kind (text, media, location, template, reply
buttons, list, reaction), typed as plain fields and turned into `message_compose` arguments.

The form checks only what it must to build those arguments (a phone number, a chosen template and its
variables); Meta's limits are the service's (messaging.message_kinds), whose ValidationError is mapped
back onto the field it names, so the limit is stated once.
"""

import re
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from messaging.message_kinds import (
    CAPTION_MAX,
    INTERACTIVE_BODY_MAX,
    INTERACTIVE_FOOTER_MAX,
    INTERACTIVE_HEADER_MAX,
    LIST_BUTTON_MAX,
    LIST_ROW_DESCRIPTION_MAX,
    LIST_ROW_TITLE_MAX,
    LIST_ROWS_MAX,
    LIST_SECTION_TITLE_MAX,
    MEDIA_EXTENSIONS,
    MEDIA_KINDS,
    REPLY_BUTTON_TITLE_MAX,
    REPLY_BUTTONS_MAX,
    TEXT_MAX,
)
from messaging.models import Message, Sender
from messaging.outbound import MessageRefused
from messaging.phone import phone_normalize
from templates_app.forms import components_to_values
from templates_app.models import MessageTemplate, ParameterFormat, TemplateStatus
from templates_app.validation import variables_in

KIND_CHOICES = [
    ("text", "Text"),
    ("media", "Media"),
    ("location", "Location"),
    ("template", "Template"),
    ("buttons", "Reply buttons"),
    ("list", "List"),
    ("reaction", "Reaction"),
]
MEDIA_TYPE_CHOICES = [("", "Detect from the link"), *((kind, kind.capitalize()) for kind in MEDIA_KINDS)]
BUTTON_SLOTS = range(1, REPLY_BUTTONS_MAX + 1)
ROW_SLOTS = range(1, LIST_ROWS_MAX + 1)
MEDIA_HEADER_FORMATS = ("IMAGE", "VIDEO", "DOCUMENT")

#: The service's field names (message_kinds, outbound) → this form's fields.
FIELD_FOR_KEY = {
    "text": "text",
    "preview_url": "preview_url",
    "media": "media",
    "media_type": "media_type",
    "caption": "caption",
    "filename": "filename",
    "latitude": "latitude",
    "longitude": "longitude",
    "name": "location_name",
    "address": "location_address",
    "header": "interactive_header",
    "body": "interactive_body",
    "footer": "interactive_footer",
    "button": "list_button",
    "message_id": "reaction_message_id",
    "emoji": "emoji",
    "template_name": "template",
    "message_type": "message_type",
    "phone_number": "to_number",
    "to_number": "to_number",
    "from_number": "sender",
}
_BUTTON_PART_RE = re.compile(r"^button (\d+) (title|id)\b")
_ROW_PART_RE = re.compile(r"^section (\d+) row (\d+) (title|id|description)\b")
_SECTION_TITLE_RE = re.compile(r"^section (\d+) title\b")
_REPEATS_RE = re.compile(r"""['"](.*)['"] repeats""")


def _text_input(limit: int | None = None, **attrs: Any) -> forms.TextInput:
    if limit:
        attrs["data-limit"] = limit
    return forms.TextInput(attrs={"class": "vTextField", **attrs})


def _textarea(limit: int, rows: int = 4, **attrs: Any) -> forms.Textarea:
    return forms.Textarea(attrs={"rows": rows, "cols": 60, "data-limit": limit, **attrs})


class SenderChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, sender: Sender) -> str:
        return f"{sender} — paused, messages wait" if sender.paused_at else str(sender)


class TemplateChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, template: MessageTemplate) -> str:
        return f"{template.name} [{template.language}] · {template.get_category_display()}"


def template_parameter_specs(template: MessageTemplate) -> list[dict[str, Any]]:
    """The inputs a template needs, in the order Meta reads them: header (text variable, media link or
    location), body variables, then button values (URL suffixes, offer codes). The compose page's
    script builds the same inputs from this list when another template is chosen."""
    values = components_to_values(template.components)
    named = template.parameter_format == ParameterFormat.NAMED
    specs: list[dict[str, Any]] = []
    header_format = values["header_format"]
    if header_format == "TEXT":
        for name in list(dict.fromkeys(variables_in(values["header_text"])))[:1]:
            specs.append(
                {
                    # Named templates take header and body variables in one mapping.
                    "field": f"tpl_var__{name}" if named else "tpl_header",
                    "label": f"Header {{{{{name}}}}}",
                    "part": "header",
                    "var": name,
                    "sample": values["header_sample"],
                }
            )
    elif header_format in MEDIA_HEADER_FORMATS:
        kind = header_format.lower()
        sample = values["header_sample"]
        specs.append(
            {
                "field": "tpl_header",
                "label": f"Header {kind}",
                "part": "header",
                "media": kind,
                "sample": sample if sample.startswith("https://") else f"https://example.com/file.{kind}",
                "help": f"A public https link to the {kind}, or an uploaded media id.",
            }
        )
    elif header_format == "LOCATION":
        for suffix, label, required in (
            ("latitude", "Header latitude", True),
            ("longitude", "Header longitude", True),
            ("name", "Header place name", False),
            ("address", "Header address", False),
        ):
            specs.append(
                {
                    "field": f"tpl_header_{suffix}",
                    "label": label,
                    "part": "header",
                    "location": suffix,
                    "required": required,
                    "sample": "",
                }
            )
    seen = {spec["field"] for spec in specs}
    for name in dict.fromkeys(variables_in(values["body_text"])):
        field = f"tpl_var__{name}"
        if field in seen:
            continue
        seen.add(field)
        specs.append(
            {
                "field": field,
                "label": f"{{{{{name}}}}}",
                "part": "body",
                "var": name,
                "sample": values["body_samples"].get(name, ""),
            }
        )
    for index, button in enumerate(values["buttons"]):
        if button["type"] == "URL" and variables_in(button["url"]):
            prefix = button["url"].split("{{", 1)[0]
            example = button["example"]
            specs.append(
                {
                    "field": f"tpl_button__{index}",
                    "label": f"“{button['text']}” link ending",
                    "part": "button",
                    "index": index,
                    "sample": example[len(prefix) :] if example.startswith(prefix) else "",
                    "help": f"Completes {button['url']}",
                }
            )
        elif button["type"] == "COPY_CODE":
            specs.append(
                {
                    "field": f"tpl_button__{index}",
                    "label": "Offer code to copy",
                    "part": "button",
                    "index": index,
                    "sample": button["example"],
                }
            )
    return specs


def template_client_data(template: MessageTemplate) -> dict[str, Any]:
    """What the compose page's preview needs to draw a template and ask for its variables."""
    values = components_to_values(template.components)
    return {
        "waba_id": template.waba_id,
        "name": template.name,
        "language": template.language,
        "category": template.get_category_display(),
        "named": template.parameter_format == ParameterFormat.NAMED,
        "header": {"format": values["header_format"], "text": values["header_text"]},
        "body": values["body_text"],
        "footer": values["footer_text"],
        "buttons": [{"type": b["type"], "text": b["text"], "url": b["url"]} for b in values["buttons"]],
        "params": template_parameter_specs(template),
    }


def approved_templates():
    """Templates Meta approved, of the business accounts our active senders belong to."""
    wabas = Sender.objects.filter(is_active=True).values("waba_id")
    return MessageTemplate.objects.filter(status=TemplateStatus.APPROVED, waba_id__in=wabas).order_by(
        "name", "language"
    )


class MessageComposeForm(forms.Form):
    to_number = forms.CharField(
        label="To",
        max_length=40,
        widget=_text_input(placeholder="+1 555 012 3456", autocomplete="off"),
        help_text="The recipient's WhatsApp number, in any common format, e.g. (555) 012-3456 or "
        "+44 20 7946 0018.",
    )
    sender = SenderChoiceField(label="From", queryset=Sender.objects.none(), empty_label=None)
    message_type = forms.ChoiceField(
        label="Kind", choices=KIND_CHOICES, initial="text", widget=forms.RadioSelect
    )

    # Text
    text = forms.CharField(
        label="Message",
        required=False,
        strip=False,
        widget=_textarea(TEXT_MAX, rows=6),
        help_text="WhatsApp formatting works: *bold*, _italic_, ~strikethrough~, ```monospace```.",
    )
    preview_url = forms.BooleanField(label="Show a preview of the first link", required=False)

    # Media
    media = forms.CharField(
        label="Link or media id",
        required=False,
        widget=_text_input(placeholder="https://example.com/catalog.pdf"),
        help_text="A public https link, or the id of media uploaded to Meta.",
    )
    media_type = forms.ChoiceField(label="Media type", choices=MEDIA_TYPE_CHOICES, required=False)
    caption = forms.CharField(label="Caption", required=False, strip=False, widget=_textarea(CAPTION_MAX, 3))
    filename = forms.CharField(
        label="File name",
        required=False,
        widget=_text_input(),
        help_text="Documents only; shown to the customer. Taken from the link when empty.",
    )

    # Location
    latitude = forms.FloatField(
        label="Latitude", required=False, widget=forms.NumberInput(attrs={"step": "any"})
    )
    longitude = forms.FloatField(
        label="Longitude", required=False, widget=forms.NumberInput(attrs={"step": "any"})
    )
    location_name = forms.CharField(label="Place name", required=False, widget=_text_input())
    location_address = forms.CharField(label="Address", required=False, widget=_text_input())

    # Template
    template = TemplateChoiceField(
        label="Template",
        required=False,
        queryset=MessageTemplate.objects.none(),
        empty_label="Choose an approved template",
        help_text="Only templates Meta approved, of the chosen sender's business account.",
    )

    # Reply buttons and lists share the frame
    interactive_header = forms.CharField(
        label="Header", required=False, widget=_text_input(INTERACTIVE_HEADER_MAX)
    )
    interactive_body = forms.CharField(
        label="Body", required=False, strip=False, widget=_textarea(INTERACTIVE_BODY_MAX, 4)
    )
    interactive_footer = forms.CharField(
        label="Footer", required=False, widget=_text_input(INTERACTIVE_FOOTER_MAX)
    )
    list_button = forms.CharField(
        label="Button text",
        required=False,
        widget=_text_input(LIST_BUTTON_MAX, placeholder="e.g. See options"),
        help_text="The button that opens the list.",
    )

    # Reaction
    reaction_message_id = forms.CharField(
        label="Message to react to",
        required=False,
        widget=_text_input(placeholder="wamid.HBgL…"),
        help_text="The WhatsApp id (wamid) of the customer's message.",
    )
    emoji = forms.CharField(
        label="Emoji",
        required=False,
        strip=False,
        widget=forms.TextInput(attrs={"size": 6}),
        help_text="One emoji; leave empty to remove an earlier reaction.",
    )

    reply_to = forms.CharField(
        label="In reply to",
        required=False,
        widget=_text_input(placeholder="wamid.HBgL…"),
        help_text="Optional: the wamid of a customer message this one quotes.",
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["sender"].queryset = Sender.objects.filter(is_active=True)
        self.fields["template"].queryset = approved_templates()
        for slot in BUTTON_SLOTS:
            self.fields[f"button_{slot}_title"] = forms.CharField(
                label=f"Button {slot}",
                required=False,
                widget=_text_input(REPLY_BUTTON_TITLE_MAX, placeholder="Title", size=20),
            )
            self.fields[f"button_{slot}_id"] = forms.CharField(
                label="id",
                required=False,
                widget=_text_input(placeholder=f"btn_{slot} (optional)", size=18),
            )
        for slot in ROW_SLOTS:
            self.fields[f"row_{slot}_section"] = forms.CharField(
                label=f"Row {slot}",
                required=False,
                widget=_text_input(LIST_SECTION_TITLE_MAX, placeholder="Section (optional)", size=14),
            )
            self.fields[f"row_{slot}_title"] = forms.CharField(
                label="title",
                required=False,
                widget=_text_input(LIST_ROW_TITLE_MAX, placeholder="Row title", size=18),
            )
            self.fields[f"row_{slot}_description"] = forms.CharField(
                label="description",
                required=False,
                widget=_text_input(LIST_ROW_DESCRIPTION_MAX, placeholder="Description (optional)", size=26),
            )
            self.fields[f"row_{slot}_id"] = forms.CharField(
                label="id",
                required=False,
                widget=_text_input(placeholder=f"row_{slot} (optional)", size=12),
            )
        self.selected_template = self._selected_template()
        self.template_specs = (
            template_parameter_specs(self.selected_template) if self.selected_template else []
        )
        for spec in self.template_specs:
            attrs = {"placeholder": spec["sample"], "data-template-part": spec["part"]}
            required = {
                "required": spec.get("required", True),
                "error_messages": {"required": f"Give a value for {spec['label']}."},
            }
            if "location" in spec:
                field: forms.Field = forms.FloatField(
                    label=spec["label"], widget=forms.NumberInput(attrs={"step": "any", **attrs}), **required
                )
            else:
                field = forms.CharField(
                    label=spec["label"],
                    help_text=spec.get("help", ""),
                    widget=_text_input(**attrs),
                    **required,
                )
            self.fields[spec["field"]] = field
        # Where the service's "button 2 title" and "section 1 row 3 id" land (filled in by clean).
        self._button_slots: list[int] = []
        self._row_slots: dict[tuple[int, int], int] = {}
        self._section_slots: dict[int, int] = {}
        self.service_arguments: dict[str, Any] = {}

    def _selected_template(self) -> MessageTemplate | None:
        raw = self.data.get(self.add_prefix("template")) if self.is_bound else self.initial.get("template")
        if isinstance(raw, MessageTemplate):
            raw = raw.pk
        try:
            pk = int(raw)
        except (TypeError, ValueError):
            return None
        return self.fields["template"].queryset.filter(pk=pk).first()

    # --- Layout ---------------------------------------------------------------------------------

    def fieldsets(self) -> list[tuple[str | None, dict[str, Any]]]:
        def kind(*names: str) -> list[str]:
            return ["msg-kind", *(f"msg-kind--{name}" for name in names)]

        return [
            (None, {"fields": ["to_number", "sender", "message_type"], "classes": ["msg-basics"]}),
            ("Text", {"fields": ["text", "preview_url"], "classes": kind("text")}),
            ("Media", {"fields": ["media", "media_type", "caption", "filename"], "classes": kind("media")}),
            (
                "Location",
                {
                    "fields": [("latitude", "longitude"), "location_name", "location_address"],
                    "classes": kind("location"),
                },
            ),
            ("Template", {"fields": ["template"], "classes": kind("template")}),
            (
                "Template variables",
                {
                    "fields": [spec["field"] for spec in self.template_specs],
                    "classes": [*kind("template"), "msg-template-params"],
                },
            ),
            (
                "Interactive message",
                {
                    "fields": ["interactive_header", "interactive_body", "interactive_footer"],
                    "classes": kind("buttons", "list"),
                },
            ),
            (
                "Reply buttons",
                {
                    "fields": [(f"button_{slot}_title", f"button_{slot}_id") for slot in BUTTON_SLOTS],
                    "classes": [*kind("buttons"), "msg-slots"],
                    "description": f"Up to {REPLY_BUTTONS_MAX} buttons; the id comes back in the "
                    "customer's reply.",
                },
            ),
            (
                "List",
                {
                    "fields": [
                        "list_button",
                        *(
                            (f"row_{s}_section", f"row_{s}_title", f"row_{s}_description", f"row_{s}_id")
                            for s in ROW_SLOTS
                        ),
                    ],
                    "classes": [*kind("list"), "msg-slots"],
                    "description": f"Up to {LIST_ROWS_MAX} rows. Rows with the same section title are "
                    "grouped; with more than one section every row needs its section's title.",
                },
            ),
            ("Reaction", {"fields": ["reaction_message_id", "emoji"], "classes": kind("reaction")}),
            ("Reply to a message", {"fields": ["reply_to"], "classes": ["collapse"]}),
        ]

    # --- Cleaning -------------------------------------------------------------------------------

    def clean_to_number(self) -> str:
        return phone_normalize(self.cleaned_data["to_number"])

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        kind = cleaned.get("message_type")
        sender = cleaned.get("sender")
        if kind == "template":
            template = cleaned.get("template")
            if template is None and "template" not in self.errors:
                self.add_error("template", ValidationError("Choose an approved template.", code="required"))
            if template is not None and sender is not None and template.waba_id != sender.waba_id:
                self.add_error(
                    "template",
                    ValidationError(
                        "This template belongs to another business account than the sender %(sender)s.",
                        code="template_other_account",
                        params={"sender": sender},
                    ),
                )
        elif self.template_specs:
            # The chosen template's inputs stay on the page while another kind is tried: not needed now.
            for spec in self.template_specs:
                self._errors.pop(spec["field"], None)
        if self.errors or not kind or sender is None:
            return cleaned
        self.service_arguments = {
            "to_number": cleaned["to_number"],
            "from_number": sender.display_phone_number,
            "message_type": kind,
            "data": self._data_for(kind, cleaned),
            "reply_to": cleaned.get("reply_to", "").strip(),
        }
        return cleaned

    def _data_for(self, kind: str, cleaned: dict[str, Any]) -> dict[str, Any]:
        if kind == "text":
            return {"text": cleaned["text"], "preview_url": cleaned["preview_url"]}
        if kind == "media":
            return {
                "media": cleaned["media"].strip(),
                "media_type": cleaned["media_type"],
                "caption": cleaned["caption"],
                "filename": cleaned["filename"],
            }
        if kind == "location":
            return {
                "latitude": cleaned["latitude"],
                "longitude": cleaned["longitude"],
                "name": cleaned["location_name"],
                "address": cleaned["location_address"],
            }
        if kind == "reaction":
            return {"message_id": cleaned["reaction_message_id"].strip(), "emoji": cleaned["emoji"].strip()}
        if kind == "template":
            return self._template_data(cleaned)
        frame = {
            "header": cleaned["interactive_header"],
            "body": cleaned["interactive_body"],
            "footer": cleaned["interactive_footer"],
        }
        if kind == "buttons":
            buttons = []
            for slot in BUTTON_SLOTS:
                title, button_id = cleaned[f"button_{slot}_title"], cleaned[f"button_{slot}_id"]
                if title or button_id:
                    buttons.append({"title": title, "id": button_id})
                    self._button_slots.append(slot)
            return {**frame, "buttons": buttons}
        # A list: rows grouped by section title, sections in the order they first appear.
        sections: dict[str, list[tuple[int, dict[str, str]]]] = {}
        for slot in ROW_SLOTS:
            row = {part: cleaned[f"row_{slot}_{part}"] for part in ("section", "title", "description", "id")}
            if any(row.values()):
                section = row.pop("section")
                sections.setdefault(section, []).append((slot, row))
        for s_index, rows in enumerate(sections.values(), start=1):
            self._section_slots[s_index] = rows[0][0]
            for r_index, (slot, _) in enumerate(rows, start=1):
                self._row_slots[(s_index, r_index)] = slot
        return {
            **frame,
            "button": cleaned["list_button"],
            "sections": [
                {"title": title, "rows": [row for _, row in rows]} for title, rows in sections.items()
            ],
        }

    def _template_data(self, cleaned: dict[str, Any]) -> dict[str, Any]:
        template: MessageTemplate = cleaned["template"]
        named = template.parameter_format == ParameterFormat.NAMED
        parameters: Any = {} if named else []
        header: Any = None
        location: dict[str, Any] = {}
        buttons: list[Any] = [None] * len(components_to_values(template.components)["buttons"])
        for spec in self.template_specs:
            value = cleaned.get(spec["field"])
            if "location" in spec:
                if value not in (None, ""):
                    location[spec["location"]] = value
            elif spec["part"] == "button":
                buttons[spec["index"]] = value
            elif spec["field"] == "tpl_header":
                text = value.strip()
                header = (
                    text if "media" not in spec or text.startswith(("https://", "http://")) else {"id": text}
                )
            elif named:
                parameters[spec["var"]] = value
            else:
                parameters.append(value)
        if location:
            header = location
        return {
            "template_name": template.name,
            "language": template.language,
            "parameters": parameters,
            "header": header,
            "buttons": buttons if any(v not in (None, "") for v in buttons) else None,
        }

    # --- The service's answers, shown where they belong ----------------------------------------------

    def add_service_error(self, exc: ValidationError) -> None:
        """A ValidationError from message_kinds/outbound, on the field it names (else on the form)."""
        if not hasattr(exc, "error_dict"):
            self.add_error(None, exc)
            return
        for key, errors in exc.error_dict.items():
            for error in errors:
                text = " ".join(error.messages)
                field = self._field_for(key, text)
                self.add_error(
                    field if field in self.fields else None, ValidationError(text, code=error.code)
                )

    def add_refusal(self, exc: MessageRefused) -> None:
        """The message may not go out: say why, with the machine-readable code people can look up."""
        self.add_error(None, ValidationError(f"Refused ({exc.code}): {exc.detail}", code=exc.code))

    def _field_for(self, key: str, text: str) -> str | None:
        kind = self.cleaned_data.get("message_type")
        if kind == "buttons":
            if match := _BUTTON_PART_RE.match(text):
                position = int(match[1])
                if position <= len(self._button_slots):
                    return f"button_{self._button_slots[position - 1]}_{match[2]}"
            if key == "buttons":
                return self._repeated_field(text, "button", BUTTON_SLOTS) or "button_1_title"
        if kind == "list":
            if match := _ROW_PART_RE.match(text):
                slot = self._row_slots.get((int(match[1]), int(match[2])))
                if slot:
                    return f"row_{slot}_{match[3]}"
            if match := _SECTION_TITLE_RE.match(text):
                slot = self._section_slots.get(int(match[1]))
                if slot:
                    return f"row_{slot}_section"
            if key == "sections":
                return self._repeated_field(text, "row", ROW_SLOTS) or "row_1_title"
        return FIELD_FOR_KEY.get(key)

    def _repeated_field(self, text: str, prefix: str, slots: range) -> str | None:
        match = _REPEATS_RE.search(text)
        if not match:
            return None
        holders = [s for s in slots if self.cleaned_data.get(f"{prefix}_{s}_id") == match[1]]
        return f"{prefix}_{holders[-1]}_id" if holders else None


class RejectForm(forms.Form):
    reason = forms.CharField(
        label="Reason",
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 70}),
        help_text="Tell the author what to change; they see this on the message.",
    )


# --- Drafts back into the form ------------------------------------------------------------------------


def initial_from_message(message: Message) -> dict[str, Any]:
    """The compose form's values for a stored (draft) message, so its author can edit it."""
    content = message.content or {}
    initial: dict[str, Any] = {
        "to_number": message.contact.phone_number,
        "sender": message.sender_id,
        "reply_to": message.reply_to,
    }
    kind = message.kind
    if kind == Message.Kind.TEXT:
        initial.update(
            message_type="text", text=content.get("body", ""), preview_url=content.get("preview_url")
        )
    elif kind in MEDIA_KINDS:
        initial.update(
            message_type="media",
            media_type=kind,
            media=content.get("link") or content.get("id", ""),
            caption=content.get("caption", ""),
            filename=content.get("filename", ""),
        )
    elif kind == Message.Kind.LOCATION:
        initial.update(
            message_type="location",
            latitude=content.get("latitude"),
            longitude=content.get("longitude"),
            location_name=content.get("name", ""),
            location_address=content.get("address", ""),
        )
    elif kind == Message.Kind.REACTION:
        initial.update(
            message_type="reaction",
            reaction_message_id=content.get("message_id", ""),
            emoji=content.get("emoji", ""),
        )
    elif kind == Message.Kind.INTERACTIVE:
        initial.update(
            interactive_header=(content.get("header") or {}).get("text", ""),
            interactive_body=(content.get("body") or {}).get("text", ""),
            interactive_footer=(content.get("footer") or {}).get("text", ""),
        )
        action = content.get("action") or {}
        if content.get("type") == "list":
            initial.update(message_type="list", list_button=action.get("button", ""))
            slot = 0
            for section in action.get("sections") or []:
                for row in section.get("rows") or []:
                    slot += 1
                    initial.update(
                        {
                            f"row_{slot}_section": section.get("title", ""),
                            f"row_{slot}_title": row.get("title", ""),
                            f"row_{slot}_description": row.get("description", ""),
                            f"row_{slot}_id": row.get("id", ""),
                        }
                    )
        else:
            initial["message_type"] = "buttons"
            for slot, button in enumerate(action.get("buttons") or [], start=1):
                reply = button.get("reply") or {}
                initial[f"button_{slot}_title"] = reply.get("title", "")
                initial[f"button_{slot}_id"] = reply.get("id", "")
    elif kind == Message.Kind.TEMPLATE and message.template_id:
        initial.update(message_type="template", template=message.template_id)
        initial.update(_template_initial(message.template, content))
    return initial


def _parameter_text(parameter: dict[str, Any]) -> Any:
    kind = parameter.get("type")
    value = parameter.get(kind)
    if isinstance(value, dict):
        if kind in ("image", "video", "document"):
            return value.get("link") or value.get("id", "")
        return value.get("fallback_value", value)
    return value


def _template_initial(template: MessageTemplate, content: dict[str, Any]) -> dict[str, Any]:
    initial: dict[str, Any] = {}
    body_specs = [s for s in template_parameter_specs(template) if s["part"] in ("body", "header")]
    positional_body = [s for s in body_specs if s["part"] == "body"]
    for component in content.get("components") or []:
        parameters = component.get("parameters") or []
        if component.get("type") == "header" and parameters:
            first = parameters[0]
            if first.get("type") == "location":
                for key, value in (first.get("location") or {}).items():
                    initial[f"tpl_header_{key}"] = value
            elif first.get("parameter_name"):
                initial[f"tpl_var__{first['parameter_name']}"] = _parameter_text(first)
            else:
                initial["tpl_header"] = _parameter_text(first)
        elif component.get("type") == "body":
            for position, parameter in enumerate(parameters):
                if parameter.get("parameter_name"):
                    initial[f"tpl_var__{parameter['parameter_name']}"] = _parameter_text(parameter)
                elif position < len(positional_body):
                    initial[positional_body[position]["field"]] = _parameter_text(parameter)
        elif component.get("type") == "button" and parameters:
            parameter = parameters[0]
            value = parameter.get("text") or parameter.get("coupon_code") or parameter.get("payload")
            initial[f"tpl_button__{component.get('index')}"] = value
    return initial


def compose_client_data(form: MessageComposeForm, *, business_name: str) -> dict[str, Any]:
    """Everything the compose page's script needs, as one JSON document."""
    senders = form.fields["sender"].queryset
    templates = form.fields["template"].queryset
    return {
        "businessName": business_name,
        "senders": {
            str(s.pk): {"waba_id": s.waba_id, "label": s.label, "number": s.display_phone_number}
            for s in senders
        },
        "templates": {str(t.pk): template_client_data(t) for t in templates},
        "mediaExtensions": {kind: sorted(exts) for kind, exts in MEDIA_EXTENSIONS.items()},
    }
