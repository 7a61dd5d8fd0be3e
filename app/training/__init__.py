"""Pure training functions for the run executor: validate the data, train, evaluate, gate.

Nothing here touches the database or HTTP; every function takes data and a spec and returns
a value, so the same code runs in the thread and the celery executors.
"""
