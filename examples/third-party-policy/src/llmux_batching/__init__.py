"""
An example llmux policy, shipped as its own package.
"""
