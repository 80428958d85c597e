"""mime-server and mockup-gateway: the instrumented workload of the observability stack.

One package, one image, two commands: ``python -m mime_server`` (detect, store and serve
files by MIME type) and ``python -m mime_server.gateway`` (API gateway in front of it).
"""

MIME_SERVICE = "mime-server"
GATEWAY_SERVICE = "mockup-gateway"
