"""A bundled LTI 1.3 platform with a sample course, so the whole flow runs without an LMS."""
