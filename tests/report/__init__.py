"""Tests of the HTML report (harness/report/html.py) on recorded results directories."""
