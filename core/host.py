"""The plugin host: discovers, checks and registers plugins for one app.

One :class:`PluginHost` (and so one pluggy ``PluginManager``) per app, never a
module global, so two apps with different plugin sets can live in one process
(the tests do exactly that).
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version
from sqlalchemy import select
from sqlalchemy.orm import Session

from . import __version__, crypto, default_plugin, hookspecs
from .context import TenantState
from .errors import Conflict, InvalidInput, NotFound, PluginConfigError
from .markers import PROJECT
from .models import Tenant, TenantPlugin
from .spec import NAME_PATTERN, PluginSpec

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "pelago.plugins"
CORE_PLUGIN = "core"
MASK = "********"


@dataclass(frozen=True)
class PluginFailure:
    """A deployed plugin that could not be loaded, and why."""

    name: str
    target: str
    error: str


class TenantHooks:
    """``pm.hook`` as one tenant sees it: only the plugins switched on for it.

    Attribute access returns a pluggy caller: the plain ``pm.hook.<name>`` when
    nothing is off, else a cached ``subset_hook_caller`` without the plugins
    that are off.
    """

    __slots__ = ("_host", "_disabled")

    def __init__(self, host: PluginHost, disabled: frozenset[str]) -> None:
        self._host = host
        self._disabled = disabled

    def __getattr__(self, name: str) -> Any:
        return self._host.caller(name, self._disabled)


class PluginHost:
    """Loads the deployment's plugins and answers what is on for a tenant."""

    def __init__(
        self,
        allow: Sequence[str] | None = None,
        *,
        strict: bool = False,
        extra: Iterable[PluginSpec] = (),
    ) -> None:
        self.pm = pluggy.PluginManager(PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.specs: dict[str, PluginSpec] = {}
        self.failures: dict[str, PluginFailure] = {}
        self.installed: dict[str, str] = {}
        self._callers: dict[tuple[str, frozenset[str]], Any] = {}
        self._single: dict[tuple[str, str], Any] = {}
        self._answering: dict[str, list[str]] = {}
        self._implementers: dict[str, tuple[str, ...]] = {}
        self._askers: dict[tuple[str, str, frozenset[str]], Any] = {}
        self._hooked: frozenset[str] = frozenset()
        self._states: dict[int, TenantState] = {}
        self._lock = threading.Lock()
        self._load(allow, strict, list(extra))

    # --- loading ---------------------------------------------------------

    def _load(self, allow: Sequence[str] | None, strict: bool, extra: list[PluginSpec]) -> None:
        eps: dict[str, EntryPoint] = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
        self.installed = {name: ep.value for name, ep in sorted(eps.items())}
        names = list(allow) if allow is not None else sorted(eps)
        unknown = [n for n in names if n not in eps and n not in {s.name for s in extra}]
        if unknown:
            raise PluginConfigError(
                f"PELAGO_PLUGINS names {', '.join(unknown)}, which "
                f"{'is' if len(unknown) == 1 else 'are'} not installed "
                f"(installed: {', '.join(sorted(eps)) or 'none'})"
            )
        loaded: dict[str, PluginSpec] = {}
        for name in names:
            if name in loaded:
                continue
            try:
                spec = eps[name].load() if name in eps else next(s for s in extra if s.name == name)
                self._check_spec(name, spec)
            except Exception as exc:  # noqa: BLE001 - any import error is reported
                failure = PluginFailure(
                    name, eps[name].value if name in eps else "<extra>",
                    "".join(traceback.format_exception_only(type(exc), exc)).strip(),
                )
                if strict:
                    raise PluginConfigError(
                        f"plugin {name!r} failed to load ({failure.target}): {failure.error}"
                    ) from exc
                log.error("plugin %s failed to load and is skipped: %s", name, failure.error)
                self.failures[name] = failure
                continue
            loaded[name] = spec
        for spec in extra:
            if spec.name not in loaded and (allow is None or spec.name in allow):
                self._check_spec(spec.name, spec)
                loaded[spec.name] = spec
        self._check_requirements(loaded, names)
        self._register(loaded)

    def _check_spec(self, name: str, spec: Any) -> None:
        if not isinstance(spec, PluginSpec):
            raise TypeError(f"entry point {name!r} does not name a PluginSpec (got {type(spec).__name__})")
        if spec.name != name:
            raise TypeError(f"entry point {name!r} names a PluginSpec called {spec.name!r}")
        if not re.match(NAME_PATTERN, name) or name == CORE_PLUGIN:
            raise TypeError(
                f"plugin name {name!r} must match {NAME_PATTERN} (it is a table prefix and a URL segment)"
            )
        try:
            ok = Version(__version__) in SpecifierSet(spec.core, prereleases=True)
        except InvalidSpecifier as exc:
            raise TypeError(f"plugin {name!r} has an invalid core specifier {spec.core!r}") from exc
        if not ok:
            raise TypeError(f"plugin {name!r} needs pelago.core {spec.core}, this is {__version__}")

    def _check_requirements(self, loaded: dict[str, PluginSpec], names: Sequence[str]) -> None:
        changed = True
        while changed:  # a plugin whose requirement failed fails too, transitively
            changed = False
            for name, spec in list(loaded.items()):
                for req in spec.requires:
                    if req in loaded:
                        continue
                    if req in self.failures:
                        self.failures[name] = PluginFailure(
                            name, self.installed.get(name, "<extra>"),
                            f"requires {req!r}, which failed to load",
                        )
                        del loaded[name]
                        changed = True
                        break
                    raise PluginConfigError(
                        f"plugin {name!r} requires {req!r}, which is not deployed "
                        f"(add it to PELAGO_PLUGINS: {','.join([*names, req])})"
                    )

    def _register(self, loaded: dict[str, PluginSpec]) -> None:
        for spec in loaded.values():
            if spec.hookspecs is not None:
                self.pm.add_hookspecs(spec.hookspecs)  # type: ignore[arg-type]
        # pluggy calls the last registered first: register in reverse so the
        # first plugin in PELAGO_PLUGINS has the first word.
        self.pm.register(default_plugin, name=CORE_PLUGIN)
        for spec in reversed(list(loaded.values())):
            if spec.hooks is not None:
                self.pm.register(spec.hooks, name=spec.name)
        self.pm.check_pending()
        self.specs = loaded
        self._hooked = frozenset(s.name for s in loaded.values() if s.hooks is not None)

    # --- hooks -----------------------------------------------------------

    def caller(self, name: str, disabled: frozenset[str]) -> Any:
        """A hook caller that skips the ``disabled`` (registered) plugins, cached per set."""
        if not disabled:
            return getattr(self.pm.hook, name)
        key = (name, disabled)
        caller = self._callers.get(key)
        if caller is None:
            caller = self.pm.subset_hook_caller(
                name, remove_plugins=[self.pm.get_plugin(n) for n in disabled]
            )
            self._callers[key] = caller
        return caller

    def hooks_for(self, state: TenantState) -> TenantHooks:
        return TenantHooks(self, self.disabled_for(state))

    def disabled_for(self, state: TenantState) -> frozenset[str]:
        """Registered plugins that are off for the tenant (only plugins with hooks are registered)."""
        return self._hooked - state.enabled

    def answering(self, hook: str) -> list[str]:
        """Plugins answering ``hook`` (wrappers excluded), in call order; see :mod:`pelago.core.asking`."""
        names = self._answering.get(hook)
        if names is None:
            impls = getattr(self.pm.hook, hook).get_hookimpls()
            names = [i.plugin_name for i in reversed(impls) if not (i.hookwrapper or i.wrapper)]
            self._answering[hook] = names
        return names

    def asker(self, hook: str, plugin: str, disabled: frozenset[str]) -> Any:
        """A caller of ``hook`` reaching ``plugin``'s answer and the wrappers of the plugins that are on.

        It goes through pluggy like any hook call, so wrappers and call
        monitoring see it. Cached per (hook, plugin, plugins off).
        """
        key = (hook, plugin, disabled)
        caller = self._askers.get(key)
        if caller is None:
            others = {n for n in self.answering(hook) if n != plugin} | set(disabled)
            caller = self.pm.subset_hook_caller(
                hook, remove_plugins=[p for n, p in self.pm.list_name_plugin() if n in others]
            )
            self._askers[key] = caller
        return caller

    def single(self, hook: str, plugin: str) -> Any:
        """A caller of ``hook`` that reaches ``plugin`` alone (event delivery)."""
        key = (hook, plugin)
        caller = self._single.get(key)
        if caller is None:
            others = [p for n, p in self.pm.list_name_plugin() if n != plugin]
            caller = self.pm.subset_hook_caller(hook, remove_plugins=others)
            self._single[key] = caller
        return caller

    def implementers(self, hook: str) -> list[str]:
        """Names of the registered plugins that implement ``hook``.

        Remembered per hook, as :meth:`answering` is (the plugins are
        registered once, at load): every event written asks it.
        """
        names = self._implementers.get(hook)
        if names is None:
            caller = getattr(self.pm.hook, hook, None)
            if caller is None:
                raise KeyError(f"no hook called {hook!r}")
            names = tuple(impl.plugin_name for impl in caller.get_hookimpls())
            self._implementers[hook] = names
        return list(names)

    # --- tenants ---------------------------------------------------------

    def tenant_state(self, session: Session, tenant: Tenant, *, cache: bool = True) -> TenantState:
        """The tenant's switches and settings, cached per ``plugins_version``.

        ``cache=False`` for a state read inside a transaction that changes it:
        an uncommitted version must never enter the cache.
        """
        state = self._states.get(tenant.id) if cache else None
        if state is not None and state.version == tenant.plugins_version:
            return state
        rows = session.scalars(
            select(TenantPlugin)
            .where(TenantPlugin.tenant_id == tenant.id)
            .execution_options(all_tenants=True)
        ).all()
        state = self._build_state(tenant, {r.plugin: r for r in rows})
        if not cache:
            return state
        with self._lock:
            current = self._states.get(tenant.id)
            if current is None or current.version <= state.version:
                self._states[tenant.id] = state
        return state

    def cached_state(self, tenant_id: int, version: int) -> TenantState | None:
        """The cached state of the tenant if it is of ``version`` (its ``plugins_version`` as just read), else ``None``.

        For a caller that read the version with other data (event delivery
        reads it in its claim): no query when the switches have not moved.
        """
        state = self._states.get(tenant_id)
        return state if state is not None and state.version == version else None

    def _build_state(self, tenant: Tenant, rows: Mapping[str, TenantPlugin]) -> TenantState:
        enabled: set[str] = set()
        settings: dict[str, Mapping[str, Any]] = {}
        for name, spec in self.specs.items():
            row = rows.get(name)
            if (row.enabled if row is not None else spec.default_enabled):
                enabled.add(name)
            settings[name] = self.settings_of(spec, row.settings if row is not None else {})
        return TenantState(
            id=tenant.id,
            slug=tenant.slug,
            name=tenant.name,
            timezone=tenant.timezone,
            default_region=tenant.default_region,
            currency=tenant.currency,
            version=tenant.plugins_version,
            enabled=frozenset(enabled),
            settings=settings,
        )

    def settings_of(self, spec: PluginSpec, stored: Mapping[str, Any]) -> dict[str, Any]:
        """Stored settings with defaults filled in by the plugin's schema (secrets decrypted)."""
        if spec.settings is None:
            return dict(stored)
        schema = spec.settings()
        try:
            return dict(schema.load(_clear_secrets(stored, spec.secret_fields())))
        except Exception:  # noqa: BLE001 - a schema change must not lock a tenant out
            log.exception("stored settings of %s no longer validate; using defaults", spec.name)
            return dict(schema.load({}))

    def validate_settings(self, name: str, given: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
        """Validate new settings for storage; masked secrets keep their current value."""
        spec = self.spec(name)
        secret_fields = spec.secret_fields()
        merged = _clear_secrets(current, secret_fields)
        for key, value in given.items():
            if value == MASK and key in spec.secret_fields():
                continue
            merged[key] = value
        if spec.settings is None:
            if given:
                raise InvalidInput(
                    f"plugin {name!r} has no settings", {"settings": ["this plugin takes no settings"]}
                )
            return {}
        schema = spec.settings()
        from marshmallow import ValidationError

        try:
            loaded = schema.load(merged)
        except ValidationError as err:
            raise InvalidInput(
                f"invalid settings for plugin {name!r}", {"settings": err.messages}
            ) from err
        stored = dict(schema.dump(loaded))
        for key in secret_fields:
            value = stored.get(key)
            if isinstance(value, str) and value:
                # Unchanged: keep the stored token (a new one would read as a change).
                old = current.get(key)
                same = isinstance(old, str) and crypto.is_encrypted(old) and crypto.decrypt(old) == value
                stored[key] = old if same else crypto.encrypt(value)
        return stored

    def masked(self, name: str, settings: Mapping[str, Any]) -> dict[str, Any]:
        spec = self.spec(name)
        secrets = spec.secret_fields()
        if spec.settings is not None:
            settings = spec.settings().dump(settings)
        return {k: (MASK if k in secrets and v not in (None, "") else v) for k, v in settings.items()}

    def spec(self, name: str) -> PluginSpec:
        try:
            return self.specs[name]
        except KeyError:
            raise NotFound(f"no plugin called {name!r} is deployed") from None

    def check_enable(self, state: TenantState, name: str) -> None:
        missing = [r for r in self.spec(name).requires if r not in state.enabled]
        if missing:
            raise Conflict(
                f"plugin {name!r} requires {', '.join(repr(m) for m in missing)}; enable "
                f"{'it' if len(missing) == 1 else 'them'} first",
                {"requires": missing},
            )

    def check_disable(self, state: TenantState, name: str) -> None:
        self.spec(name)
        dependents = [
            n for n, s in self.specs.items() if name in s.requires and n in state.enabled
        ]
        if dependents:
            raise Conflict(
                f"plugin {name!r} is required by {', '.join(repr(d) for d in dependents)}, "
                f"which {'is' if len(dependents) == 1 else 'are'} on; disable "
                f"{'it' if len(dependents) == 1 else 'them'} first",
                {"required_by": dependents},
            )


def _clear_secrets(stored: Mapping[str, Any], secret_fields: Any) -> dict[str, Any]:
    """``stored`` with its secret fields decrypted (plugin settings keep secrets encrypted at rest)."""
    return {k: (crypto.decrypt(v) if k in secret_fields and isinstance(v, str) else v) for k, v in stored.items()}
