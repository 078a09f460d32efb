"""Use cases of the core. Each function takes ``ctx`` and works in its session.

Services validate, call the decision hooks, write the change with its ledger
rows and events, and leave committing to the caller (one request, one job or
one command = one transaction).
"""
