"""CSV imports: the API, the job (inline and through rq), encodings, column mapping, reruns, the CLI."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from pelago.core.errors import Conflict
from pelago.core.models import Import, ImportError_, Lead, Touch
from pelago.core.services import imports as svc
from pelago.hostapp.api import imports as api
from pelago.hostapp.cli import main
from tests.conftest import new_tenant

MIXED = (
    "姓名,手机号,邮箱,来源,地区,意向课程\n"
    "张伟,138 0013 8000,,抖音,杭州,数学\n"        # 1 good
    "李娜,12345,,抖音,杭州,数学\n"                # 2 bad phone
    "王芳,,not-an-email,百度,上海,英语\n"         # 3 bad email
    "\n"                                           # 4 blank: ignored, still numbered
    "刘洋,13900139000,ly@example.com,百度,北京,\n"  # 5 good
    "无联系方式,,,官网,,\n"                        # 6 no contact
    "张伟又来,+86 138-0013-8000,zw@example.com,,,\n"  # 7 same phone as row 1: merged
)


def upload(t, content: bytes, filename: str = "leads.csv", who: str = "admin", **form: Any) -> Any:
    if isinstance(form.get("mapping"), dict):
        form["mapping"] = json.dumps(form["mapping"], ensure_ascii=False)
    return t.post("/api/v1/imports", who, data={"file": (io.BytesIO(content), filename), **form},
                  content_type="multipart/form-data")


def counts(t) -> tuple[int, int]:
    with t.runtime.sessions() as s:
        leads = s.scalar(select(func.count()).select_from(Lead).where(Lead.tenant_id == t.id))
        touches = s.scalar(select(func.count()).select_from(Touch).where(Touch.tenant_id == t.id))
    return leads, touches


def names(t) -> dict[str, dict[str, Any]]:
    items = t.get("/api/v1/leads?limit=200").get_json()["items"]
    return {lead["name"]: lead for lead in items}


def test_bad_rows_are_reported_and_good_rows_land(tenant):
    r = upload(tenant, MIXED.encode())
    assert r.status_code == 202, r.get_json()
    assert r.headers["Location"] == f"/api/v1/imports/{r.get_json()['id']}"
    imp = tenant.get(f"/api/v1/imports/{r.get_json()['id']}").get_json()
    assert imp["status"] == "done" and imp["encoding"] == "utf-8" and imp["error"] is None
    assert (imp["total_rows"], imp["processed_rows"], imp["progress"]) == (6, 6, 1.0)
    assert (imp["created_leads"], imp["merged_rows"], imp["skipped_rows"], imp["failed_rows"]) == (2, 1, 0, 3)
    assert imp["mapping"] == {"name": "姓名", "phone": "手机号", "email": "邮箱", "source": "来源", "region": "地区",
                              "product": "意向课程", "attributes": {}}
    errors = [(e["row"], e["field"]) for e in imp["errors"]]
    assert errors == [(2, "phone"), (3, "email"), (6, "phone")] and imp["error_count"] == 3
    assert "valid phone" in imp["errors"][0]["message"]
    leads = names(tenant)
    assert set(leads) == {"张伟", "刘洋"}
    zw = leads["张伟"]
    assert (zw["phone"], zw["source"], zw["region"], zw["product"], zw["email"]) == \
        ("+8613800138000", "抖音", "杭州", "数学", "zw@example.com")  # the email filled in by row 7
    assert counts(tenant) == (2, 3)
    with tenant.runtime.sessions() as s:
        touch = s.scalars(select(Touch).where(Touch.tenant_id == tenant.id, Touch.lead_id == leads["刘洋"]["id"])).one()
    assert touch.channel == "import" and touch.idempotency_key == f"import:{imp['sha256']}:5"
    assert touch.raw == {"import_id": imp["id"], "row": 5, "values": {
        "姓名": "刘洋", "手机号": "13900139000", "邮箱": "ly@example.com", "来源": "百度", "地区": "北京", "意向课程": ""}}


def test_the_same_file_again_adds_nothing(tenant):
    first = upload(tenant, MIXED.encode()).get_json()
    before = counts(tenant)
    second = upload(tenant, MIXED.encode(), filename="again.csv").get_json()
    assert second["status"] == "done" and second["id"] != first["id"]
    assert (second["created_leads"], second["merged_rows"], second["skipped_rows"], second["failed_rows"]) == \
        (0, 0, 3, 3)
    assert counts(tenant) == before


def test_gb18030_excel_export(tenant):
    content = ("客户姓名,联系电话,所在城市\r\n陈静,13900139001,广州\r\n黄磊,13900139002,深圳\r\n").encode("gb18030")
    with pytest.raises(UnicodeDecodeError):
        content.decode("utf-8")
    r = upload(tenant, content)
    assert r.status_code == 202, r.get_json()
    imp = r.get_json()
    assert (imp["encoding"], imp["status"], imp["created_leads"]) == ("gb18030", "done", 2)
    leads = names(tenant)
    assert leads["陈静"]["region"] == "广州" and leads["黄磊"]["phone"] == "+8613900139002"


def test_utf8_with_bom(tenant):
    content = "\ufeff姓名,手机,电子邮箱\n赵敏,13900139003,zm@example.com\n".encode()
    imp = upload(tenant, content).get_json()
    assert (imp["encoding"], imp["created_leads"], imp["mapping"]["name"]) == ("utf-8-sig", 1, "姓名")
    assert names(tenant)["赵敏"]["email"] == "zm@example.com"


def test_english_headers_semicolons_and_quoted_newlines(tenant):
    content = b'Full Name;Mobile;E-mail;Lead Source\n"Smith, Anna";+44 20 7946 0958;anna@example.com;fair\n' \
              b'"Multi\nLine";13900139004;;\n'
    imp = upload(tenant, content).get_json()
    assert imp["options"]["delimiter"] == ";" and imp["created_leads"] == 2, imp
    leads = names(tenant)
    assert leads["Smith, Anna"]["phone"] == "+442079460958" and leads["Smith, Anna"]["source"] == "fair"
    assert "Multi\nLine" in leads


def test_explicit_mapping_attributes_and_options(tenant):
    content = "客户,号码,备用号码,年级,campaign\n孙丽,13900139005,13900139099,三年级,暑期\n".encode()
    mapping = {"name": "客户", "phone": "号码", "attributes": {"grade": "年级"}}
    imp = upload(tenant, content, mapping=mapping, source="地推", channel="fair-2026").get_json()
    assert imp["status"] == "done" and imp["created_leads"] == 1, imp
    assert imp["mapping"]["utm_campaign"] == "campaign"  # recognised beside the explicit ones
    lead = names(tenant)["孙丽"]
    assert (lead["phone"], lead["source"], lead["attributes"]) == ("+8613900139005", "地推", {"grade": "三年级"})
    with tenant.runtime.sessions() as s:
        touch = s.scalars(select(Touch).where(Touch.lead_id == lead["id"])).one()
    assert (touch.channel, touch.utm_campaign) == ("fair-2026", "暑期")
    # null turns recognition off for a field
    content = "姓名,手机号,邮箱\n钱多,13900139006,qd@example.com\n".encode()
    imp = upload(tenant, content, mapping={"email": None}).get_json()
    assert "email" not in imp["mapping"] and names(tenant)["钱多"]["email"] is None


@pytest.mark.parametrize(("content", "form", "location", "field"), [
    ("姓名,地区\n张三,杭州\n".encode(), {}, "form", "mapping"),  # no phone or email column
    ("姓名,手机\n张三,13900139007\n".encode(), {"mapping": {"phone": "电话"}}, "form", "mapping"),
    ("姓名,手机\n".encode(), {"mapping": "{not json"}, "form", "mapping"),
    ("姓名,手机\n".encode(), {"mapping": "[1]"}, "form", "mapping"),
    ("姓名,手机\n".encode(), {"mapping": {"mobile": "手机"}}, "form", "mapping"),
    (b"", {}, "form", "file"),
    (b"\n\nname,phone\n", {}, "form", "file"),  # the header must come first
    (b"\xff\xfe\x00n\x00a\x00m\x00e", {}, "form", "file"),  # UTF-16
    (b"name,phone\n\x80\xff,1\n", {}, "form", "file"),  # neither UTF-8 nor GB18030
    ("姓名,手机\n".encode(), {"delimiter": ":"}, "form", "delimiter"),
    ("姓名,手机\n".encode(), {"source": "x" * 101}, "form", "source"),
])
def test_files_that_cannot_work_are_refused_at_upload(tenant, content, form, location, field):
    r = upload(tenant, content, **form)
    assert r.status_code == 422, r.get_json()
    assert field in r.get_json()["errors"][location], r.get_json()
    assert tenant.get("/api/v1/imports").get_json()["items"] == []
    assert counts(tenant) == (0, 0)


def test_no_file_and_oversize_uploads(tenant, monkeypatch):
    r = tenant.post("/api/v1/imports", data={"source": "x"}, content_type="multipart/form-data")
    assert r.status_code == 422 and "file" in r.get_json()["errors"]["form"]
    r = tenant.post("/api/v1/imports", json={"file": "name,phone"})
    assert r.status_code == 422 and "file" in r.get_json()["errors"]["form"]
    monkeypatch.setattr(api, "MAX_REQUEST", 2048)
    big = b"name,phone\n" + b"".join(b"n%d,139%08d\n" % (i, i) for i in range(200))
    r = upload(tenant, big)
    assert r.status_code == 413, r.get_json()
    r = tenant.post("/api/v1/imports", input_stream=io.BytesIO(b"x" * 4096),
                    headers={"Transfer-Encoding": "chunked", "Content-Type": "multipart/form-data; boundary=b"},
                    environ_overrides={"wsgi.input_terminated": True})
    assert r.status_code == 413, r.get_json()
    monkeypatch.setattr(svc, "MAX_FILE_BYTES", 1024)
    monkeypatch.setattr(api, "MAX_REQUEST", 1 << 20)
    r = upload(tenant, big)
    assert r.status_code == 422 and "file" in r.get_json()["errors"]["form"]
    assert tenant.get("/api/v1/imports").get_json()["items"] == [] and counts(tenant) == (0, 0)


def test_batches_commit_progress_and_rows_with_nul(tenant, monkeypatch):
    monkeypatch.setattr(svc, "BATCH", 3)
    lines = ["name,phone"] + [f"n{i},1390014{i:04d}" for i in range(10)]
    lines[4] = "bad\x00,13900149999"  # data row 4
    lines.append("n0-again,13900140000")  # row 11: merges into row 1's lead, in a later batch
    content = ("\n".join(lines) + "\n").encode()
    seen: list[tuple[int, int]] = []
    with tenant.runtime.tenant_context(tenant.id) as ctx:
        imp = svc.create_import(ctx, filename="x.csv", content=content)
    result = svc.run_import(tenant.runtime, tenant.id, imp.id, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(0, 11), (3, 11), (6, 11), (9, 11), (11, 11)]
    assert (result["status"], result["created_leads"], result["merged_rows"], result["failed_rows"]) == \
        ("done", 9, 1, 1)
    with tenant.runtime.sessions() as s:
        errors = s.execute(select(ImportError_.row, ImportError_.field, ImportError_.message)
                           .where(ImportError_.import_id == imp.id)).all()
    assert errors == [(4, "row", "contains the NUL character")]
    # a job that finds the import already taken leaves it alone
    again = svc.run_import(tenant.runtime, tenant.id, imp.id)
    assert again["created_leads"] == 9 and counts(tenant) == (9, 10)


def test_a_batch_that_conflicts_is_retried_once(tenant, monkeypatch):
    real = svc.ingest
    calls = {"n": 0}

    def flaky(ctx, subs, **kw):
        calls["n"] += 1
        if calls["n"] == 1:
            real(ctx, subs, **kw)  # wrote, then lost the race: the transaction is rolled back
            raise Conflict("a request with this idempotency key is being processed; retry it")
        return real(ctx, subs, **kw)

    monkeypatch.setattr(svc, "ingest", flaky)
    imp = upload(tenant, "姓名,手机\n甲,13900139010\n乙,13900139011\n".encode()).get_json()
    assert (imp["status"], imp["created_leads"], calls["n"]) == ("done", 2, 2)
    assert counts(tenant) == (2, 2)

    def always(ctx, subs, **kw):
        raise Conflict("a request with this idempotency key is being processed; retry it")

    monkeypatch.setattr(svc, "ingest", always)
    imp = upload(tenant, "姓名,手机\n丙,13900139012\n".encode()).get_json()
    assert imp["status"] == "failed" and "rows 1-1" in imp["error"] and "run it again" in imp["error"]
    assert counts(tenant) == (2, 2)


def test_an_unexpected_error_fails_the_import_not_the_request(tenant, monkeypatch):
    def broken(ctx, subs, **kw):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(svc, "ingest", broken)
    r = upload(tenant, "姓名,手机\n丁,13900139013\n".encode())
    assert r.status_code == 202
    imp = r.get_json()
    assert imp["status"] == "failed" and imp["error"] == "internal error: RuntimeError: disk on fire"
    assert imp["finished_at"] is not None and counts(tenant) == (0, 0)


def test_a_broken_csv_row_fails_the_import_before_any_row_lands(tenant, monkeypatch):
    import csv

    monkeypatch.setattr(svc, "BATCH", 1)
    previous = csv.field_size_limit(64)
    try:
        content = ("name,phone\n甲,13900139014\n\n" + "x" * 100 + ",13900139015\n").encode()
        imp = upload(tenant, content).get_json()
    finally:
        csv.field_size_limit(previous)
    assert imp["status"] == "failed", imp
    assert imp["error"].startswith("row 3 is not valid CSV") and "nothing was imported" in imp["error"]
    assert imp["processed_rows"] == 0 and counts(tenant) == (0, 0)


def test_reads_lists_roles_and_tenants(tenant, other_tenant):
    mine = upload(tenant, "姓名,手机\n甲,13900139016\n".encode()).get_json()
    upload(tenant, "姓名,手机\n乙,13900139017\n".encode())
    page = tenant.get("/api/v1/imports?limit=1").get_json()
    assert len(page["items"]) == 1 and page["next_cursor"] is not None
    assert "errors" not in page["items"][0] and "content" not in page["items"][0]
    rest = tenant.get(f"/api/v1/imports?limit=1&cursor={page['next_cursor']}").get_json()
    assert rest["items"][0]["id"] == mine["id"]
    assert tenant.get(f"/api/v1/imports/{mine['id']}", "manager").status_code == 200
    assert tenant.get(f"/api/v1/imports/{mine['id']}", "rep").status_code == 403
    assert upload(tenant, b"name,phone\n", who="rep").status_code == 403
    assert other_tenant.get(f"/api/v1/imports/{mine['id']}").status_code == 404
    assert other_tenant.get("/api/v1/imports").get_json()["items"] == []
    # the same file in another tenant is that tenant's own import: nothing replays across
    again = upload(other_tenant, "姓名,手机\n甲,13900139016\n".encode()).get_json()
    assert again["created_leads"] == 1 and again["sha256"] == mine["sha256"]


def test_errors_shown_are_capped_and_counted(tenant, monkeypatch):
    monkeypatch.setattr(svc, "SHOWN_ERRORS", 2)
    monkeypatch.setattr(svc, "MAX_STORED_ERRORS", 3)
    content = ("name,phone\n" + "".join(f"n{i},12{i}\n" for i in range(5))).encode()
    imp = upload(tenant, content).get_json()
    assert imp["failed_rows"] == 5 and imp["error_count"] == 3 and [e["row"] for e in imp["errors"]] == [1, 2]


@pytest.mark.redis
def test_the_job_runs_on_an_rq_worker(make_app, redis_url):
    from redis import Redis
    from rq import SimpleWorker

    app = make_app(redis=True)
    t = new_tenant(app)
    rt = t.runtime
    queue = rt.queue.rq
    queue.empty()
    try:
        r = upload(t, "姓名,手机号\n周一,13900139020\n周二,13900139021\n".encode())
        assert r.status_code == 202
        queued = r.get_json()
        assert queued["status"] == "queued" and queued["processed_rows"] == 0 and counts(t) == (0, 0)
        job = next(j for j in queue.get_jobs() if j.description == "pelago:import")
        assert job.timeout == 3600
        with rt.activated():
            SimpleWorker([queue], connection=Redis.from_url(redis_url)).work(burst=True)
        done = t.get(f"/api/v1/imports/{queued['id']}").get_json()
        assert (done["status"], done["created_leads"], done["progress"]) == ("done", 2, 1.0)
        assert counts(t) == (2, 2)
    finally:
        queue.delete(delete_jobs=True)


# --- the command line -----------------------------------------------------------------------


@pytest.fixture
def cli(db_url, engine, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("PELAGO_PLUGINS", "pool,scheduling,sms_nurture,settlement")
    monkeypatch.delenv("REDIS_URL", raising=False)

    def run(*args: str) -> Any:
        return CliRunner().invoke(main, list(args), catch_exceptions=False)

    return run


def test_cli_imports_with_a_progress_bar(cli, tenant, tmp_path):
    path = tmp_path / "客户.csv"
    path.write_bytes(MIXED.encode("gb18030"))
    r = cli("leads", "import", str(path), "--tenant", tenant.slug, "--source", "cli")
    assert r.exit_code == 0, r.output
    assert "importing rows" in r.output
    assert "done: 6 of 6 rows; created 2, merged 1, skipped 0 (already imported), failed 3" in r.output
    assert "row 2, phone:" in r.output and "row 6, phone: phone or email is required" in r.output
    assert counts(tenant) == (2, 3)
    with tenant.runtime.sessions() as s:
        imp = s.scalars(select(Import).where(Import.tenant_id == tenant.id)).one()
    assert (imp.filename, imp.encoding, imp.created_by) == ("客户.csv", "gb18030", None)
    assert names(tenant)["刘洋"]["source"] == "百度" and names(tenant)["张伟"]["source"] == "抖音"
    again = cli("leads", "import", str(path), "--tenant", tenant.slug)
    assert again.exit_code == 0 and "created 0, merged 0, skipped 3" in again.output
    assert counts(tenant) == (2, 3)


def test_cli_mapping_and_refusals(cli, tenant, tmp_path):
    path = tmp_path / "x.csv"
    path.write_bytes("客户,号码\n吴一,13900139030\n".encode())
    assert cli("leads", "import", str(path), "--tenant", tenant.slug).exit_code != 0  # no phone column found
    r = cli("leads", "import", str(path), "--tenant", tenant.slug, "--mapping", '{"name": "客户", "phone": "号码"}')
    assert r.exit_code == 0 and "created 1" in r.output, r.output
    missing = cli("leads", "import", str(tmp_path / "nope.csv"), "--tenant", tenant.slug)
    assert missing.exit_code != 0 and "cannot read" in missing.output
    assert cli("leads", "import", str(path), "--tenant", tenant.slug, "--mapping", "{oops").exit_code != 0
    assert cli("leads", "import", str(path), "--tenant", "no-such-tenant").exit_code != 0
    assert counts(tenant) == (1, 1)


def test_a_form_part_without_a_usable_name_is_ignored(tenant):
    """Was a 500 (found by the contract tests): werkzeug gives such a part the name None."""
    boundary = "fa953101caf6260f8f019f26a5d8ee9f"
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"%0D\"\r\n\r\nnull\r\n"
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.csv\"\r\n\r\n"
        f"name,phone\r\nx,13900139040\r\n--{boundary}--\r\n"
    ).encode()
    r = tenant.post("/api/v1/imports", data=body, content_type=f"multipart/form-data; boundary={boundary}")
    assert r.status_code in (202, 422), r.get_json()
    body = body.replace(b'name="%0D"', b"name")
    r = tenant.post("/api/v1/imports", data=body, content_type=f"multipart/form-data; boundary={boundary}")
    assert r.status_code in (202, 422), r.get_json()


@pytest.mark.parametrize(("content", "bad_row"), [
    ('name,phone\n"甲,13900139040\n乙,13900139041\n', 1),    # a quote never closed: it would swallow row 2
    ('name,phone\n甲,13900139042\n"乙"x,13900139043\n', 2),  # text after a closing quote
])
def test_a_quote_left_open_fails_the_import_with_its_row(tenant, content, bad_row):
    imp = upload(tenant, content.encode()).get_json()
    assert imp["status"] == "failed", imp
    assert imp["error"].startswith(f"row {bad_row} is not valid CSV") and "nothing was imported" in imp["error"]
    assert imp["processed_rows"] == 0 and imp["failed_rows"] == 0 and counts(tenant) == (0, 0)


def test_cli_exits_non_zero_on_a_quote_left_open(cli, tenant, tmp_path):
    path = tmp_path / "open.csv"
    path.write_bytes('name,phone\n"甲,13900139044\n乙,13900139045\n'.encode())
    r = cli("leads", "import", str(path), "--tenant", tenant.slug)
    assert r.exit_code != 0 and "row 1 is not valid CSV (a quote opened in this row is never closed)" in r.output, \
        r.output
    assert counts(tenant) == (0, 0)


def test_every_error_can_be_read_a_page_at_a_time_and_downloaded(tenant, other_tenant):
    """Was: 150 bad rows gave error_count 150 and 100 errors, and no way to read the rest."""
    import csv as csvlib

    content = ("name,phone\n" + "".join(f"n{i},12{i}\n" for i in range(150)) + "=HYPERLINK(1),+1\n").encode()
    imp = upload(tenant, content).get_json()
    assert imp["failed_rows"] == 151 and imp["error_count"] == 151 and len(imp["errors"]) == 100
    url = f"/api/v1/imports/{imp['id']}/errors"
    seen, cursor = [], None
    while True:
        page = tenant.get(url, query_string={"limit": 40, **({"cursor": cursor} if cursor else {})}).get_json()
        assert len(page["items"]) <= 40
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [e["row"] for e in seen] == list(range(1, 152))
    assert seen[:100] == imp["errors"]
    assert set(seen[0]) == {"row", "field", "message"} and seen[0]["field"] == "phone"

    r = tenant.get(f"{url}.csv")
    assert r.status_code == 200 and r.mimetype == "text/csv"
    assert r.headers["Content-Disposition"] == f'attachment; filename="import-{imp["id"]}-errors.csv"'
    text = r.data.decode("utf-8")
    assert text.startswith("\ufeffrow,field,message\r\n")
    rows = list(csvlib.reader(io.StringIO(text.lstrip("\ufeff"))))
    assert len(rows) == 152 and [int(r[0]) for r in rows[1:]] == list(range(1, 152))
    assert rows[1][1:] == [seen[0]["field"], seen[0]["message"]]

    assert tenant.get(url, "manager").status_code == 200 and tenant.get(url, "rep").status_code == 403
    assert tenant.get(f"{url}.csv", "rep").status_code == 403
    assert other_tenant.get(url).status_code == 404 and other_tenant.get(f"{url}.csv").status_code == 404
    assert tenant.get(url, query_string={"cursor": "nope"}).status_code == 422


def test_the_error_download_defuses_formulas(tenant, monkeypatch):
    """A message or field that starts like a formula is not run by a spreadsheet."""
    def refuse(ctx, subs, **kw):
        from pelago.core.services.intake import Outcome
        return [Outcome(status="invalid", errors={"phone": ["=cmd|' /C calc'!A0"]}) for _ in subs]

    monkeypatch.setattr(svc, "ingest", refuse)
    imp = upload(tenant, b"name,phone\nx,13900139050\n").get_json()
    text = tenant.get(f"/api/v1/imports/{imp['id']}/errors.csv").data.decode("utf-8")
    assert text.splitlines()[1] == "1,phone,'=cmd|' /C calc'!A0"
