"""CrossGuard policy pack of the observability stack: hardened containers, no public ports, pinned images, no plain secrets."""
