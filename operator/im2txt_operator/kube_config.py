"""Where the API server is and how to reach it: the official kubernetes client's loaders (in-cluster service account,
else $KUBECONFIG, read at start-up and never at import) and the TLS context they describe."""

from __future__ import annotations

import os
import ssl

import kubernetes


def load_configuration() -> kubernetes.client.Configuration:
    """In-cluster config when running in a pod, else $KUBECONFIG (read now, not at import time)."""
    config = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=config)
    except kubernetes.config.ConfigException:
        path = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        kubernetes.config.load_kube_config(config_file=path.split(os.pathsep)[0], client_configuration=config)
    return config


def ssl_context(config: kubernetes.client.Configuration) -> ssl.SSLContext | bool:
    if not config.host.startswith("https"):
        return False
    context = ssl.create_default_context(cafile=config.ssl_ca_cert)
    if config.cert_file:
        context.load_cert_chain(config.cert_file, config.key_file)
    if not config.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
