"""Creating and running a study: hpbandster's optimizers driven by a journalled, resumable master.

The master samples configurations, hands jobs to workers through its dispatcher, journals every
result before the optimizer sees it, replays the journal on resume, starts and watches local
workers, and shows progress.
"""
