"""Tests of the route registry."""
