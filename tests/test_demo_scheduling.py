"""The demo seeds scheduling: a campus, a class with a weekly series, two students with accounts, a trial."""

from __future__ import annotations

from pelago.hostapp.demo import seed


def test_the_demo_seeds_a_class_with_a_series_two_accounts_and_a_trial(make_app):
    app = make_app(("pool", "scheduling", "sms_nurture", "settlement"))
    info = seed(app.extensions["pelago"])
    client = app.test_client()
    headers = {"Authorization": f"Bearer {info.admin_key}"}

    def get(path: str, **query: object) -> dict:
        r = client.get(f"/api/v1/scheduling{path}", headers=headers, query_string=query)
        assert r.status_code == 200, r.get_json()
        return r.get_json()

    [klass] = get("/classes")["items"]
    assert klass["name"] == "五年级数学 A" and len(klass["students"]) == 2
    lessons = get("/lessons", class_id=klass["id"], limit=50)["items"]
    assert 1 <= len(lessons) <= 10 and {x["starts_at"][11:16] for x in lessons} == {"09:00"}
    accounts = get("/accounts")["items"]
    assert len(accounts) == 2 and {a["remaining_hours"] for a in accounts} == {"22.00"}
    [trial] = get("/trials")["items"]
    assert trial["outcome"] is None and trial["lesson_id"] in {x["id"] for x in lessons}
    assert seed(app.extensions["pelago"]).tenant == "demo"  # a second run only mints keys
