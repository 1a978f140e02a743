"""How a study's processes talk: Pyro4 settings, the study's secret, listen addresses, discovery.

The nameserver, the master's dispatcher and the workers speak Pyro4 with serpent only (never
pickle), sign every message with the study's key, and find each other through
``nameserver.json`` in the study directory.
"""
