"""
A plugin package for discovery tests: two different policies, one name.
"""
