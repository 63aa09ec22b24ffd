"""kube_config: the API server and the TLS context, read from $KUBECONFIG when not in a pod."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import kubernetes
import pytest

from im2txt_operator.kube_config import load_configuration, ssl_context


def test_kubeconfig_is_read_at_call_time_first_of_a_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = tmp_path / "first.kubeconfig"
    first.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": "https://10.0.0.1:6443", "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "t0ken"}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}]}))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", f"{first}:{tmp_path / 'second.kubeconfig'}")
    config = load_configuration()
    assert config.host == "https://10.0.0.1:6443"
    assert config.get_api_key_with_prefix("BearerToken", alias="authorization") == "Bearer t0ken"
    context = ssl_context(config)
    assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_NONE  # as the kubeconfig says


def test_plain_http_has_no_tls_and_https_verifies_by_default() -> None:
    config = kubernetes.client.Configuration()
    config.host = "http://127.0.0.1:8001"
    assert ssl_context(config) is False
    config.host = "https://127.0.0.1:6443"
    context = ssl_context(config)
    assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
