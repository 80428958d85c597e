"""The rehearsal: the stack's declared containers run with podman, then the runbook's validate phase against them."""
