"""Who may post: pure credential checks and stateless tokens (no Flask request inside).

.. versionadded:: 0.2
"""
