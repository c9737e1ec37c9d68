from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.accounts.models import Account
from apps.templates import rendering
from apps.templates.models import MessageTemplate
from apps.templates.selectors import TemplateDisabled, TemplateNotFound, template_get
from apps.templates.services import template_create, template_delete, template_render, template_update


@pytest.fixture
def account(db: None) -> Account:
    return Account.objects.create(name="shop")


def _template(account: Account, **fields) -> MessageTemplate:
    values = {"code": "t", "name": "T", "channel": "sms", "category": "transactional", "content": "Hi {{name}}", **fields}
    return template_create(account=account, **values)


def test_render_substitutes_with_spaces_inside_braces(account: Account) -> None:
    template = _template(account, content="{{ name }}, order {{order_no}} ({{name}})")
    rendered = template_render(template=template, params={"name": "Li", "order_no": 7})
    assert rendered.content == "Li, order 7 (Li)"
    assert rendered.missing == []
    assert rendered.html is None


def test_render_reports_missing_by_name_in_variable_order(account: Account) -> None:
    template = _template(account, content="{{b}} {{a}} {{c}}")
    rendered = template_render(template=template, params={"a": "1", "c": None})
    assert rendered.missing == ["b", "c"]
    assert rendered.content == "{{b}} 1 {{c}}"


def test_values_are_not_rendered_again(account: Account) -> None:
    template = _template(account, content="{{a}} {{b}}")
    assert template_render(template=template, params={"a": "{{b}}", "b": "x"}).content == "{{b}} x"


def test_email_html_escapes_values_only(account: Account) -> None:
    template = _template(account, channel="email", title="For {{name}}", content='<a href="/o/{{id}}">{{name}}</a>')
    rendered = template_render(template=template, params={"name": "<b>&", "id": '1" onclick="x'})
    assert rendered.html == '<a href="/o/1&quot; onclick=&quot;x">&lt;b&gt;&amp;</a>'
    assert rendered.content == '<a href="/o/1" onclick="x"><b>&</a>'
    assert rendered.title == "For <b>&"


def test_rendering_parses_each_text_once(account: Account) -> None:
    template = _template(account, content="Unique text {{x}} for the cache test")
    rendering.compile_text.cache_clear()
    for index in range(1000):
        template_render(template=template, params={"x": index})
    info = rendering.compile_text.cache_info()
    assert info.misses == 2  # content and title, once each
    assert info.hits == 1998


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{{name", "position 1"),
        ("ab}}", "position 3"),
        ("{{a.b}}", "position 1"),
        ("x {{ 1a }}", "position 3"),
        ("{{a}} {{", "position 7"),
    ],
)
def test_compile_errors_name_the_position(text: str, message: str) -> None:
    with pytest.raises(rendering.PlaceholderError, match=message):
        rendering.compile_text(text)


def test_single_braces_are_literal_text() -> None:
    compiled = rendering.compile_text('{"a": 1} {x} {{ y }}')
    assert compiled.variables == ("y",)
    assert compiled.substitute({"y": "2"}) == '{"a": 1} {x} 2'


def test_template_get_finds_active_templates_of_the_account(account: Account) -> None:
    template = _template(account)
    assert template_get(account_id=account.id, code="t") == template


def test_template_get_refuses_unknown_foreign_deleted_and_disabled(account: Account) -> None:
    other = Account.objects.create(name="other")
    template = _template(account)
    with pytest.raises(TemplateNotFound) as unknown:
        template_get(account_id=account.id, code="nope")
    assert (unknown.value.status_code, unknown.value.code) == (404, "template_not_found")
    with pytest.raises(TemplateNotFound):
        template_get(account_id=other.id, code="t")

    template_update(template=template, status="disabled")
    with pytest.raises(TemplateDisabled) as disabled:
        template_get(account_id=account.id, code="t")
    assert (disabled.value.status_code, disabled.value.code) == (404, "template_not_found")
    assert "disabled" in disabled.value.detail

    template_delete(template=template)
    with pytest.raises(TemplateNotFound) as deleted:
        template_get(account_id=account.id, code="t")
    assert not isinstance(deleted.value, TemplateDisabled)


literals = st.text(alphabet=st.characters(blacklist_characters="{}"), max_size=20)
names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(chunks=st.lists(st.tuples(literals, names, st.sampled_from(["", " ", "  "])), max_size=8), tail=literals)
def test_substitution_matches_a_plain_replacement(chunks: list[tuple[str, str, str]], tail: str) -> None:
    text = "".join(f"{literal}{{{{{pad}{name}{pad}}}}}" for literal, name, pad in chunks) + tail
    values = {name: f"<{name.upper()}>" for _, name, _ in chunks}
    compiled = rendering.compile_text(text)
    assert list(compiled.variables) == list(dict.fromkeys(name for _, name, _ in chunks))
    expected = "".join(f"{literal}{values[name]}" for literal, name, _ in chunks) + tail
    assert compiled.substitute(values) == expected


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=st.sampled_from("{} ab.1|"), max_size=30))
def test_any_text_compiles_or_names_a_position_inside_it(text: str) -> None:
    try:
        rendering.compile_text(text)
    except rendering.PlaceholderError as exc:
        assert 1 <= exc.position <= len(text)
