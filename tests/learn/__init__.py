"""Tests of emodist.learn modules."""
