"""Meta-tests: every text the console shows has its zh-CN translation, and templates hold no English of their own.

The console speaks zh-CN and English (docs/console.md). A message is written
in English in the code and templates and looked up in the zh-CN catalogue
(the core's, merged with each deployed plugin's ``ConsolePages.messages``);
English is the message itself. These tests find every message the console
can show and fail when one lacks its zh-CN text, or is not English (then the
English console would show another language):

* literal ``_("…")`` calls in the core's and every bundled plugin's
  templates, and ``_("…")`` / ``console_text("…")`` / ``MenuEntry("…")`` /
  ``DashboardPanel(…, "title", …)`` in their Python console modules;
* the values templates translate as they come (``_(lead.stage)``): the
  vocabularies they come from (stages, roles, activity kinds, statuses …),
  read from the code's own constants where there is one, so a new value
  fails here until it is translated;
* every label, description and choice of the forms generated from schemas
  (the plugins' settings, the admin pages);
* the titles, kinds and badges plugins give the lead's timeline.

Templates are parsed with Jinja: the text between tags (outside ``{{ }}``
and ``{% %}``), and the ``title``, ``aria-label``, ``placeholder`` and
``alt`` attributes, must hold no words, except the few names that are the
same in every language (:data:`SAME_IN_EVERY_LANGUAGE`).
"""

from __future__ import annotations

import ast
import importlib.util
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from jinja2 import Environment, nodes
from marshmallow import ValidationError, validate

from pelago.core import models
from pelago.core.host import PluginHost
from pelago.hostapp.api import channels as channel_api
from pelago.hostapp.api import schemas as api_schemas
from pelago.hostapp.console import i18n, settings_form

ROOT = Path(__file__).parent.parent
TEMPLATES = sorted([*(ROOT / "hostapp" / "console" / "templates").rglob("*.html"),
                    *(ROOT / "plugins").glob("*/templates/**/*.html")])
CONSOLE_PY = sorted([*(ROOT / "hostapp" / "console").glob("*.py"), *(ROOT / "plugins").glob("*/console.py"),
                     *(ROOT / "plugins").glob("*/__init__.py"), *(ROOT / "plugins").glob("*/timeline.py")])
#: text a template may show as it is: names, formats and codes that read the same in Chinese and English
SAME_IN_EVERY_LANGUAGE = frozenset({
    "UTM", "URL", "Pelago", "· Pelago", "Pelago ·", "中文", "English", "HH:MM", "/api/v1/intake/",
    "Authorization: Bearer …", "pk__…", "{attr.KEY}",
})
TRANSLATED_CALLS = frozenset({"_", "console_text", "MenuEntry"})
WORDS = re.compile(r"[A-Za-z]{2,}|[\u4e00-\u9fff]")
CJK = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")


def _bundled(target: str) -> bool:
    """Whether an entry point (``pkg.mod:attr``) is a bundled plugin (``plugins/``).

    The test plugins (``tests/plugins``) translate only what their tests look
    at; the examples (``examples/``) show a third party's plugin, which has
    no console pages and so no catalogue: its settings form shows its own words.
    """
    try:
        found = importlib.util.find_spec(target.split(":")[0])
    except ImportError:
        return False
    origin = Path(found.origin).resolve() if found and found.origin else None
    return origin is not None and origin.is_relative_to(ROOT / "plugins")


@pytest.fixture(scope="module")
def host() -> PluginHost:
    """The deployed bundled plugins (the test plugins and the examples left out)."""
    found = PluginHost(None)
    for name in [n for n in found.specs if not _bundled(found.installed.get(n, ""))]:
        del found.specs[name]
    assert {"pool", "settlement", "sms_nurture", "scheduling", "conversions"} <= set(found.specs)
    return found


@pytest.fixture(scope="module")
def zh(host: PluginHost) -> dict[str, str]:
    """The zh-CN catalogue as the console has it: the core's, with every deployed plugin's merged in."""
    table = dict(i18n.ZH)
    for spec in host.specs.values():
        if spec.console is not None:
            for key, value in spec.console.messages.get("zh-CN", {}).items():
                table.setdefault(key, value)
    return table


# --- finding the messages ------------------------------------------------------------------


def template_messages(path: Path) -> Iterator[str]:
    tree = Environment().parse(path.read_text(encoding="utf-8"))
    for call in tree.find_all(nodes.Call):
        if isinstance(call.node, nodes.Name) and call.node.name == "_" and call.args:
            if isinstance(call.args[0], nodes.Const) and isinstance(call.args[0].value, str):
                yield call.args[0].value


def python_messages(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
        args = node.args
        if name in TRANSLATED_CALLS and args and isinstance(args[0], ast.Constant) and isinstance(args[0].value, str):
            yield args[0].value
        if name == "DashboardPanel" and len(args) > 1 and isinstance(args[1], ast.Constant):
            yield str(args[1].value)


def form_messages(schema: Any) -> Iterator[str]:
    """Every label, description and choice the console's generated form shows for ``schema``."""
    def walk(fields: list[settings_form.Field]) -> Iterator[str]:
        for f in fields:
            yield f.label
            if f.description:
                yield f.description
            yield from (str(c) for c in f.choices)
            yield from walk(f.children)
            for row in f.items:
                yield from walk(row)

    yield from walk(settings_form.describe(schema, settings_form.defaults(schema)))


def vocabularies(host: PluginHost) -> dict[str, tuple[str, ...]]:
    """The values templates translate as they come, by where they come from (the code's constants)."""
    from pelago.core.models import intake, outbox
    from pelago.plugins.conversions import models as conversions
    from pelago.plugins.scheduling import models as scheduling
    from pelago.plugins.settlement import models as settlement
    from pelago.plugins.sms_nurture import console as sms_console
    from pelago.plugins.sms_nurture import schemas as sms

    return {
        "stages": tuple(models.STAGES),
        "roles": tuple(models.ROLES),
        "activity kinds": tuple(models.ACTIVITY_KINDS),
        "timeline types": ("stage", "ownership", "activity"),
        "ownership reasons": ("created", "routing", "manual", "handoff", "claimed", "distributed", "released",
                              "recycled", "imported", "moved"),
        "team strategies": tuple(str(c) for c in settings_form._choices(api_schemas.TeamArgs().fields["strategy"])),
        "import states": tuple(intake.IMPORT_STATES),
        "delivery states": tuple(outbox.DELIVERY_STATES),
        "conversions statuses": tuple(conversions.STATUSES),
        "settlement situations": tuple(settlement.SITUATIONS),
        "settlement methods": tuple(settlement.METHODS),
        "scheduling attendance": tuple(scheduling.ATTENDANCE),
        "scheduling trial outcomes": tuple(scheduling.TRIAL_OUTCOMES),
        "sms statuses": tuple(sms_console.STATUSES),
        "sms triggers": tuple(sms.TRIGGERS),
        "marshmallow's field errors": marshmallow_messages(),
        "plugin titles": tuple(spec.title for spec in host.specs.values()),
        "plugin descriptions": tuple(spec.description for spec in host.specs.values() if spec.description),
    }


def marshmallow_messages() -> tuple[str, ...]:
    """marshmallow's standard field errors that read the same for every field (``|messages`` translates them)."""
    from marshmallow import Schema, fields

    classes = (fields.Field, fields.Integer, fields.Float, fields.Decimal, fields.String, fields.Boolean,
               fields.Date, fields.Email, fields.URL, fields.List, fields.Nested, fields.Dict)
    found = {m for cls in classes for m in cls.default_error_messages.values() if "{" not in m}
    found |= {m for m in Schema._default_error_messages.values() if "{" not in m}  # noqa: SLF001
    return tuple(sorted(found | {"Not a valid datetime."} | {message for _pattern, message in i18n.VALUED}))


def timeline_messages() -> Iterator[str]:
    from pelago.plugins.conversions import timeline as conversions
    from pelago.plugins.scheduling import timeline as scheduling
    from pelago.plugins.sms_nurture import timeline as sms

    yield from ("sms", "trial", "lesson", "conversion", "Trial lesson booked ({klass})")
    yield from conversions.TITLES.values()
    yield from sms.TITLES.values()
    yield from sms.EVIDENCE.values()
    yield from ("SMS reply", "SMS reply (opt-out)")
    yield from scheduling.OUTCOMES.values()
    yield from scheduling.MARKS.values()


def all_messages(host: PluginHost) -> dict[str, str]:  # noqa: C901 - one loop per kind of source
    """``{message: where it is shown}``."""
    found: dict[str, str] = {}
    for path in TEMPLATES:
        for m in template_messages(path):
            found.setdefault(m, str(path.relative_to(ROOT)))
    for path in CONSOLE_PY:
        for m in python_messages(path):
            found.setdefault(m, str(path.relative_to(ROOT)))
    for name, spec in host.specs.items():
        if spec.settings is not None:
            for m in form_messages(spec.settings()):
                found.setdefault(m, f"{name}'s settings form")
    for schema in (api_schemas.UserArgs(), api_schemas.UserPatch(), api_schemas.TeamArgs(), api_schemas.TeamPatch(),
                   api_schemas.RuleArgs(), channel_api.ChannelArgs()):
        for m in form_messages(schema):
            found.setdefault(m, f"the admin form {type(schema).__name__}")
    for where, values in vocabularies(host).items():
        for m in values:
            found.setdefault(m, where)
    for m in timeline_messages():
        found.setdefault(m, "a plugin's timeline entries")
    return found


# --- the tests -------------------------------------------------------------------------------


def test_every_message_has_its_zh_cn_translation(host: PluginHost, zh: dict[str, str]) -> None:
    found = all_messages(host)
    assert len(found) > 400  # the finders found the console's messages
    missing = {m: where for m, where in found.items() if m not in zh}
    assert not missing, f"messages without a zh-CN translation: {missing}"


def test_every_message_is_english() -> None:
    """The message is the English text: one written in Chinese would show Chinese in the English console.

    (Only the console's own messages: a plugin's title or a settings field's
    description is also the API's, where a Chinese term in brackets glosses
    the English one, "Public pool (公海)".)
    """
    found = {m: str(p.relative_to(ROOT)) for p in TEMPLATES for m in template_messages(p)}
    found |= {m: str(p.relative_to(ROOT)) for p in CONSOLE_PY for m in python_messages(p)}
    chinese = {m: where for m, where in found.items() if CJK.search(m)}
    assert not chinese, f"messages written in Chinese (write them in English, translate them in zh-CN): {chinese}"


def test_translations_keep_the_placeholders(zh: dict[str, str]) -> None:
    """``{name}`` in a message must be in its translation, and nothing else: ``format`` would fail otherwise."""
    placeholder = re.compile(r"\{(\w*)\}")
    wrong = {k: v for k, v in zh.items() if set(placeholder.findall(k)) != set(placeholder.findall(v))}
    assert not wrong, f"translations whose placeholders differ from the message's: {wrong}"


def test_each_plugin_reads_its_own_catalogue_first(app: Any) -> None:
    """Scheduling's accounts and settlement's periods are both "open", in two words: each page gets its own."""
    with app.test_request_context("/console/p/settlement/statements"):
        assert i18n.translate("zh-CN", "open", "settlement") == "未结"
        assert i18n.translate("zh-CN", "open", "scheduling") == "有效"
        assert i18n.translate("zh-CN", "Leads", "settlement") == "线索"  # the core's words stay the core's
        assert i18n.translate("en", "open", "settlement") == "open"
    assert "open" not in i18n.ZH  # merging never writes into the core's catalogue


def test_the_catalogues_are_those_of_the_two_languages() -> None:
    assert i18n.LOCALES == ("zh-CN", "en") and set(i18n.CATALOGUES) == set(i18n.LOCALES)
    assert i18n.CATALOGUES["en"] == {}  # English is the message itself


class _Text(HTMLParser):
    """The text of an HTML fragment and its attributes that people read."""

    READ = ("title", "aria-label", "placeholder", "alt")

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.skip += tag in ("script", "style")
        self.found += [v.strip() for k, v in attrs if k in self.READ and v and v.strip()]

    def handle_endtag(self, tag: str) -> None:
        self.skip -= tag in ("script", "style")

    def handle_data(self, data: str) -> None:
        if not self.skip and data.strip():
            self.found.append(data.strip())


def literal_text(source: str) -> list[str]:
    """Words a template shows as they are: the text between its Jinja tags, read as HTML."""
    tree = Environment().parse(source)
    parser = _Text()
    parser.feed("".join(n.data for n in tree.find_all(nodes.TemplateData)))
    return [t for t in parser.found if WORDS.search(_without_names(t))]


def _without_names(text: str) -> str:
    for name in sorted(SAME_IN_EVERY_LANGUAGE, key=len, reverse=True):
        text = text.replace(name, " ")
    return text


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: str(p.relative_to(ROOT)))
def test_templates_hold_no_untranslated_text(path: Path) -> None:
    found = literal_text(path.read_text(encoding="utf-8"))
    assert not found, f"{path.relative_to(ROOT)} shows text that is not translated (use _()): {found}"


# --- the checks can fail ---------------------------------------------------------------------------


def test_the_template_check_finds_literal_text() -> None:
    assert literal_text('<h1>{{ _("Leads") }}</h1><p>Next page</p>') == ["Next page"]
    assert literal_text('<button aria-label="Close">{{ _("x") }}</button>') == ["Close"]
    assert literal_text("<p>{{ count }} · {{ _('Leads') }}</p><script>var a = 'text';</script>") == []
    assert literal_text("{# a comment #}<p>{% if x %}{{ x }}{% endif %}</p>") == []


def test_the_message_finders_find_calls(tmp_path: Path) -> None:
    page = tmp_path / "x.html"
    page.write_text('{{ _("One") }} {{ _(name) }} {{ _("Two {n}", n=1) }}', encoding="utf-8")
    assert list(template_messages(page)) == ["One", "Two {n}"]
    module = tmp_path / "x.py"
    module.write_text('console_text("A")\nMenuEntry("B", "b")\nDashboardPanel("c", "C", "t", f)\nprint("D")\n',
                      encoding="utf-8")
    assert list(python_messages(module)) == ["A", "B", "C"]


def test_field_errors_are_translated(tenant: Any) -> None:
    from pelago.testing import ConsoleClient

    admin = ConsoleClient(tenant, "admin")
    page = admin.post("/console/teams", {"s.strategy": "round_robin"})
    assert page.status_code == 422
    html = page.get_data(as_text=True)
    assert "必填。" in html and "Missing data for required field." not in html


@pytest.mark.parametrize(("validator", "value", "expected"), [
    (validate.Range(min=100, max=5000), 5, "必须大于等于 100 且小于等于 5000。"),
    (validate.Range(min=1), 0, "必须大于等于 1。"),
    (validate.Range(max=9), 10, "必须小于等于 9。"),
    (validate.Range(min=0, min_inclusive=False), 0, "必须大于 0。"),
    (validate.Length(min=1, max=100), "", "长度必须在 1 到 100 之间。"),
    (validate.Length(min=2), "x", "短于最小长度 2。"),
    (validate.Length(max=1), "xy", "超过最大长度 1。"),
    (validate.OneOf(["a", "b"]), "c", "必须是以下之一：a, b。"),
])
def test_marshmallows_valued_messages_are_translated(validator: Any, value: Any, expected: str) -> None:
    with pytest.raises(ValidationError) as raised:
        validator(value)
    [message] = raised.value.messages
    assert i18n.translate_error("zh-CN", str(message)) == expected
    assert i18n.translate_error("en", str(message)) == message
