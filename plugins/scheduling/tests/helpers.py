"""Shared set-up for the scheduling tests: a tenant with the plugin on, a campus, a room, a teacher, a class."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pelago.testing import TenantHandle

BASE = "/api/v1/scheduling"


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, (response.status_code, response.get_json())
    return response.get_json()


@dataclass
class School:
    t: TenantHandle
    campus: int
    room: int
    teacher: int
    course: int
    package: int
    klass: int
    ids: dict[str, int] = field(default_factory=dict)

    def post(self, path: str, json: Any, who: str = "admin") -> Any:
        return self.t.post(BASE + path, who, json=json)

    def get(self, path: str, who: str = "admin", **kw: Any) -> Any:
        return self.t.get(BASE + path, who, **kw)

    def lesson(self, start: str, end: str, klass: int | None = None, room: int | None = None) -> Any:
        body: dict[str, Any] = {"class_id": klass or self.klass, "starts_at": start, "ends_at": end}
        if room:
            body["room_id"] = room
        return self.post("/lessons", body)

    def student(self, phone: str, **fields: Any) -> int:
        return int(self.t.lead(phone, **fields)["id"])

    def buy(self, lead_id: int, package: int | None = None) -> dict[str, Any]:
        return ok(self.post("/accounts", {"lead_id": lead_id, "package_id": package or self.package}), 201)

    def new_class(self, name: str, *, teacher: int | None = None, room: int | None = None, capacity: int = 10,
                  **kw: Any) -> int:
        body = {"name": name, "kind": "small_group", "campus_id": self.campus, "course_id": self.course,
                "teacher_id": teacher or self.teacher, "room_id": room, "capacity": capacity, **kw}
        return int(ok(self.post("/classes", body), 201)["id"])


def school(t: TenantHandle, settings: dict[str, Any] | None = None, *, hours: str = "20", gift: str = "0",
           price: str = "4000.00") -> School:
    r = t.put("/api/v1/plugins/scheduling", json={"enabled": True, "settings": settings or {}})
    assert r.status_code == 200, r.get_json()
    base = lambda p, j: ok(t.post(BASE + p, json=j), 201)  # noqa: E731
    campus = base("/campuses", {"name": "Xuhui", "timezone": "Asia/Shanghai"})["id"]
    room = base("/rooms", {"campus_id": campus, "name": "A101", "capacity": 12})["id"]
    teacher = t.users["rep"]
    base("/teachers", {"user_id": teacher})
    base("/teachers", {"user_id": t.users["rep2"]})
    course = base("/courses", {"name": "Maths", "subject": True})["id"]
    package = base("/packages", {"course_id": course, "name": "Maths 20h", "hours": hours, "gift_hours": gift,
                                 "price": price, "validity_days": 365})["id"]
    klass = base("/classes", {"name": "Maths G5", "kind": "small_group", "campus_id": campus, "course_id": course,
                              "teacher_id": teacher, "room_id": room, "capacity": 8})["id"]
    return School(t, campus, room, teacher, course, package, klass)
