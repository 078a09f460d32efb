"""``pelago plugin new``: the plugin it writes installs, migrates and passes its own tests on both databases.

One generation per session (a module fixture): ``pelago plugin new demo_x``
into a temporary folder, installed with pip into a folder of its own
(``--target``, put on ``PYTHONPATH`` for the subprocesses only, so this
virtualenv is untouched), then ``pelago db upgrade`` on a fresh database and
the generated tests in a subprocess ``pytest`` (``--pelago-db=sqlite``, and
``--pelago-db=postgresql`` in the PostgreSQL pass).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import inspect, text

from pelago.core import migrate
from pelago.core.db import make_engine
from pelago.hostapp.cli import main

BIN = Path(sys.executable).parent
NAME = "demo_x"


def _env(site: Path, **extra: str) -> dict[str, str]:
    """This process's environment without Pelago's settings, with the generated plugin importable."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PELAGO_", "DATABASE_URL", "REDIS_URL", "PYTEST_"))}
    env.update(PYTHONPATH=str(site), **extra)
    return env


def _run(args: list[str], site: Path, cwd: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, env=_env(site, **extra), cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(source folder, install folder)`` of ``demo_x``, written by the command and installed by pip."""
    root = tmp_path_factory.mktemp("scaffold")
    source, site = root / "pelago-demo-x", root / "site"
    made = _run([str(BIN / "pelago"), "plugin", "new", NAME, "--dir", str(source), "--title", "Demo X"], site, root)
    assert made.returncode == 0, made.stderr
    assert f"wrote plugin '{NAME}'" in made.stdout
    installed = _run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(site), str(source)], site, root,
    )
    assert installed.returncode == 0, installed.stderr
    return source, site


def test_it_writes_the_standard_shape(generated):
    source, site = generated
    files = {p.relative_to(source).as_posix() for p in source.rglob("*")
             if p.is_file() and not {"build", "pelago_demo_x.egg-info", "__pycache__"} & set(p.parts)}
    package = "pelago_demo_x"
    assert files == {
        ".gitignore", "pyproject.toml", "README.md",
        *(f"{package}/{m}.py" for m in ("__init__", "api", "cli", "hooks", "jobs", "models", "schemas")),
        f"{package}/migrations/__init__.py", f"{package}/migrations/versions/__init__.py",
        f"{package}/migrations/versions/{NAME}_0001_initial.py",
        "tests/conftest.py", f"tests/test_{NAME}.py",
    }
    pyproject = (source / "pyproject.toml").read_text()
    assert 'name = "pelago-demo-x"' in pyproject
    assert f'"pelago-crm{_core_specifier()}"' in pyproject
    assert f'{NAME} = "{package}:plugin"' in pyproject
    # installed as a distribution: its entry point and its migrations are there
    assert (site / package / "migrations" / "versions" / f"{NAME}_0001_initial.py").exists()
    entry_points = next(site.glob("pelago_demo_x-0.1.0.dist-info")) / "entry_points.txt"
    assert f"{NAME} = {package}:plugin" in entry_points.read_text()


def _core_specifier() -> str:
    from pelago.hostapp.scaffold import core_specifier

    return core_specifier()


def test_its_first_revision_starts_its_own_branch_on_the_core_head(generated):
    source, _ = generated
    revision = source / "pelago_demo_x" / "migrations" / "versions" / f"{NAME}_0001_initial.py"
    tree = ast.parse(revision.read_text())
    values = {
        node.target.id: ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None
    }
    assert values == {
        "revision": f"{NAME}_0001", "down_revision": None, "branch_labels": (NAME,),
        "depends_on": migrate.core_head(),
    }


def test_it_imports_only_the_public_surface_of_pelago(generated):
    source, _ = generated
    for path in [*(source / "pelago_demo_x").rglob("*.py"), *(source / "tests").rglob("*.py")]:
        allowed = {"pelago.plugin", "pelago.testing"} if "tests" in path.parts else {"pelago.plugin"}
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                if name == "pelago" or name.startswith("pelago."):
                    assert name in allowed, f"{path.relative_to(source)} imports {name}"


def test_it_passes_ruff_with_its_own_settings(generated):
    source, site = generated
    done = _run([str(BIN / "ruff"), "check", "--no-cache", "--exclude", "build", "."], site, source)
    assert done.returncode == 0, done.stdout + done.stderr


def test_it_installs_and_upgrades_a_fresh_database(generated, db_url):
    source, site = generated
    with migrate.throwaway_database(db_url if db_url.startswith("postgresql") else None) as url:
        done = _run([str(BIN / "pelago"), "db", "upgrade"], site, source,
                    DATABASE_URL=url, PELAGO_PLUGINS=NAME, PELAGO_STRICT_PLUGINS="1")
        assert done.returncode == 0, done.stderr
        assert f"database is current (core + {NAME})" in done.stdout
        engine = make_engine(url)
        try:
            assert f"{NAME}_note" in inspect(engine).get_table_names()
            with engine.connect() as conn:
                assert f"{NAME}_0001" in set(conn.scalars(text("SELECT version_num FROM alembic_version")))
        finally:
            engine.dispose()


def test_an_autogenerated_revision_after_its_first_is_empty(generated, db_url):
    """The first revision is in the shape autogenerate writes: comparing after it finds nothing, on either database."""
    source, site = generated
    server = {"DATABASE_URL": db_url} if db_url.startswith("postgresql") else {}
    done = _run([str(BIN / "pelago"), "db", "revision", "--plugin", NAME, "-m", "nothing", "--autogenerate"],
                site, source, PELAGO_PLUGINS=NAME, **server)
    assert done.returncode == 0, done.stderr
    made = next((site / "pelago_demo_x" / "migrations" / "versions").glob(f"{NAME}_0002_*.py"))
    try:
        upgrade = made.read_text().split("def upgrade")[1].split("def downgrade")[0]
        assert "op." not in upgrade, upgrade
    finally:
        made.unlink()  # the other tests use the plugin as generated


def _own_tests(generated: tuple[Path, Path], *options: str) -> None:
    source, site = generated
    done = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *options], site, source)
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
    assert " passed" in summary and "failed" not in summary and "skipped" not in summary, summary


def test_its_own_tests_pass_on_sqlite(generated):
    _own_tests(generated, "--pelago-db=sqlite")


@pytest.mark.postgres
def test_its_own_tests_pass_on_postgresql(generated, pelago_pg_url):
    _own_tests(generated, "--pelago-db=postgresql", f"--pelago-pg-url={pelago_pg_url}")


# --- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Demo", "9lives", "x", "demo-x", "a" * 32, "core", "pool", "lead_score"])
def test_it_refuses_a_bad_or_taken_name(tmp_path, name):
    result = CliRunner().invoke(main, ["plugin", "new", name, "--dir", str(tmp_path / "p")])
    assert result.exit_code == 1
    reason = "already installed" if name in ("pool", "lead_score") else "is not a valid plugin name"
    assert reason in result.output
    assert not (tmp_path / "p").exists()


def test_it_refuses_a_folder_that_is_not_empty(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "notes.txt").write_text("mine")
    result = CliRunner().invoke(main, ["plugin", "new", "fresh_one", "--dir", str(tmp_path / "p")])
    assert result.exit_code == 1 and "already exists and is not an empty folder" in result.output
    assert [p.name for p in (tmp_path / "p").iterdir()] == ["notes.txt"]
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(main, ["plugin", "new", "fresh_one", "--dir", str(tmp_path / "empty")])
    assert result.exit_code == 0, result.output  # an empty folder is fine
    assert (tmp_path / "empty" / "pelago_fresh_one" / "__init__.py").exists()
