"""Sign-in, sign-out and the language switch."""

from __future__ import annotations

import secrets
from typing import Any

from flask import current_app, g, make_response, redirect, request, url_for
from sqlalchemy import delete, select

from pelago.core.models import ConsoleSession, Tenant, User
from pelago.core.ratelimit import Rate
from pelago.core.security import check_password

from . import bp, i18n, web
from .web import _, render_page


def _rate() -> Rate:
    return Rate.parse(current_app.extensions["pelago_settings"].console_signin_rate)


def _throttle_keys(email: str) -> list[str]:
    from ..limits import client_address

    return [f"console_signin:email:{email}", f"console_signin:address:{client_address()}"]


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in() -> Any:
    """Email and password against the stored PBKDF2 hash; failures are counted per email and per address.

    Past ``PELAGO_CONSOLE_SIGNIN_RATE`` failures (5 per 300 s) the form is
    refused with 429 before any password is checked.
    """
    pre = request.cookies.get(web.PRE_CSRF_COOKIE) or secrets.token_urlsafe(24)
    error = None
    status = 200
    email = (request.form.get("email") or "").strip().lower()
    slug = (request.form.get("tenant") or "").strip()
    if request.method == "POST":
        limiter = current_app.extensions["pelago_limiter"]
        rate = _rate()
        keys = _throttle_keys(email)
        blocked = [v for v in (limiter.peek(k, rate) for k in keys) if not v.allowed]
        if blocked:
            error = _("Too many failed sign-ins. Try again in {seconds} seconds.", seconds=blocked[0].retry_after)
            status = 429
        else:
            session = g.pelago_session
            query = select(User, Tenant).join(Tenant, Tenant.id == User.tenant_id).where(
                User.email == email, User.active.is_(True))
            if slug:
                query = query.where(Tenant.slug == slug)
            matches = [(u, t) for u, t in session.execute(query).all()
                       if u.password_hash and check_password(request.form.get("password", ""), u.password_hash)]
            if len(matches) == 1:
                user, tenant = matches[0]
                purge_expired(session, web.runtime().clock())  # keeps the table to the live sessions
                _row, token = web.start_session(user, tenant)
                session.commit()
                response = redirect(web.safe_next(request.args.get("next")))
                web.set_cookie(response, token)  # type: ignore[arg-type]
                response.delete_cookie(web.PRE_CSRF_COOKIE, path="/console")
                return response
            if len(matches) > 1:
                error = _("This email belongs to several organisations: enter the organisation.")
                status = 400
            else:
                for key in keys:
                    limiter.hit(key, rate)
                error = _("Wrong email or password.")
                status = 401
    html = render_page("console/sign_in.html", error=error, email=email, tenant=slug, pre_csrf=pre)
    response = make_response(html, status)
    response.set_cookie(web.PRE_CSRF_COOKIE, pre, httponly=True, samesite="Strict", path="/console",
                        secure=request.is_secure)
    return response


@bp.post("/sign-out")
def sign_out() -> Any:
    session = g.pelago_session
    session.execute(delete(ConsoleSession).where(ConsoleSession.id == web.console().row.id))
    session.commit()
    response = redirect(url_for("console.sign_in"))
    response.delete_cookie(web.COOKIE, path="/console")
    return response


@bp.post("/language")
def language() -> Any:
    """Remember the language this browser's session shows (``zh-CN`` or ``en``)."""
    chosen = request.form.get("locale")
    if chosen in i18n.LOCALES:
        web.console().row.locale = chosen
    g.pelago_session.commit()
    return redirect(web.safe_next(request.form.get("next")))


def purge_expired(session: Any, now: Any) -> int:
    """Delete every session past its expiry (each sign-in does, through the index on ``expires_at``)."""
    result = session.execute(delete(ConsoleSession).where(ConsoleSession.expires_at <= now))
    return int(result.rowcount or 0)

