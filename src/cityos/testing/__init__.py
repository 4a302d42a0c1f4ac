"""Test doubles and helpers shipped with CityOS (real implementations of its interfaces).

Sub-modules are imported on demand, so importing this package costs nothing.
"""
