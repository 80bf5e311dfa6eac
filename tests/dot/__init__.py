"""A minimal Django project serving django-oauth-toolkit (DOT) as the bench's second real
authorization server. `python -m tests.dot.serve '<json settings>'` runs it on loopback;
tests/support/dot.py starts and drives it."""
