"""The Pulumi program: stack settings from pulumi.Config -> ObservabilityStack -> stack outputs."""

import pulumi

from components.secrets import from_config
from components.stack import ObservabilityStack
from config.settings import PROJECT, declared_config, from_values, secret_keys

config = pulumi.Config(PROJECT)
secrets, secrets_set = from_config(config)
# Plain settings as the CLI gives them (Pulumi.yaml defaults under stack values); validated once,
# before any resource is registered.
plain = {key: config.get(key) for key in declared_config() if key not in secret_keys()}
settings = from_values(pulumi.get_stack(), plain, secrets_set)

stack = ObservabilityStack(settings.stack, settings, secrets)
stack.export()
