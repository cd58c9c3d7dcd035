"""Benchmarks behind ``deepafx-rt bench``: figures and ratios against a named
baseline measured in the same run, printed and written as JSON."""
