"""``pelago``: serve, work, schedule, migrate and administer from the shell.

Commands build their runtime from the environment (``DATABASE_URL``,
``REDIS_URL``, ``PELAGO_PLUGINS`` …), like the server does. Plugins add groups
through ``PluginSpec.commands``.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from sqlalchemy import select

from pelago.core import __version__
from pelago.core.errors import PelagoError, PluginConfigError
from pelago.core.models import Tenant, User
from pelago.core.runtime import Runtime

from .config import Settings


def _runtime(obj: dict[str, Any], *, background: bool = False) -> Runtime:
    """The invocation's runtime; ``background``: jobs on a thread (the embedded server)."""
    if "runtime" not in obj:
        from .app import build_runtime

        try:
            obj["runtime"] = build_runtime(Settings.from_env(), background=background)
        except PluginConfigError as exc:
            raise click.ClickException(str(exc)) from None
    return obj["runtime"]  # type: ignore[no-any-return]


F = TypeVar("F", bound=Callable[..., Any])


def pass_runtime(f: F) -> F:
    """Give a command the app's :class:`~pelago.core.runtime.Runtime` as its first argument.

    For plugins' commands (``PluginSpec.commands``): the runtime is built
    once per invocation from the environment, as ``pelago serve`` builds it
    (or is the one a test passed in ``obj={"runtime": ...}``).
    """

    @click.pass_context
    def command(ctx: click.Context, /, *args: Any, **kwargs: Any) -> Any:
        obj = ctx.find_root().ensure_object(dict)
        return ctx.invoke(f, _runtime(obj), *args, **kwargs)

    return functools.update_wrapper(command, f)  # type: ignore[return-value]


class PelagoGroup(click.Group):
    """Turns domain errors into one-line messages and adds plugins' commands."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PelagoError as exc:
            detail = f" {exc.errors}" if exc.errors else ""
            raise click.ClickException(f"{exc.message}{detail}") from None

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._plugin_commands(ctx)})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return super().get_command(ctx, name) or self._plugin_commands(ctx).get(name)

    def _plugin_commands(self, ctx: click.Context) -> dict[str, click.Command]:
        """Groups from deployed plugins' ``PluginSpec.commands``, looked up once per invocation."""
        root = ctx.find_root()
        cached = root.meta.get("pelago_plugin_commands")
        if cached is None:
            try:
                from pelago.core.host import PluginHost

                settings = Settings.from_env()
                host = PluginHost(settings.plugins, strict=settings.strict_plugins)
                cached = {s.name: s.commands for s in host.specs.values() if s.commands is not None}
                for s in host.specs.values():  # a group named otherwise is also reachable by its own name
                    if s.commands is not None and s.commands.name and s.commands.name not in cached:
                        cached[s.commands.name] = s.commands
            except PluginConfigError:
                cached = {}
            root.meta["pelago_plugin_commands"] = cached
        return cached  # type: ignore[no-any-return]


@click.group(cls=PelagoGroup)
@click.version_option(__version__, prog_name="pelago")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Pelago, the plugin-based CRM core."""
    ctx.ensure_object(dict)


# --- running -------------------------------------------------------------------


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--demo", is_flag=True, help="migrate, seed a demo tenant and print how to use it")
@click.pass_obj
def serve(obj: dict[str, Any], host: str, port: int, demo: bool) -> None:
    """Serve the API (development server; use gunicorn in production)."""
    from pelago.core import migrate
    from pelago.core.scheduler import BackgroundScheduler

    from .app import create_app

    rt = _runtime(obj, background=True)
    settings = Settings.from_env()
    migrate.upgrade(rt.engine, rt.host)
    if demo:
        from .demo import seed

        info = seed(rt)
        click.echo(info.banner(f"http://{host}:{port}"))
    app = create_app(settings, runtime=rt)
    if settings.redis_url is None:
        # The in-memory queue of the last run died with it: its queued imports go on this one.
        rt.queue.enqueue("resume_imports", lost_queue=True)
    if settings.redis_url is None and settings.embedded_scheduler:
        BackgroundScheduler(rt, settings.scheduler_interval).start()
    app.run(host=host, port=port, threaded=True, use_reloader=False)


@main.command()
@click.option("--burst", is_flag=True, help="stop when the queue is empty")
@click.option("--queue", "queues", multiple=True, default=["pelago-intake", "pelago"], show_default=True,
              help="queues in priority order: accepted webhooks' routers first, then every other job")
@click.pass_obj
def worker(obj: dict[str, Any], burst: bool, queues: tuple[str, ...]) -> None:
    """Run an rq worker for Pelago's jobs (needs REDIS_URL): routers in its process, other jobs forked."""
    from pelago.core.runtime import activate
    from pelago.core.worker import PelagoWorker, warm

    rt = _runtime(obj)
    settings = Settings.from_env()
    if settings.redis_url is None:
        raise click.ClickException("REDIS_URL is not set: without Redis, jobs run inline in the server")
    from redis import Redis

    activate(rt)
    warm(rt)  # the first router's start-up, paid now rather than in the first webhooks' latency
    PelagoWorker(list(queues), connection=Redis.from_url(settings.redis_url)).work(burst=burst)


@main.command()
@click.option("--interval", default=15.0, show_default=True, help="seconds between ticks")
@click.option("--once", is_flag=True, help="one tick, then exit")
@click.pass_obj
def scheduler(obj: dict[str, Any], interval: float, once: bool) -> None:
    """Start plugins' periodic jobs when due, for tenants that have them on."""
    import time

    from pelago.core.scheduler import tick

    rt = _runtime(obj)
    while True:
        try:
            started = tick(rt)
        except Exception as exc:
            # Redis or the database away: say so and tick again, as the embedded thread does.
            # A period that could not be handed over was given back and starts on a later tick.
            if once:
                raise click.ClickException(f"tick failed: {exc}") from exc
            rt.log.exception("periodic tick failed; trying again in %s s", interval)
            started = []
        for s in started:
            click.echo(f"started {s.plugin}.{s.job} for tenant {s.tenant_id}")
        if once:
            return
        time.sleep(interval)


# --- database ------------------------------------------------------------------------


@main.group()
def db() -> None:
    """Database migrations."""


@db.command()
@click.pass_obj
def upgrade(obj: dict[str, Any]) -> None:
    """Upgrade the core and every deployed plugin's tables."""
    from pelago.core import migrate

    rt = _runtime(obj)
    migrate.upgrade(rt.engine, rt.host)
    click.echo(f"database is current (core + {', '.join(rt.host.specs) or 'no plugins'})")


@db.command("revision")
@click.option("--plugin", "plugin", required=True, help="the plugin (installed; deployed or not)")
@click.option("-m", "--message", required=True, help="what the revision does (also its file name)")
@click.option("--autogenerate", is_flag=True, help="compare the plugin's models with its migrated tables")
def db_revision(plugin: str, message: str, autogenerate: bool) -> None:
    """Write the plugin's next Alembic revision into its migrations/versions/.

    The first one starts the plugin's own branch (label NAME, depending on
    the core's current head); later ones follow NAME@head. Other installed
    plugins, deployed or not, change nothing. With --autogenerate the models
    are compared with a throwaway database migrated to every installed head
    (a temporary SQLite file; on PostgreSQL's server when DATABASE_URL is a
    PostgreSQL URL), limited to the plugin's own tables; your database is
    neither read nor changed.
    """
    from pelago.core import migrate
    from pelago.core.host import PluginHost

    settings = Settings.from_env()
    try:
        host = PluginHost(settings.plugins, strict=False)
    except PluginConfigError as exc:
        raise click.ClickException(str(exc)) from None
    against = settings.database_url if settings.database_url.startswith("postgresql") else None
    made = migrate.revision(host, plugin, message, autogenerate=autogenerate, against=against)
    if made.first:
        click.echo(f"{made.revision}: first revision of branch {plugin!r}, depends on core {made.depends_on}")
    else:
        click.echo(f"{made.revision}: follows {made.down_revision}")
    click.echo(f"wrote {made.path}")


# --- administration ------------------------------------------------------------------


@main.group()
def tenants() -> None:
    """Tenants of this installation."""


@tenants.command("create")
@click.argument("slug")
@click.option("--name")
@click.option("--timezone", default="Asia/Shanghai", show_default=True)
@click.option("--region", "default_region", default="CN", show_default=True, help="default phone region")
@click.pass_obj
def tenants_create(obj: dict[str, Any], slug: str, name: str | None, timezone: str, default_region: str) -> None:
    from pelago.core.services.admin import create_tenant

    rt = _runtime(obj)
    with rt.sessions() as session:
        tenant = create_tenant(
            session, slug=slug, name=name, timezone=timezone, default_region=default_region, now=rt.clock()
        )
        session.commit()
        click.echo(f"tenant {tenant.slug} created (id {tenant.id})")


@tenants.command("list")
@click.pass_obj
def tenants_list(obj: dict[str, Any]) -> None:
    rt = _runtime(obj)
    with rt.sessions() as session:
        for t in session.scalars(select(Tenant).order_by(Tenant.id)):
            click.echo(f"{t.id}\t{t.slug}\t{t.name}\t{t.timezone}")


@main.group()
def users() -> None:
    """People."""


@users.command("create")
@click.option("--tenant", "slug", help="tenant slug (none for an operator)")
@click.option("--email", required=True)
@click.option("--role", required=True, type=click.Choice(["operator", "admin", "manager", "rep"]))
@click.option("--name", default="")
@click.option("--team", help="team name (created if missing)")
@click.option("--password", help="for the web console")
@click.pass_obj
def users_create(
    obj: dict[str, Any], slug: str | None, email: str, role: str, name: str, team: str | None, password: str | None
) -> None:
    from pelago.core.models import Team
    from pelago.core.services.admin import create_user

    rt = _runtime(obj)
    tenant_id = rt.tenant_by_slug(slug).id if slug else None
    with rt.sessions() as session:
        team_id = None
        if team:
            if tenant_id is None:
                raise click.ClickException("--team needs --tenant")
            found = session.scalars(select(Team).where(Team.tenant_id == tenant_id, Team.name == team)).first()
            if found is None:
                found = Team(tenant_id=tenant_id, name=team, description="", active=True, created_at=rt.clock())
                session.add(found)
                session.flush()
            team_id = found.id
        user = create_user(
            session, tenant_id=tenant_id, email=email, role=role, name=name, team_id=team_id,
            password=password, now=rt.clock(),
        )
        session.commit()
        click.echo(f"user {user.email} ({user.role}) created (id {user.id})")


@users.command("set-password")
@click.argument("email")
@click.option("--tenant", "slug", required=True, help="the user's tenant")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              help="the new password (asked for when not given)")
@click.pass_obj
def users_set_password(obj: dict[str, Any], email: str, slug: str, password: str) -> None:
    """Set a user's console password (stored as a PBKDF2 hash): the first admin's way into the console.

    Signs the user out of every console session, so an old password's sessions end.
    """
    from pelago.core.services.admin import set_password

    rt = _runtime(obj)
    tenant = rt.tenant_by_slug(slug)
    with rt.sessions() as session:
        user = set_password(session, tenant_id=tenant.id, email=email, password=password)
        session.commit()
        click.echo(f"password of {user.email} ({slug}) set")


@users.command("activate")
@click.argument("email")
@click.option("--tenant", "slug", required=True, help="the user's tenant")
@click.option("--role", type=click.Choice(["admin", "manager", "rep"]), help="also give this role")
@click.pass_obj
def users_activate(obj: dict[str, Any], email: str, slug: str, role: str | None) -> None:
    """Reactivate a user (and with --role, change the role): the way back in for a locked-out tenant.

    Then `pelago api-keys create --tenant SLUG --user EMAIL` gives the user a
    key. The API refuses to deactivate or demote a tenant's last active
    admin; this is for a tenant that lost its admins anyway.
    """
    from pelago.core.services.admin import activate_user

    rt = _runtime(obj)
    tenant = rt.tenant_by_slug(slug)
    with rt.sessions() as session:
        user = activate_user(session, tenant_id=tenant.id, email=email, role=role)
        session.commit()
        click.echo(f"user {user.email} ({user.role}) of {slug} is active")


@main.group("api-keys")
def api_keys() -> None:
    """API keys."""


@api_keys.command("create")
@click.option("--tenant", "slug", help="the user's tenant (none for an operator)")
@click.option("--user", "email", required=True)
@click.option("--name", default="cli")
@click.pass_obj
def api_keys_create(obj: dict[str, Any], slug: str | None, email: str, name: str) -> None:
    """Create a key; the key alone is the last line printed."""
    from pelago.core.services.admin import create_api_key

    rt = _runtime(obj)
    tenant_id = rt.tenant_by_slug(slug).id if slug else None
    with rt.sessions() as session:
        stmt = select(User).where(User.email == email.strip().lower())
        stmt = stmt.where(User.tenant_id == tenant_id) if tenant_id else stmt.where(User.tenant_id.is_(None))
        user = session.scalars(stmt).first()
        if user is None:
            raise click.ClickException(f"no user {email} in {'tenant ' + slug if slug else 'the operators'}")
        row, key = create_api_key(session, user, name=name, now=rt.clock())
        session.commit()
    click.echo(f"API key {row.prefix} for {email} (shown once):", err=True)
    click.echo(key)


@main.group()
def leads() -> None:
    """Leads in bulk."""


@leads.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=str))
@click.option("--tenant", "slug", required=True, help="the tenant's slug")
@click.option("--mapping", help='JSON: our field → column header, e.g. \'{"phone": "手机号"}\'')
@click.option("--source", help="source for rows without one")
@click.option("--channel", help="the touches' channel (default: import)")
@click.option("--delimiter", type=click.Choice([",", ";", "|", "tab"]), help="default: detected from the header")
@click.pass_obj
def leads_import(
    obj: dict[str, Any], file: str, slug: str, mapping: str | None, source: str | None, channel: str | None,
    delimiter: str | None,
) -> None:
    """Import a CSV of leads (UTF-8, UTF-8 with BOM or GB18030), like POST /api/v1/imports.

    Runs here, not on a worker, with a progress bar over the rows. Bad rows
    are reported and skipped; running the same file again adds nothing.
    Exits non-zero if the file cannot be read or the import fails as a whole.
    """
    import json
    import os
    from contextlib import ExitStack

    from pelago.core.services.imports import create_import, first_errors, run_import

    try:
        with open(file, "rb") as fh:
            content = fh.read()
    except OSError as exc:
        raise click.ClickException(f"cannot read {file}: {exc.strerror or exc}") from None
    given = None
    if mapping:
        try:
            given = json.loads(mapping)
        except ValueError:
            raise click.ClickException("--mapping is not valid JSON") from None
        if not isinstance(given, dict):
            raise click.ClickException('--mapping must be a JSON object, e.g. {"phone": "手机号"}')
    rt = _runtime(obj)
    tenant = rt.tenant_by_slug(slug)
    with rt.tenant_context(tenant.id) as ctx:
        imp = create_import(
            ctx, filename=os.path.basename(file), content=content, mapping=given,
            options={"source": source, "channel": channel, "delimiter": "\t" if delimiter == "tab" else delimiter},
        )
        import_id = imp.id
    del content
    with ExitStack() as stack:
        bars: list[Any] = []

        def progress(done: int, total: int) -> None:
            if not bars:
                bars.append(stack.enter_context(click.progressbar(length=max(total, 1), label="importing rows")))
            bars[0].update(done - bars[0].pos)

        result = run_import(rt, tenant.id, import_id, progress=progress)
    click.echo(
        f"import {import_id}: {result['status']}: {result['processed_rows']} of {result['total_rows'] or 0} rows; "
        f"created {result['created_leads']}, merged {result['merged_rows']}, "
        f"skipped {result['skipped_rows']} (already imported), failed {result['failed_rows']}"
    )
    shown = first_errors(rt, tenant.id, import_id, 10)
    for row, field, message in shown:
        click.echo(f"  row {row}, {field}: {message}")
    if result["failed_rows"] > len(shown):
        click.echo(f"  … all of them: GET /api/v1/imports/{import_id}/errors (or /errors.csv)")
    if result["status"] != "done":
        raise click.ClickException(result.get("error") or "the import failed")


@main.group()
def plugins() -> None:
    """Deployed plugins and their per-tenant switches."""


@plugins.command("list")
@click.option("--tenant", "slug", help="show whether each is on for this tenant")
@click.pass_obj
def plugins_list(obj: dict[str, Any], slug: str | None) -> None:
    rt = _runtime(obj)
    state = None
    if slug:
        with rt.sessions() as session:
            tenant = session.scalars(select(Tenant).where(Tenant.slug == slug)).first()
            if tenant is None:
                raise click.ClickException(f"no tenant with slug {slug!r}")
            state = rt.host.tenant_state(session, tenant)
    for name, spec in rt.host.specs.items():
        status = "deployed"
        if state is not None:
            status = "on" if name in state.enabled else "off"
        click.echo(f"{name}\t{spec.version}\t{status}\t{spec.title}")
    for failure in rt.host.failures.values():
        click.echo(f"{failure.name}\t-\tFAILED\t{failure.error}")


def _switch(obj: dict[str, Any], name: str, slug: str, enabled: bool) -> None:
    from pelago.core.services.plugins import configure

    rt = _runtime(obj)
    tenant = rt.tenant_by_slug(slug)
    with rt.tenant_context(tenant.id) as ctx:
        configure(ctx, name, enabled=enabled)
    click.echo(f"{name} {'enabled' if enabled else 'disabled'} for {slug}")


@plugins.command("enable")
@click.argument("name")
@click.option("--tenant", "slug", required=True)
@click.pass_obj
def plugins_enable(obj: dict[str, Any], name: str, slug: str) -> None:
    _switch(obj, name, slug, True)


@plugins.command("disable")
@click.argument("name")
@click.option("--tenant", "slug", required=True)
@click.pass_obj
def plugins_disable(obj: dict[str, Any], name: str, slug: str) -> None:
    _switch(obj, name, slug, False)


@main.group("plugin")
def plugin_group() -> None:
    """Writing plugins (docs/tutorial.md)."""


@plugin_group.command("new")
@click.argument("name")
@click.option("--dir", "target", type=click.Path(file_okay=False, path_type=Path),
              help="where to write it (default: ./pelago-NAME); must not exist or be empty")
@click.option("--title", help="a one-line title (default: from the name)")
def plugin_new(name: str, target: Path | None, title: str | None) -> None:
    """Write a new plugin distribution NAME: spec, hooks, table and migration, routes, jobs, command, tests.

    Install it (pip install -e DIR), then its own tests pass on SQLite and
    PostgreSQL (pytest, pytest --pelago-db=postgresql).
    """
    from .scaffold import default_target, new_plugin

    folder = (target or default_target(name)).resolve()
    try:
        written = new_plugin(name, folder, title)
    except PelagoError as exc:
        raise click.ClickException(exc.message) from None
    for path in sorted(written):
        click.echo(f"  {path.relative_to(folder)}")
    click.echo(f"wrote plugin {name!r} ({len(written)} files) in {folder}; next:")
    click.echo(f"  pip install -e {folder}")
    click.echo(f"  PELAGO_PLUGINS={name} pelago db upgrade")
    click.echo(f"  cd {folder} && pytest && pytest --pelago-db=postgresql")


@main.group()
def secrets() -> None:
    """Secrets at rest: channel signing secrets and plugins' secret settings (docs/operations.md)."""


@secrets.command("new-key")
def secrets_new_key() -> None:
    """Print a new key for PELAGO_SECRET_KEYS (put it first to rotate, then run `pelago secrets rotate`)."""
    from pelago.core.crypto import new_key

    click.echo(new_key())


@secrets.command("rotate")
@click.pass_obj
def secrets_rotate(obj: dict[str, Any]) -> None:
    """Re-encrypt every stored secret with the first key of PELAGO_SECRET_KEYS (and encrypt clear ones).

    Run after putting a new key first; afterwards the old keys can go.
    Safe to run again: values already under the first key are left alone.
    """
    from pelago.core.crypto import SecretKeyError, rotate_stored

    rt = _runtime(obj)
    with rt.sessions() as session:
        try:
            with click.progressbar(length=1, label="re-encrypting") as bar:
                counts = rotate_stored(session, rt.host)
                bar.update(1)
        except SecretKeyError as exc:
            raise click.ClickException(str(exc)) from None
        session.commit()
    others = "".join(f"; {n} in {name}" for name, n in sorted(counts["columns"].items())
                     if name != "core_channel.secret")
    click.echo(f"re-encrypted {counts['channels']} channel secrets and {counts['settings']} plugin settings{others}")


@main.group()
def privacy() -> None:
    """Privacy requests (PIPL): export or erase a person (docs/operations.md#privacy-requests)."""


def _person_options(f: F) -> F:
    f = click.option("--email", help="the person's email")(f)
    f = click.option("--phone", help="the person's phone (any formatting; read with the tenant's region)")(f)
    return click.option("--tenant", "slug", required=True, help="the tenant's slug")(f)


def _operator() -> str:
    """Who ran the command, for the audit: ``cli:<login>``."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


@privacy.command("export")
@_person_options
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), help="write the JSON here")
@click.pass_obj
def privacy_export(obj: dict[str, Any], slug: str, phone: str | None, email: str | None,
                   output: str | None) -> None:
    """Print (or write) everything held about a person as JSON, like POST /api/v1/privacy/exports.

    The export is recorded in the tenant's privacy audit (actor cli:<login>).
    """
    import json

    from pelago.core.services import privacy as svc

    rt = _runtime(obj)
    tenant = rt.tenant_by_slug(slug)
    with rt.tenant_context(tenant.id) as ctx:
        document = svc.export(ctx, svc.subject(ctx, phone, email), actor=_operator())
    text = json.dumps(document, ensure_ascii=False, indent=2)
    if output:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
        click.echo(f"{len(document['leads'])} leads exported to {output} (audit {document['audit_id']})", err=True)
    else:
        click.echo(text)


@privacy.command("erase")
@_person_options
@click.option("--reason", required=True, help="why (the request, its reference): kept in the audit")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
@click.pass_obj
def privacy_erase(obj: dict[str, Any], slug: str, phone: str | None, email: str | None, reason: str,
                  yes: bool) -> None:
    """Erase a person, like POST /api/v1/privacy/erasures: their leads anonymised, plugins told, audited.

    Cannot be undone. Erasing again finds nothing and changes nothing.
    """
    from pelago.core.services import privacy as svc

    rt = _runtime(obj)
    tenant = rt.tenant_by_slug(slug)
    if not yes:
        click.confirm(f"Erase this person's data in tenant {slug}? This cannot be undone", abort=True)
    with rt.tenant_context(tenant.id) as ctx:
        done = svc.erase(ctx, svc.subject(ctx, phone, email), reason=reason, actor=_operator())
    if done.lead_ids:
        click.echo(f"erased leads {', '.join(map(str, done.lead_ids))} (audit {done.audit_id}); "
                   "plugins are told through the person_erased event")
    else:
        click.echo(f"no lead of this person in {slug}: nothing to erase (audit {done.audit_id})")


def run() -> None:  # pragma: no cover - console entry for `python -m`
    sys.exit(main())


