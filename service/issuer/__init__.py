"""Open Badges 3.0 issuing, signing, status lists, verification and delivery."""
