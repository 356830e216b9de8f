"""Meta's template rules, each named in the problem it raises."""

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from templates_app.validation import validate_template


def rules(
    components, *, name="order_shipped", category="UTILITY", parameter_format="POSITIONAL", language="en_US"
):
    return {
        p.rule
        for p in validate_template(
            name=name,
            language=language,
            category=category,
            parameter_format=parameter_format,
            components=components,
        )
    }


def body(text, samples=None):
    component = {"type": "BODY", "text": text}
    if samples is not None:
        component["example"] = {"body_text": [samples]}
    return component


GOOD = [
    {"type": "HEADER", "format": "TEXT", "text": "Order {{1}}", "example": {"header_text": ["#1042"]}},
    body("Hi {{1}}, your order {{2}} ships today.", ["Ava", "#1042"]),
    {"type": "FOOTER", "text": "Reply STOP to opt out"},
    {"type": "BUTTONS", "buttons": [
        {"type": "URL", "text": "Track", "url": "https://shop.example/track/{{1}}", "example": ["https://shop.example/track/1042"]},
        {"type": "PHONE_NUMBER", "text": "Call us", "phone_number": "+15550100001"},
    ]},
]  # fmt: skip


def test_a_well_formed_template_has_no_problems():
    assert rules(GOOD) == set()


@pytest.mark.parametrize(
    ("kwargs", "rule"),
    [
        ({"name": "Order Shipped"}, "name_format"),
        ({"name": "a" * 513}, "name_too_long"),
        ({"category": "PROMO"}, "category_invalid"),
        ({"language": ""}, "language_missing"),
    ],
)
def test_template_level_rules(kwargs, rule):
    assert rule in rules(GOOD, **kwargs)


@pytest.mark.parametrize(
    ("components", "rule"),
    [
        ([{"type": "HEADER", "format": "TEXT", "text": "x" * 61}, body("Hello")], "header_too_long"),
        (
            [
                {
                    "type": "HEADER",
                    "format": "TEXT",
                    "text": "{{1}} and {{2}}",
                    "example": {"header_text": ["a", "b"]},
                },
                body("Hello"),
            ],
            "header_variables",
        ),
        ([{"type": "HEADER", "format": "GIF"}, body("Hello")], "header_format"),
        ([body("x" * 1025)], "body_too_long"),
        ([], "body_missing"),
        ([body("Hello"), {"type": "FOOTER", "text": "f" * 61}], "footer_too_long"),
        ([body("Hello"), {"type": "FOOTER", "text": "Code {{1}}"}], "footer_variables"),
        ([body("Hello {{1}} and {{3}} ok", ["a", "b"])], "variables_not_sequential"),
        ([body("Hello {{1}}{{2}} ok", ["a", "b"])], "variables_adjacent"),
        ([body("Hello {{1}} {{2}} ok", ["a", "b"])], "variables_adjacent"),
        ([body("{{1}} is ready for pickup", ["Order"])], "variable_at_edge"),
        ([body("Your code is {{1}}", ["123"])], "variable_at_edge"),
        ([body("Your code is {{1}}.", ["123"])], "variable_at_edge"),
        ([body("Hello {{1}}, see {{2}} today", ["Ava"])], "sample_missing"),
        ([body("Hello {{1}} today")], "sample_missing"),
        ([body("Hello {{name}} today", ["Ava"])], "variable_format_mixed"),
        ([body("Hello"), body("Again")], "component_repeated"),
        ([body("Hello"), {"type": "BUTTONS", "buttons": []}], "buttons_empty"),
        (
            [
                body("Hello"),
                {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": f"B{i}"} for i in range(11)]},
            ],
            "buttons_too_many",
        ),
        (
            [
                body("Hello"),
                {
                    "type": "BUTTONS",
                    "buttons": [
                        {"type": "URL", "text": f"U{i}", "url": "https://a.example"} for i in range(3)
                    ],
                },
            ],
            "button_kind_limit",
        ),
        (
            [
                body("Hello"),
                {
                    "type": "BUTTONS",
                    "buttons": [
                        {"type": "QUICK_REPLY", "text": "A"},
                        {"type": "URL", "text": "U", "url": "https://a.example"},
                        {"type": "QUICK_REPLY", "text": "B"},
                    ],
                },
            ],
            "quick_replies_grouped",
        ),
        (
            [body("Hello"), {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "x" * 26}]}],
            "button_text_too_long",
        ),
        (
            [
                body("Hello"),
                {
                    "type": "BUTTONS",
                    "buttons": [
                        {"type": "URL", "text": "U", "url": "https://a.example/{{1}}/x", "example": ["u"]}
                    ],
                },
            ],
            "button_url_variable",
        ),
        (
            [
                body("Hello"),
                {"type": "BUTTONS", "buttons": [{"type": "URL", "text": "U", "url": "ftp://a.example"}]},
            ],
            "button_url",
        ),
        (
            [
                body("Hello"),
                {
                    "type": "BUTTONS",
                    "buttons": [{"type": "PHONE_NUMBER", "text": "Call", "phone_number": "call me"}],
                },
            ],
            "button_phone",
        ),
    ],
)
def test_component_rules(components, rule):
    assert rule in rules(components)


def test_named_variables_need_named_samples():
    components = [
        {
            "type": "BODY",
            "text": "Hi {{first_name}}, order {{order_id}} shipped.",
            "example": {"body_text_named_params": [{"param_name": "first_name", "example": "Ava"}]},
        }
    ]
    problems = validate_template(
        name="t", language="en_US", category="UTILITY", parameter_format="NAMED", components=components
    )
    assert [p.rule for p in problems] == ["sample_missing"]
    assert "order_id" in problems[0].message


def test_problem_messages_name_the_rule_in_words():
    (problem,) = validate_template(
        name="t",
        language="en_US",
        category="UTILITY",
        parameter_format="POSITIONAL",
        components=[body("x" * 1030)],
    )
    assert "1030" in problem.message and "1024" in problem.message and problem.component == "BODY"


words = st.text(alphabet=st.characters(whitelist_categories=("Ll",)), min_size=1, max_size=8)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(words, st.just("VAR")), min_size=1, max_size=12))
def test_variable_placement_property(tokens):
    """Number the variables in order; the adjacency and edge rules fire exactly when they should."""
    count = 0
    parts = []
    for token in tokens:
        if token == "VAR":
            count += 1
            parts.append(f"{{{{{count}}}}}")
        else:
            parts.append(token)
    text = " ".join(parts)
    found = rules([body(text, [f"s{i}" for i in range(count)])])
    adjacent = any(a == "VAR" and b == "VAR" for a, b in itertools.pairwise(tokens))
    at_edge = count > 0 and (tokens[0] == "VAR" or tokens[-1] == "VAR")
    assert ("variables_adjacent" in found) == adjacent
    assert ("variable_at_edge" in found) == at_edge
    assert "variables_not_sequential" not in found
    assert "sample_missing" not in found


def test_copy_code_buttons_need_no_label():
    assert (
        rules(
            [
                body("Use the code below at checkout today."),
                {"type": "BUTTONS", "buttons": [{"type": "COPY_CODE", "example": "SAVE20"}]},
            ]
        )
        == set()
    )


# --- Media headers need a sample file's handle --------------------------------------------------------

HANDLE = (
    "4::aW1hZ2UvanBlZw==:ARYytyb0kLp5htbBB8vWlclG5M9gMBxiEyt4FNCvrueWBOmFmRAztEu:e:1681000441:63497:10008:ARb"
)


@pytest.mark.parametrize("header_format", ["IMAGE", "VIDEO", "DOCUMENT"])
@pytest.mark.parametrize(
    ("example", "rule"),
    [
        (None, "header_handle_missing"),
        ({"header_handle": []}, "header_handle_missing"),
        ({"header_handle": ["  "]}, "header_handle_missing"),
        ({"header_handle": ["https://cdn.example/sample.jpg"]}, "header_handle_is_link"),
    ],
)
def test_media_headers_need_the_handle_of_an_uploaded_sample(header_format, example, rule):
    header = {"type": "HEADER", "format": header_format}
    if example is not None:
        header["example"] = example
    components = [header, body("Your receipt is attached, thank you.")]

    problems = validate_template(
        name="receipt",
        language="en_US",
        category="UTILITY",
        parameter_format="POSITIONAL",
        components=components,
    )

    assert [p.rule for p in problems] == [rule]
    assert problems[0].component == "HEADER"
    assert "Resumable Upload API" in problems[0].message and "handle" in problems[0].message


@pytest.mark.parametrize("header_format", ["IMAGE", "VIDEO", "DOCUMENT"])
def test_a_media_header_with_a_handle_is_fine(header_format):
    header = {"type": "HEADER", "format": header_format, "example": {"header_handle": [HANDLE]}}
    assert rules([header, body("Your receipt is attached, thank you.")]) == set()


def test_a_location_header_needs_no_sample():
    assert rules([{"type": "HEADER", "format": "LOCATION"}, body("Your order is on its way here.")]) == set()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=6), min_size=1, max_size=6))
def test_variable_numbering_property(numbers):
    """Any numbering that is not 1..n without gaps (repeats allowed) is named variables_not_sequential."""
    text = "Hello " + " and ".join(f"{{{{{n}}}}}" for n in numbers) + " today."
    found = rules([body(text, [f"s{i}" for i in range(max(numbers))])])
    distinct = sorted(set(numbers))
    assert ("variables_not_sequential" in found) == (distinct != list(range(1, len(distinct) + 1)))
