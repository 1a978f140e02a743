"""Fault injection for the crash tests: see ``sitecustomize``."""
