"""What tests and benchmarks share: fakes of the servers triage talks to, the mail corpus, helpers.

Imported as `tests.support.*` (the project root is on sys.path through the editable install), by
tests and by `bench/` alike.
"""
