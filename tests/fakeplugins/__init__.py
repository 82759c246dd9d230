"""
A plugin package for discovery tests: one policy, found twice.
"""
