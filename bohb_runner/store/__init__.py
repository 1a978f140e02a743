"""The study as it is on disk: settings, search space, schedule, journals, results, lock and files.

Every other part reads and writes a study through this package. It is pure bookkeeping: no
network, no hpbandster, no torch, so ``status`` and the analyses can load a study quickly on
any node that sees its directory.
"""
