"""The one test harness: what tests of every service share (see plugin.py for the fixtures)."""
