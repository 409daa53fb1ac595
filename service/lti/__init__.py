"""LTI 1.3 tool side: launches, registrations, keys, deep linking, AGS and NRPS."""
