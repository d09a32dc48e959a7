"""The edge: the blueprint's views, what they check before reading a body, and
the way from request to answer (request -> verify -> read -> parse -> validate
-> store -> dispatch -> answer).

.. versionadded:: 0.2
"""
