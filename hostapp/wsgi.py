"""WSGI entry for production servers: ``gunicorn 'pelago.hostapp.wsgi:app'``.

Configured by the environment like everything else (``DATABASE_URL``,
``REDIS_URL``, ``PELAGO_PLUGINS`` …). Run ``pelago db upgrade`` before
starting it, ``pelago worker`` for jobs and ``pelago scheduler`` for
periodic jobs: with ``REDIS_URL`` set, this process runs neither.
"""

from .app import create_app

app = create_app()
