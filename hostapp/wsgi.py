"""WSGI entry for production servers: ``gunicorn 'pelago.hostapp.wsgi:app'``.

Configured by the environment like everything else (``DATABASE_URL``,
``REDIS_URL``, ``PELAGO_PLUGINS`` …). Run ``pelago db upgrade`` before
starting it, ``pelago worker`` for jobs and ``pelago scheduler`` for
periodic jobs: with ``REDIS_URL`` set, this process runs neither.

The objects made at start-up (modules, the app, plugins, mappers: some
230,000) are moved out of the cyclic garbage collector's reach
(``gc.freeze``): they live as long as the process, and every full
collection would otherwise walk them all again (measured in process: one
such collection in 1,000 API requests cost 1.5 ms a request on average).
"""

import gc

from .app import create_app

app = create_app()
gc.collect()
gc.freeze()
