"""Use cases that cross packages (launch -> sync -> evaluate -> award -> deliver).

The only module that imports ``lti``, ``sources``, ``assessment`` and ``issuer`` together.
"""
