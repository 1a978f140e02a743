"""The worker side: the API a worker class implements, and the process that serves it.

A worker process loads the study's worker class, builds it once, registers with the study's
nameserver and runs jobs (with ``--repeats``) until its master shuts it down.
"""
