"""The admin's template editor: header, body, footer and buttons as plain fields, turned into (and back
from) Meta's component list, so nobody writes JSON. Every rule of `template_problems` is reported on the
field it concerns, naming the rule."""

from typing import Any

from django import forms
from django.conf import settings

from templates_app.models import MessageTemplate, ParameterFormat
from templates_app.services import template_problems
from templates_app.validation import BUTTONS_MAX, HEADER_HANDLE_HELP, Problem, variables_in

HEADER_FORMAT_CHOICES = [
    ("", "None"),
    ("TEXT", "Text"),
    ("IMAGE", "Image"),
    ("VIDEO", "Video"),
    ("DOCUMENT", "Document"),
    ("LOCATION", "Location"),
]
BUTTON_TYPE_CHOICES = [
    ("", "—"),
    ("QUICK_REPLY", "Quick reply"),
    ("URL", "Visit website"),
    ("PHONE_NUMBER", "Call phone number"),
    ("COPY_CODE", "Copy offer code"),
    ("OTP", "One-time password"),
]
BUTTON_FIELDS = ("type", "text", "url", "phone_number", "example")
#: Meta's language codes staff use most; the field accepts any code.
COMMON_LANGUAGES = [
    "en_US",
    "en_GB",
    "en",
    "es",
    "es_MX",
    "es_ES",
    "es_AR",
    "pt_BR",
    "pt_PT",
    "fr",
    "de",
    "it",
    "nl",
    "pl",
    "ru",
    "tr",
    "ar",
    "he",
    "hi",
    "id",
    "ms",
    "th",
    "vi",
    "zh_CN",
    "zh_TW",
    "zh_HK",
    "ja",
    "ko",
    "sv",
    "da",
    "nb",
    "fi",
    "el",
    "uk",
    "ro",
    "cs",
    "hu",
]

#: Which form field shows a problem: by rule first, then by component.
_FIELD_BY_RULE = {
    "name_format": "name",
    "name_too_long": "name",
    "name_not_unique": "name",
    "language_missing": "language",
    "category_invalid": "category",
    "header_format": "header_format",
}
_FIELD_BY_COMPONENT = {
    "HEADER": "header_text",
    "BODY": "body_text",
    "FOOTER": "footer_text",
    "BUTTONS": "buttons",
}


def distinct_variables(text: str) -> list[str]:
    return list(dict.fromkeys(variables_in(text)))


# --- Components ⇄ editor values -----------------------------------------------------------------


def _component(components: list[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    return next(
        (c for c in components or [] if isinstance(c, dict) and str(c.get("type", "")).upper() == kind), None
    )


def components_to_values(components: list[dict[str, Any]]) -> dict[str, Any]:
    """The editor's field values for a stored component list."""
    header = _component(components, "HEADER") or {}
    header_example = header.get("example") or {}
    header_sample = ""
    for key in ("header_text", "header_handle"):
        if header_example.get(key):
            header_sample = str(header_example[key][0])
    named_header = header_example.get("header_text_named_params") or []
    if named_header and isinstance(named_header[0], dict):
        header_sample = str(named_header[0].get("example", ""))

    body = _component(components, "BODY") or {}
    body_example = body.get("example") or {}
    body_samples: dict[str, str] = {}
    rows = body_example.get("body_text") or []
    if rows and isinstance(rows[0], list):
        body_samples = {str(n): str(v) for n, v in enumerate(rows[0], start=1)}
    for item in body_example.get("body_text_named_params") or []:
        if isinstance(item, dict) and item.get("param_name"):
            body_samples[str(item["param_name"])] = str(item.get("example", ""))

    buttons = []
    for button in (_component(components, "BUTTONS") or {}).get("buttons") or []:
        example = button.get("example")
        if isinstance(example, list):
            example = example[0] if example else ""
        buttons.append(
            {
                "type": str(button.get("type", "")).upper(),
                "text": str(button.get("text", "")),
                "url": str(button.get("url", "")),
                "phone_number": str(button.get("phone_number", "")),
                "example": str(example or ""),
            }
        )
    return {
        "header_format": str(header.get("format", "")).upper() if header else "",
        "header_text": str(header.get("text", "")),
        "header_sample": header_sample,
        "body_text": str(body.get("text", "")),
        "body_samples": body_samples,
        "footer_text": str((_component(components, "FOOTER") or {}).get("text", "")),
        "buttons": buttons,
    }


def preview_data(components: list[dict[str, Any]]) -> dict[str, Any]:
    """What the preview bubble shows (the JavaScript reads the same shape from the form's inputs)."""
    values = components_to_values(components)
    return {
        "header": {
            "format": values["header_format"],
            "text": values["header_text"],
            "sample": values["header_sample"],
        },
        "body": {"text": values["body_text"], "samples": values["body_samples"]},
        "footer": values["footer_text"],
        "buttons": values["buttons"],
    }


def _without(component: dict[str, Any] | None, *keys: str) -> dict[str, Any]:
    return {k: v for k, v in (component or {}).items() if k not in keys}


def components_build(
    *,
    header_format: str,
    header_text: str,
    header_sample: str,
    body_text: str,
    body_samples: dict[str, str],
    footer_text: str,
    buttons: list[dict[str, str]],
    parameter_format: str,
    original: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Meta's component list from the editor's values. Keys the editor does not show (e.g. an OTP
    button's `otp_type`) and components it does not know survive from `original`."""
    original = [c for c in original or [] if isinstance(c, dict)]
    named = parameter_format == ParameterFormat.NAMED
    components: list[dict[str, Any]] = []

    if header_format:
        header = {
            **_without(_component(original, "HEADER"), "format", "text", "example"),
            "type": "HEADER",
            "format": header_format,
        }
        if header_format == "TEXT":
            header["text"] = header_text
            names = distinct_variables(header_text)
            if names and header_sample:
                header["example"] = (
                    {"header_text_named_params": [{"param_name": names[0], "example": header_sample}]}
                    if named
                    else {"header_text": [header_sample]}
                )
        elif header_format != "LOCATION" and header_sample:
            header["example"] = {"header_handle": [header_sample]}
        components.append(header)

    if body_text or _component(original, "BODY"):
        body = {**_without(_component(original, "BODY"), "text", "example"), "type": "BODY"}
        if body_text:
            body["text"] = body_text
        names = distinct_variables(body_text)
        if names and named:
            given = [{"param_name": n, "example": body_samples[n]} for n in names if body_samples.get(n)]
            if given:
                body["example"] = {"body_text_named_params": given}
        elif names:
            numbers = [int(n) for n in names if n.isdigit()]
            row = [body_samples.get(str(n), "") for n in range(1, max(numbers, default=0) + 1)]
            if any(row):
                body["example"] = {"body_text": [row]}
        components.append(body)

    if footer_text:
        components.append(
            {**_without(_component(original, "FOOTER"), "text"), "type": "FOOTER", "text": footer_text}
        )

    if buttons:
        old_buttons = (_component(original, "BUTTONS") or {}).get("buttons") or []
        built = []
        for index, row in enumerate(buttons):
            kind = row["type"]
            old = old_buttons[index] if index < len(old_buttons) else {}
            keep = _without(old, *BUTTON_FIELDS) if str(old.get("type", "")).upper() == kind else {}
            button: dict[str, Any] = {"type": kind, **keep}
            if row["text"]:
                button["text"] = row["text"]
            if kind == "URL":
                button["url"] = row["url"]
                if variables_in(row["url"]) and row["example"]:
                    button["example"] = [row["example"]]
            elif kind == "PHONE_NUMBER":
                button["phone_number"] = row["phone_number"]
            elif kind == "COPY_CODE":
                if row["example"]:
                    button["example"] = row["example"]
            elif kind == "OTP":
                button.setdefault("otp_type", "COPY_CODE")
            built.append(button)
        components.append(
            {**_without(_component(original, "BUTTONS"), "buttons"), "type": "BUTTONS", "buttons": built}
        )

    known = {"HEADER", "BODY", "FOOTER", "BUTTONS"}
    components.extend(c for c in original if str(c.get("type", "")).upper() not in known)
    return components


# --- Widgets and fields -----------------------------------------------------------------------------


class BodySamplesWidget(forms.Widget):
    """One input per body variable, `<name>__<variable>`; the editor's script adds and removes them as
    the body text changes, the form adds them on a re-render (so it also works without JavaScript)."""

    template_name = "admin/templates_app/widgets/body_samples.html"

    def __init__(self, attrs=None):
        super().__init__(attrs)
        self.variables: list[str] = []

    def get_context(self, name, value, attrs):
        context = super().get_context(name, value, attrs)
        value = value if isinstance(value, dict) else {}
        names = list(dict.fromkeys([*self.variables, *(k for k, v in value.items() if v)]))
        context["widget"]["samples"] = [(n, value.get(n, "")) for n in names]
        return context

    def value_from_datadict(self, data, files, name):
        prefix = f"{name}__"
        return {key[len(prefix) :]: data.get(key, "") for key in data if key.startswith(prefix)}

    def value_omitted_from_data(self, data, files, name):
        return False


class BodySamplesField(forms.Field):
    widget = BodySamplesWidget

    def to_python(self, value):
        if not isinstance(value, dict):
            return {}
        return {str(k).strip(): str(v).strip() for k, v in value.items()}


class ButtonsWidget(forms.Widget):
    """Up to ten rows of (type, label, URL, phone number, sample): `<name>-<row>-<column>`."""

    template_name = "admin/templates_app/widgets/buttons.html"

    def get_context(self, name, value, attrs):
        context = super().get_context(name, value, attrs)
        rows = list(value) if isinstance(value, list) else []
        rows += [dict.fromkeys(BUTTON_FIELDS, "")] * (BUTTONS_MAX - len(rows))
        context["widget"]["rows"] = rows
        context["widget"]["type_choices"] = BUTTON_TYPE_CHOICES
        return context

    def value_from_datadict(self, data, files, name):
        rows = []
        for index in range(BUTTONS_MAX):
            row = {column: str(data.get(f"{name}-{index}-{column}", "")).strip() for column in BUTTON_FIELDS}
            if any(row.values()):
                rows.append(row)  # blank rows drop out; numbering follows what is kept
        return rows

    def value_omitted_from_data(self, data, files, name):
        return False

    def id_for_label(self, id_):
        return f"{id_}-0-type" if id_ else id_


class ButtonsField(forms.Field):
    widget = ButtonsWidget

    def to_python(self, value):
        rows = value if isinstance(value, list) else []
        return [{column: str(row.get(column, "")).strip() for column in BUTTON_FIELDS} for row in rows]

    def validate(self, value):
        super().validate(value)
        known = {choice for choice, _ in BUTTON_TYPE_CHOICES if choice}
        for position, row in enumerate(value, start=1):
            if row["type"] not in known:
                raise forms.ValidationError(
                    f"Button {position}: choose what the button does (its type).", code="button_type"
                )


# --- The form ---------------------------------------------------------------------------------------


class MessageTemplateForm(forms.ModelForm):
    header_format = forms.ChoiceField(
        label="Header", choices=HEADER_FORMAT_CHOICES, required=False, initial=""
    )
    header_text = forms.CharField(
        label="Header text",
        required=False,
        help_text="At most 60 characters and one variable, e.g. “Your order {{1}}”.",
    )
    header_sample = forms.CharField(
        label="Header sample",
        required=False,
        help_text="Text headers: the value Meta's reviewers see for the variable. Image, video and "
        f"document headers: required. {HEADER_HANDLE_HELP}.",
    )
    body_text = forms.CharField(
        label="Body",
        required=False,
        widget=forms.Textarea(attrs={"rows": 6, "class": "vLargeTextField"}),
        help_text="At most 1,024 characters. Variables: {{1}}, {{2}}, … (positional) or {{first_name}} "
        "(named). *bold*, _italic_, ~strikethrough~ and ```monospace``` work as in WhatsApp.",
    )
    body_samples = BodySamplesField(
        label="Sample values",
        required=False,
        help_text="One realistic value per variable: Meta reviews the template with them.",
    )
    footer_text = forms.CharField(
        label="Footer", required=False, help_text="At most 60 characters, no variables."
    )
    buttons = ButtonsField(
        label="Buttons",
        required=False,
        help_text="Up to 10 buttons: quick replies grouped together; at most 2 website buttons and 1 call "
        "button. A website URL may end with {{1}}; then give a full sample URL.",
    )

    class Meta:
        model = MessageTemplate
        fields = ["waba_id", "name", "language", "category", "parameter_format"]
        help_texts = {
            "name": "Lowercase letters, digits and underscores, e.g. order_shipped.",
        }
        widgets = {"language": forms.TextInput(attrs={"list": "tpl-languages", "size": 10})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial.update(components_to_values(self.instance.components))
        elif "waba_id" in self.fields and not self.initial.get("waba_id"):
            self.initial["waba_id"] = settings.WHATSAPP.get("BUSINESS_ACCOUNT_ID", "")
        if "body_text" in self.fields:
            body_text = (
                self.data.get(self.add_prefix("body_text"), "")
                if self.is_bound
                else self.initial.get("body_text", "")
            )
            self.fields["body_samples"].widget.variables = distinct_variables(body_text)

    def clean(self):
        cleaned = super().clean()
        if "body_text" in self.fields:
            self.instance.components = components_build(
                header_format=cleaned.get("header_format") or "",
                header_text=cleaned.get("header_text") or "",
                header_sample=cleaned.get("header_sample") or "",
                body_text=cleaned.get("body_text") or "",
                body_samples=cleaned.get("body_samples") or {},
                footer_text=cleaned.get("footer_text") or "",
                buttons=cleaned.get("buttons") or [],
                parameter_format=cleaned.get("parameter_format") or self.instance.parameter_format,
                original=self.instance.components if self.instance.pk else None,
            )
        return cleaned

    def validate_unique(self):
        """`template_problems` reports a taken name and language (rule name_not_unique)."""

    def _post_clean(self):
        super()._post_clean()
        if "body_text" not in self.fields:
            return
        already_wrong = set(self.errors)  # e.g. "This field is required." already says it
        for problem in template_problems(self.instance):
            field = self.field_for_problem(problem)
            if field is not None and field in already_wrong:
                continue
            self.add_error(
                field, forms.ValidationError(f"{problem.message} (rule: {problem.rule})", code=problem.rule)
            )

    def field_for_problem(self, problem: Problem) -> str | None:
        field = _FIELD_BY_RULE.get(problem.rule) or _FIELD_BY_COMPONENT.get(problem.component)
        if problem.rule == "sample_missing":
            field = {"HEADER": "header_sample", "BODY": "body_samples"}.get(problem.component, field)
        if problem.rule in ("header_handle_missing", "header_handle_is_link"):
            field = "header_sample"
        return field if field in self.fields else None
