from tests.conftest import *  # noqa: F403  (bridge until pelago.testing)
