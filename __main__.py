"""The Pulumi program: stack settings from pulumi.Config -> the stack on its platform -> stack outputs.

`platform: docker` (default) runs every service on one Docker host (ObservabilityStack);
`platform: kubernetes` runs the same services on the cluster of the current kubeconfig (KubernetesStack).
"""

import pulumi

from components.secrets import from_config
from components.stack import ObservabilityStack, StackArgs
from config.settings import PROJECT, SettingsError, declared_config, from_values, secret_keys

config = pulumi.Config(PROJECT)
secrets, secrets_set = from_config(config)
# Plain settings as the CLI gives them (Pulumi.yaml defaults under stack values); validated once,
# before any resource is registered. A bad setting stops the program with its own message
# (RunError: no Python traceback), which names the key, the value and what is expected.
plain = {key: config.get(key) for key in declared_config() if key not in secret_keys()}
try:
    settings = from_values(pulumi.get_stack(), plain, secrets_set)
except SettingsError as exc:
    raise pulumi.RunError(str(exc)) from None

if settings.kubernetes:
    from components.kubernetes_stack import KubernetesStack as Stack  # pulumi-kubernetes only where it is used
else:
    Stack = ObservabilityStack
stack = Stack(settings.stack, StackArgs(settings, secrets))
for key, value in stack.outputs.items():
    pulumi.export(key, value)
